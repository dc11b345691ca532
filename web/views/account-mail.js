// Two parts of the account page: which mails a person wants, and a copy of
// everything CareForAll holds about them (GET /account/data), saved as a file.
import { api, currentSession } from "../session.js";
import { h, notice } from "../dom.js";

const PREFERENCES = `query MailPreferences { mailPreferences { donationDigest goalReached campaignUpdates } }`;
const UPDATE_PREFERENCES = `mutation UpdateMailPreferences($input: MailPreferencesInput!) {
  updateMailPreferences(input: $input) { donationDigest goalReached campaignUpdates }
}`;
const CHOICES = [
  ["donationDigest", "New donations to my campaigns", "At most one mail an hour per campaign, listing the new donations."],
  ["goalReached", "A campaign of mine reaches its goal", "One mail when the goal is reached."],
  ["campaignUpdates", "Updates from campaigns I gave to", "What organisers post about the campaigns you supported."],
];
const DATA_FILE = "careforall-my-data.json";

export function mailSection(ctx) {
  const boxes = Object.fromEntries(CHOICES.map(([key]) =>
    [key, h("input", { type: "checkbox", id: `mail-${key}`, name: key, "aria-describedby": `mail-${key}-hint` })]));
  const feedback = h("div", {});
  const submit = h("button", { type: "submit" }, "Save mail choices");
  const fieldset = h("fieldset", { disabled: true },
    h("legend", {}, "Send me a mail when…"),
    CHOICES.map(([key, label, hint]) => h("div", { class: "choice" },
      boxes[key],
      h("span", {}, h("label", { for: `mail-${key}`, class: "choice-label" }, label),
        h("span", { class: "hint", id: `mail-${key}-hint` }, hint)))));
  const form = h("form", {}, fieldset, feedback, h("div", { class: "button-row" }, submit));
  const show = (prefs) => {
    for (const [key] of CHOICES) boxes[key].checked = prefs[key];
    fieldset.disabled = false;
  };
  submit.disabled = true;
  api(PREFERENCES, {}, { signal: ctx.signal }).then(
    (data) => {
      show(data.mailPreferences);
      submit.disabled = false;
    },
    (error) => {
      if (error.name !== "AbortError") feedback.replaceChildren(notice("error", `Your mail choices could not be read: ${error.message}`));
    });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    feedback.replaceChildren();
    const input = Object.fromEntries(CHOICES.map(([key]) => [key, boxes[key].checked]));
    try {
      show((await api(UPDATE_PREFERENCES, { input })).updateMailPreferences);
      feedback.replaceChildren(notice("success", "Mail choices saved."));
    } catch (error) {
      feedback.replaceChildren(notice("error", error.message));
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "panel", "aria-labelledby": "account-mail" },
    h("h2", { id: "account-mail" }, "Mail choices"),
    h("p", { class: "muted" }, "Receipts and mails about your account's security are always sent."),
    form);
}

/** Fetch the person's data with their token and hand it to the browser as a file. */
async function download() {
  const session = currentSession();
  let response;
  try {
    response = await fetch("/account/data", {
      headers: { Authorization: `Bearer ${session?.token}`, Accept: "application/json" },
    });
  } catch {
    throw new Error("Could not reach CareForAll: the connection dropped. Try again.");
  }
  if (response.status === 401) throw new Error("Your session has ended: sign in again to download your data.");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(typeof body.error === "string" ? body.error : `The download was refused (HTTP ${response.status}).`);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: DATA_FILE, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken the file; the object URL is no longer needed.
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function dataSection() {
  const button = h("button", { type: "button", class: "secondary" }, "Download my data");
  const feedback = h("div", {});
  button.addEventListener("click", async () => {
    button.disabled = true;
    feedback.replaceChildren();
    try {
      await download();
      feedback.replaceChildren(notice("success", `Saved as ${DATA_FILE}.`));
    } catch (error) {
      feedback.replaceChildren(notice("error", String(error.message)));
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { class: "panel", "aria-labelledby": "account-data" },
    h("h2", { id: "account-data" }, "Your data"),
    h("p", {}, "A file (JSON) with everything CareForAll holds about you: your profile, donations and their steps, ",
      "campaigns you organise, notifications, mails sent to you and your mail choices."),
    button, feedback);
}
