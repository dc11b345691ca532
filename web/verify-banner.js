// The banner above every page for a signed-in person whose email address is
// not confirmed yet, with a button that mails the link again. It asks the
// server when someone signs in and when the app starts, not on every page.
import { api, currentUser, onSessionChange } from "./session.js";
import { h, notice } from "./dom.js";

const ME = `query EmailVerified { me { id email emailVerified } }`;
const SEND = `mutation RequestEmailVerification { requestEmailVerification }`;

const banner = h("div", { class: "verify-banner", hidden: true, "data-testid": "verify-banner" });
let askedFor = null; // the user whose state the banner shows
const confirmed = new Set(); // users who confirmed their address in this page

/** The banner's element, placed once by the app above the page. */
export function verifyBanner() {
  return banner;
}

/** The address was just confirmed here: the banner goes (and stays gone). */
export function emailVerified(userId = null) {
  if (userId) confirmed.add(userId);
  banner.hidden = true;
  banner.replaceChildren();
}

function show(email) {
  const button = h("button", { type: "button", class: "secondary" }, "Send the link again");
  // The answer's region is made with its words (an empty status region here,
  // above every page, would be the first one on each page).
  const result = h("span", {});
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.replaceChildren();
    try {
      await api(SEND);
      result.replaceChildren(h("span", { role: "status" }, `We sent a new link to ${email}.`));
    } catch (error) {
      result.replaceChildren(notice("error", error.message));
    } finally {
      button.disabled = false;
    }
  });
  banner.replaceChildren(h("div", { class: "verify-banner-inner" },
    h("p", {}, h("strong", {}, "Please confirm your email address. "),
      `We sent a link to ${email}; open it to confirm the address is yours.`),
    h("div", { class: "button-row" }, button, result)));
  banner.hidden = false;
}

/** Ask whether the signed-in person's address is confirmed, once per person. */
export async function refreshVerifyBanner(force = false) {
  const user = currentUser();
  if (!user) {
    askedFor = null;
    emailVerified();
    return;
  }
  if (askedFor === user.id && !force) return;
  if (force) confirmed.delete(user.id); // e.g. a new address, not confirmed yet
  askedFor = user.id;
  try {
    const me = (await api(ME)).me;
    if (currentUser()?.id !== me?.id) return; // someone else signed in meanwhile
    // A confirmation may have landed while this question was on its way.
    if (me.emailVerified || confirmed.has(me.id)) emailVerified();
    else show(me.email);
  } catch {
    // Not known now (offline, or a server without confirmation): no banner.
    askedFor = null;
    emailVerified();
  }
}

onSessionChange(() => refreshVerifyBanner());
