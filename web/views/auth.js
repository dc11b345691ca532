// Sign in and register. A guest's anonymous token goes along, so the donations
// made in this browser move to the account.
import { api, anonymousToken, currentUser, saveSession } from "../session.js";
import { field, h, notice } from "../dom.js";

const USER_FIELDS = `token anonymous user { id name email role }`;
const LOGIN = `mutation Login($email: String!, $password: String!, $anonymousToken: String) {
  login(email: $email, password: $password, anonymousToken: $anonymousToken) { ${USER_FIELDS} }
}`;
const REGISTER = `mutation Register($email: String!, $password: String!, $name: String!, $anonymousToken: String) {
  register(email: $email, password: $password, name: $name, anonymousToken: $anonymousToken) { ${USER_FIELDS} }
}`;

/** Only routes of this app ("/start"), never another site. */
function nextPath(ctx) {
  const next = ctx.query.get("next") || "/";
  return /^\/[\w/-]*$/.test(next) && !next.startsWith("//") ? next : "/";
}

function authForm(ctx, { title, submitText, fields, mutation, resultKey, welcome, switchTo, extra = null }) {
  ctx.setTitle(title);
  const user = currentUser();
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, submitText);
  const form = h("form", { class: "stack" }, fields.map((f) => f.node), feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    submit.disabled = true;
    feedback.replaceChildren();
    const variables = { anonymousToken: anonymousToken() };
    for (const f of fields) variables[f.name] = f.input.value;
    const hadGuestSession = Boolean(variables.anonymousToken);
    try {
      const data = await api(mutation, variables);
      const payload = data[resultKey];
      saveSession(payload);
      const moved = hadGuestSession ? " Donations made in this browser are now in your account." : "";
      ctx.navigate(nextPath(ctx), `${welcome(payload.user)}${moved}`);
    } catch (error) {
      if (error.name === "AbortError") return;
      feedback.replaceChildren(notice("error", error.message));
      submit.disabled = false;
    }
  });
  return h("section", { class: "narrow" },
    h("h1", { tabindex: "-1" }, title),
    user ? notice("info", `You are signed in as ${user.name}. Signing in again switches account.`) : null,
    anonymousToken()
      ? h("p", { class: "lead" }, "Donations you made in this browser as a guest will move to the account.")
      : null,
    form,
    extra,
    h("p", {}, switchTo));
}

function input(name, props) {
  const el = h("input", { id: `auth-${name}`, name, required: true, ...props });
  return { name, input: el, node: null, el };
}

export function signInView(ctx) {
  const email = input("email", { type: "email", autocomplete: "email" });
  const password = input("password", { type: "password", autocomplete: "current-password" });
  email.node = field(email.el.id, "Email", email.el);
  password.node = field(password.el.id, "Password", password.el);
  const next = ctx.query.get("next");
  return authForm(ctx, {
    title: "Sign in",
    submitText: "Sign in",
    fields: [email, password],
    mutation: LOGIN,
    resultKey: "login",
    welcome: (user) => `Welcome back, ${user.name}.`,
    extra: h("p", {}, h("a", { href: "#/forgot-password" }, "Forgot your password?")),
    switchTo: ["New here? ", h("a", { href: `#/register${next ? `?next=${encodeURIComponent(next)}` : ""}` }, "Register"), "."],
  });
}

export function registerView(ctx) {
  const name = input("name", { type: "text", autocomplete: "name", maxlength: 100 });
  const email = input("email", { type: "email", autocomplete: "email" });
  const password = input("password", {
    type: "password", autocomplete: "new-password", minlength: 8,
  });
  name.node = field(name.el.id, "Your name", name.el, "Shown as the organiser of campaigns you start.");
  email.node = field(email.el.id, "Email", email.el, "Never shown to anyone else.");
  password.node = field(password.el.id, "Password", password.el, "At least 8 characters.");
  const next = ctx.query.get("next");
  return authForm(ctx, {
    title: "Register",
    submitText: "Create my account",
    fields: [name, email, password],
    mutation: REGISTER,
    resultKey: "register",
    welcome: (user) => `Welcome, ${user.name}. Your account is ready.`,
    switchTo: ["Already have an account? ", h("a", { href: `#/signin${next ? `?next=${encodeURIComponent(next)}` : ""}` }, "Sign in"), "."],
  });
}
