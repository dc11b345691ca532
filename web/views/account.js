// Account settings (#/account): name and email, password, mail choices, a copy
// of one's data, signing out everywhere, and deleting the account. Each part
// is its own form with its own messages, so one refused change never hides
// another part's answer.
import { ApiError } from "../graphql.js";
import { api, currentUser, saveSession, signOut, signOutEverywhere, updateUser } from "../session.js";
import { field, fieldError, h, notice } from "../dom.js";
import { refreshVerifyBanner } from "../verify-banner.js";
import { dataSection, mailSection } from "./account-mail.js";

const ME = `query Account { me { id name email } }`;
const UPDATE_PROFILE = `mutation UpdateProfile($name: String, $email: String) {
  updateProfile(name: $name, email: $email) { id name email }
}`;
const CHANGE_PASSWORD = `mutation ChangePassword($currentPassword: String!, $newPassword: String!) {
  changePassword(currentPassword: $currentPassword, newPassword: $newPassword) {
    token anonymous user { id name email role }
  }
}`;
const DELETE_ACCOUNT = `mutation DeleteAccount($password: String!) { deleteAccount(password: $password) }`;

/** A part of the page: a heading and its form, which reports in `feedback`. */
function part(id, title, ...children) {
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/**
 * Run `action` for a form: the button is off meanwhile, and an error goes to
 * the field it is about (`fieldFor(error)`) or to the form's feedback.
 */
async function submitting(submit, feedback, action, fieldFor = () => null) {
  submit.disabled = true;
  feedback.replaceChildren();
  try {
    await action();
  } catch (error) {
    if (error.name === "AbortError") return;
    const input = error instanceof ApiError && error.code === "BAD_USER_INPUT" ? fieldFor(error) : null;
    if (input) {
      fieldError(input, error.message);
      input.focus();
    } else {
      feedback.replaceChildren(notice("error", error.message));
    }
  } finally {
    submit.disabled = false;
  }
}

function profileSection(me) {
  const name = h("input", { id: "account-name", type: "text", autocomplete: "name", maxlength: 100, value: me.name });
  const email = h("input", { id: "account-email", type: "email", autocomplete: "email", value: me.email });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit" }, "Save name and email");
  const form = h("form", { novalidate: true },
    field(name.id, "Your name", name, "Shown as the organiser of campaigns you start."),
    field(email.id, "Email", email, "Never shown to anyone else. A new address must be confirmed."),
    feedback, h("div", { class: "button-row" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    fieldError(name, name.value.trim() ? "" : "Enter your name.");
    fieldError(email, email.value.trim() && email.checkValidity() ? "" : "Enter an email address, like ada@example.org.");
    const invalid = form.querySelector("[aria-invalid]");
    if (invalid) return invalid.focus();
    const changes = {};
    if (name.value.trim() !== me.name) changes.name = name.value.trim();
    if (email.value.trim() !== me.email) changes.email = email.value.trim();
    if (!Object.keys(changes).length) {
      feedback.replaceChildren(notice("info", "Nothing to save: your name and email are as they were."));
      return;
    }
    submitting(submit, feedback, async () => {
      const user = (await api(UPDATE_PROFILE, changes)).updateProfile;
      Object.assign(me, user);
      updateUser(user);
      const sent = changes.email ? ` We sent a link to ${user.email}: open it to confirm the new address.` : "";
      feedback.replaceChildren(notice("success", `Saved.${sent}`));
      if (changes.email) refreshVerifyBanner(true);
    }, (error) => (/mail/i.test(error.message) ? email : name));
  });
  return part("account-profile", "Name and email", form);
}

/** The account's address for password managers, which pair it with the password. */
function username(me) {
  return h("input", { type: "email", autocomplete: "username", value: me.email, hidden: true, tabindex: "-1" });
}

function passwordSection(me) {
  const current = h("input", { id: "account-current-password", type: "password", autocomplete: "current-password" });
  const fresh = h("input", { id: "account-new-password", type: "password", autocomplete: "new-password", minlength: 8 });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit" }, "Change password");
  const form = h("form", { novalidate: true },
    username(me),
    field(current.id, "Current password", current),
    field(fresh.id, "New password", fresh, "At least 8 characters."),
    feedback, h("div", { class: "button-row" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    fieldError(current, current.value ? "" : "Enter your current password.");
    fieldError(fresh, fresh.value.length >= 8 ? "" : "Use at least 8 characters.");
    const invalid = form.querySelector("[aria-invalid]");
    if (invalid) return invalid.focus();
    submitting(submit, feedback, async () => {
      const payload = (await api(CHANGE_PASSWORD, { currentPassword: current.value, newPassword: fresh.value }))
        .changePassword;
      saveSession(payload); // every earlier token ended, this browser's too
      current.value = "";
      fresh.value = "";
      feedback.replaceChildren(notice("success", "Password changed. Other devices were signed out."));
    }, (error) => (/current|wrong|incorrect/i.test(error.message) ? current : fresh));
  });
  return part("account-password", "Password", form);
}

function sessionsSection(ctx) {
  const button = h("button", { type: "button", class: "secondary" }, "Sign out everywhere");
  button.addEventListener("click", async () => {
    button.disabled = true;
    await signOutEverywhere();
    ctx.navigate("/", "You are signed out on every device.");
  });
  return part("account-sessions", "Signed-in devices",
    h("p", {}, "Signing out here ends every session of this account, on this and every other device."),
    button);
}

function deleteSection(ctx, me) {
  const password = h("input", { id: "account-delete-password", type: "password", autocomplete: "current-password" });
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "danger" }, "Delete my account");
  const form = h("form", { novalidate: true },
    username(me),
    field(password.id, "Your password, to confirm", password), feedback, h("div", { class: "button-row" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    fieldError(password, password.value ? "" : "Enter your password to confirm.");
    if (!password.value) return password.focus();
    submitting(submit, feedback, async () => {
      await api(DELETE_ACCOUNT, { password: password.value });
      signOut(); // its tokens have ended on the server
      ctx.navigate("/", "Your account is deleted. Your donations stay in the campaigns' totals, without your name.");
    }, () => password);
  });
  return part("account-delete", "Delete my account",
    notice("warning",
      h("strong", {}, "This cannot be undone. "),
      "Your name, email, password and sessions are erased. Donations you made stay, anonymised, so ",
      "campaigns' totals do not change. Download your data first if you want a copy."),
    form);
}

export async function accountView(ctx) {
  ctx.setTitle("Your account");
  if (!currentUser()) {
    return h("section", { class: "narrow" },
      h("h1", { tabindex: "-1" }, "Your account"),
      h("p", {}, h("a", { href: "#/signin?next=/account" }, "Sign in"), " to see and change your account."));
  }
  const me = (await api(ME, {}, { signal: ctx.signal })).me;
  if (!me) {
    signOut(); // the kept token no longer names an account
    return h("section", { class: "narrow" },
      h("h1", { tabindex: "-1" }, "Your account"),
      notice("info", "Your session has ended. ", h("a", { href: "#/signin?next=/account" }, "Sign in"), " again."));
  }
  return h("section", { class: "narrow account-settings" },
    ctx.flash ? notice("info", ctx.flash) : null,
    h("h1", { tabindex: "-1" }, "Your account"),
    profileSection(me),
    passwordSection(me),
    mailSection(ctx),
    dataSection(),
    sessionsSection(ctx),
    deleteSection(ctx, me));
}
