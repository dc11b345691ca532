// Getting back into an account and confirming an address: the forgot-password
// page, and the pages that the links in mails open (/reset-password?token=…,
// /verify-email?token=…). A link's token is read once when the app starts and
// taken out of the address bar at once, so it is not left in the history, in
// a bookmark or in what a person shares from the address bar.
import { ApiError, NETWORK } from "../graphql.js";
import { api, currentUser, saveSession } from "../session.js";
import { field, fieldError, h, notice } from "../dom.js";
import { emailVerified } from "../verify-banner.js";

const REQUEST_RESET = `mutation RequestPasswordReset($email: String!) {
  requestPasswordReset(email: $email)
}`;
const RESET = `mutation ResetPassword($token: String!, $newPassword: String!) {
  resetPassword(token: $token, newPassword: $newPassword) { token anonymous user { id name email role } }
}`;
const VERIFY = `mutation VerifyEmail($token: String!) {
  verifyEmail(token: $token) { id email emailVerified }
}`;

const LINK_PAGES = ["/reset-password", "/verify-email"];
const linkTokens = new Map(); // page -> the token its link carried, in memory only

/**
 * At start: on a page a mail links to, keep the link's token and show the
 * page under the app's own address (/#/reset-password) without it.
 */
export function captureLinkToken() {
  if (!LINK_PAGES.includes(location.pathname)) return;
  const token = new URLSearchParams(location.search).get("token");
  if (token) linkTokens.set(location.pathname, token);
  history.replaceState(null, "", `/#${location.pathname}`);
}

/** A link's token was refused: it expired, was used, or is not one of ours. */
function linkRefused(error) {
  return error instanceof ApiError && error.code !== NETWORK && error.code !== "RATE_LIMITED"
    && (error.code === "UNAUTHENTICATED" || error.code === "NOT_FOUND"
      || /\blink\b|expired/i.test(error.message));
}

function page(ctx, title, ...children) {
  ctx.setTitle(title);
  return h("section", { class: "narrow" }, h("h1", { tabindex: "-1" }, title), ...children);
}

export function forgotView(ctx) {
  const email = h("input", { id: "forgot-email", type: "email", autocomplete: "email", required: true });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, "Send me a link");
  const form = h("form", { class: "stack", novalidate: true },
    field(email.id, "Email", email, "The address of your account."), feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const address = email.value.trim();
    fieldError(email, address && email.checkValidity() ? "" : "Enter the email address of your account.");
    if (email.getAttribute("aria-invalid")) return email.focus();
    submit.disabled = true;
    feedback.replaceChildren();
    try {
      await api(REQUEST_RESET, { email: address });
      // The same words whether or not the address has an account.
      form.replaceWith(notice("success",
        "If an account exists for that address, we have sent a link to choose a new password. ",
        "It works once, for one hour. Check your spam folder if it does not arrive."));
    } catch (error) {
      if (error.name === "AbortError") return;
      feedback.replaceChildren(notice("error", error.message));
      submit.disabled = false;
    }
  });
  return page(ctx, "Forgot your password?",
    h("p", { class: "lead" }, "Enter the email address of your account and we will send you a link to choose a new password."),
    form,
    h("p", {}, "Remembered it? ", h("a", { href: "#/signin" }, "Sign in"), "."));
}

function askAgain(text) {
  return notice("error", text, " ", h("a", { href: "#/forgot-password" }, "Ask for a new link"), ".");
}

export function resetView(ctx) {
  const token = linkTokens.get("/reset-password");
  if (!token) {
    return page(ctx, "Choose a new password",
      askAgain("This page needs the link from your password reset mail, opened as it is."));
  }
  const password = h("input", {
    id: "reset-password", type: "password", autocomplete: "new-password", minlength: 8, required: true,
  });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, "Save my new password");
  const form = h("form", { class: "stack", novalidate: true },
    field(password.id, "New password", password, "At least 8 characters."), feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fieldError(password, password.value.length >= 8 ? "" : "Use at least 8 characters.");
    if (password.getAttribute("aria-invalid")) return password.focus();
    submit.disabled = true;
    feedback.replaceChildren();
    try {
      const data = await api(RESET, { token, newPassword: password.value });
      linkTokens.delete("/reset-password");
      saveSession(data.resetPassword);
      ctx.navigate("/", `Your password is changed and you are signed in, ${data.resetPassword.user.name}. Other devices were signed out.`);
    } catch (error) {
      if (error.name === "AbortError") return;
      submit.disabled = false;
      if (linkRefused(error)) {
        linkTokens.delete("/reset-password");
        form.replaceWith(askAgain("This link has expired, was already used, or was replaced by a newer one."));
      } else if (error.code === "BAD_USER_INPUT") {
        fieldError(password, error.message);
        password.focus();
      } else {
        feedback.replaceChildren(notice("error", error.message));
      }
    }
  });
  return page(ctx, "Choose a new password", form);
}

export async function verifyView(ctx) {
  const token = linkTokens.get("/verify-email");
  linkTokens.delete("/verify-email"); // single use: a second visit would be refused anyway
  const signIn = currentUser()
    ? null
    : h("p", {}, h("a", { href: "#/signin" }, "Sign in"), " to ask for a new link.");
  if (!token) {
    return page(ctx, "Confirm your email address",
      notice("error", "This page needs the link from your confirmation mail, opened as it is."), signIn);
  }
  try {
    const user = (await api(VERIFY, { token }, { signal: ctx.signal })).verifyEmail;
    emailVerified(user.id);
    return page(ctx, "Email address confirmed",
      notice("success", `Thank you: ${user.email} is confirmed.`),
      h("p", {}, h("a", { href: "#/" }, "See the campaigns")));
  } catch (error) {
    if (!linkRefused(error)) throw error;
    return page(ctx, "Confirm your email address",
      notice("error", "This link has expired, was already used, or was replaced by a newer one. ",
        currentUser() ? "Use “Send the link again” above for a new one." : ""),
      signIn);
  }
}
