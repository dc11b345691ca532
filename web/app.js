// The CareForAll web app: a hash router, the page frame, and the navigation.
// Each view lives in views/ and talks only to /graphql, like any other client.
import { h } from "./dom.js";
import { currentSession, currentUser, onSessionChange, signOutEverywhere } from "./session.js";
import { campaignsView } from "./views/campaigns.js";
import { campaignView } from "./views/campaign.js";
import { donationsView, receiptView } from "./views/donations.js";
import { registerView, signInView } from "./views/auth.js";
import { mineView, startView } from "./views/organiser.js";
import { adminView } from "./views/admin.js";
import { notificationsView } from "./views/notifications.js";
import { accountView } from "./views/account.js";
import { captureLinkToken, forgotView, resetView, verifyView } from "./views/recovery.js";
import { bell } from "./bell.js";
import { refreshVerifyBanner, verifyBanner } from "./verify-banner.js";

const ROUTES = [
  [/^\/$/, campaignsView],
  [/^\/campaigns\/([^/]+)$/, campaignView],
  [/^\/donations$/, donationsView],
  [/^\/donations\/([^/]+)$/, receiptView],
  [/^\/signin$/, signInView],
  [/^\/register$/, registerView],
  [/^\/start$/, startView],
  [/^\/mine$/, mineView],
  [/^\/admin$/, adminView],
  [/^\/notifications$/, notificationsView],
  [/^\/account$/, accountView],
  [/^\/forgot-password$/, forgotView],
  [/^\/reset-password$/, resetView],
  [/^\/verify-email$/, verifyView],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null; // { controller, cleanups }
let flash = null;
let firstRender = true;

/** Go to a route ("/donations"); an optional message shows on the next page. */
export function navigate(path, message = null) {
  flash = message;
  if (location.hash === `#${path}`) render();
  else location.hash = `#${path}`;
}

function parseHash() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, search = ""] = raw.split("?");
  return { path: path || "/", query: new URLSearchParams(search) };
}

function notFound(ctx) {
  ctx.setTitle("Page not found");
  return h(
    "section",
    {},
    h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "There is nothing at this address. ", h("a", { href: "#/" }, "See all campaigns"), "."),
  );
}

async function render() {
  if (current) {
    current.controller.abort();
    for (const cleanup of current.cleanups) cleanup();
  }
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  const { path, query } = parseHash();
  let view = notFound;
  let params = [];
  for (const [pattern, candidate] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      view = candidate;
      params = match.slice(1).map(decodeURIComponent);
      break;
    }
  }
  renderNav(path);
  const message = flash;
  flash = null;
  const ctx = {
    params,
    query,
    path,
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
    setTitle: (title) => {
      document.title = title ? `${title} · CareForAll` : "CareForAll";
    },
    navigate,
    flash: message,
  };
  main.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading…"));
  main.setAttribute("aria-busy", "true");
  let node;
  try {
    node = await view(ctx);
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    ctx.setTitle("Something went wrong");
    node = h(
      "section",
      {},
      h("h1", { tabindex: "-1" }, "Something went wrong"),
      h("p", { class: "notice notice-error", role: "alert" }, error.message || String(error)),
      h("p", {}, h("a", { href: "#/" }, "Back to the campaigns")),
    );
  }
  if (controller.signal.aborted) return;
  main.replaceChildren(node);
  main.removeAttribute("aria-busy");
  if (!firstRender) {
    // Move focus to the new page's heading so screen readers announce it.
    const heading = main.querySelector("h1");
    (heading || main).focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

function renderNav(path) {
  const user = currentUser();
  const link = (href, text) =>
    h("a", { href: `#${href}`, "aria-current": path === href ? "page" : null }, text);
  const items = [link("/", "Campaigns"), link("/start", "Start a campaign")];
  if (user) items.push(link("/mine", "My campaigns"));
  items.push(link("/donations", "My donations"));
  if (user?.role === "ADMIN") items.push(link("/admin", "Admin"));
  const account = user
    ? h(
        "span",
        { class: "account" },
        bell,
        h("span", { class: "who" }, `Signed in as ${user.name}`),
        link("/account", "Account"),
        h("button", { type: "button", class: "link-button", onclick: onSignOut }, "Sign out"),
      )
    : h(
        "span",
        { class: "account" },
        currentSession() ? bell : null,
        currentSession() ? h("span", { class: "who" }, "Guest") : null,
        link("/signin", "Sign in"),
        link("/register", "Register"),
      );
  nav.replaceChildren(h("ul", {}, items.map((item) => h("li", {}, item))), account);
}

function onSignOut() {
  signOutEverywhere();
  navigate("/", "You are signed out.");
}

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

/** A share link (/c/<id>) opens its campaign; the address becomes the app's own. */
function openSharedCampaign() {
  const shared = /^\/c\/([^/]+)$/.exec(location.pathname);
  if (!shared) return;
  const hash = location.hash.startsWith("#/") ? location.hash : `#/campaigns/${shared[1]}`;
  history.replaceState(null, "", `/${location.search}${hash}`);
}

onSessionChange(() => renderNav(parseHash().path));
openSharedCampaign();
window.addEventListener("hashchange", render);
captureLinkToken();
main.before(verifyBanner());
refreshVerifyBanner();
render();
