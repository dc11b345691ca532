// The bell in the header: the unread count, kept live by the
// notificationUpdates subscription (graphql-transport-ws, like a campaign's
// live total), and a dropdown with the newest notifications. It is there for
// anyone with a session, guests included, and follows sign-in and sign-out.
import { subscribe } from "./graphql.js";
import { api, currentSession, onSessionChange } from "./session.js";
import { h, notice } from "./dom.js";
import { FEED, markAllRead, notificationItem } from "./views/notifications.js";

const UPDATES = `subscription NotificationUpdates {
  notificationUpdates { unreadCount notifications { id title } }
}`;
const SHOWN = 8;

const count = h("span", { class: "bell-count", "data-testid": "bell-count", "aria-hidden": "true", hidden: true });
const button = h("button", {
  type: "button",
  class: "bell",
  "aria-expanded": "false",
  "aria-controls": "bell-panel",
  "data-testid": "bell",
}, h("img", { src: "/bell.svg", alt: "", width: 22, height: 22 }), count);
const list = h("ul", { class: "notifications" });
const feedback = h("div", {});
const markAll = h("button", { type: "button", class: "secondary" }, "Mark all read");
const panel = h("section", { id: "bell-panel", class: "bell-panel", "aria-label": "Notifications", hidden: true },
  h("h2", {}, "Notifications"),
  feedback,
  list,
  h("div", { class: "button-row" },
    markAll,
    h("a", { href: "#/notifications", onclick: () => close() }, "See all notifications")));
// Says "New notification: …" to screen readers as one arrives.
const announcer = h("p", { class: "visually-hidden", "aria-live": "polite" });

/** The bell's element; the navigation places it (the same node every time). */
export const bell = h("div", { class: "bell-wrap", "data-testid": "notifications" }, button, panel, announcer);

let newestShown = null;
let token = null;
let unsubscribe = null;

function showCount(unread) {
  count.textContent = unread > 99 ? "99+" : String(unread);
  count.hidden = unread === 0;
  button.setAttribute("aria-label", unread ? `Notifications: ${unread} unread` : "Notifications: none unread");
  markAll.disabled = unread === 0;
}

async function fill() {
  const data = await api(FEED, { first: SHOWN });
  const nodes = data.notifications.edges.map((edge) => edge.node);
  newestShown = nodes.length ? nodes[0].id : null;
  feedback.replaceChildren();
  list.replaceChildren(...(nodes.length
    ? nodes.map((n) => notificationItem(n, { onOpen: () => close(), onRead: (_, unread) => showCount(unread) }))
    : [h("li", { class: "muted" }, "No notifications yet.")]));
  showCount(data.unreadNotificationCount);
}

function refill() {
  fill().catch((error) => {
    feedback.replaceChildren(notice("error", `Could not load notifications: ${error.message}`));
  });
}

function open() {
  panel.hidden = false;
  button.setAttribute("aria-expanded", "true");
  refill();
}

function close() {
  panel.hidden = true;
  button.setAttribute("aria-expanded", "false");
}

button.addEventListener("click", () => (panel.hidden ? open() : close()));
markAll.addEventListener("click", async () => {
  markAll.disabled = true;
  try {
    showCount(await markAllRead(newestShown));
    await fill();
  } catch (error) {
    markAll.disabled = false;
    feedback.replaceChildren(notice("error", `Could not mark them read: ${error.message}`));
  }
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !panel.hidden) {
    close();
    button.focus();
  }
});
document.addEventListener("click", (event) => {
  if (!panel.hidden && !bell.contains(event.target)) close();
});
window.addEventListener("hashchange", close);

/** (Re)subscribe for the session in this browser; none: the bell rests. */
function follow() {
  const session = currentSession();
  const next = session ? session.token : null;
  if (next === token) return;
  unsubscribe?.();
  unsubscribe = null;
  token = next;
  close();
  showCount(0);
  list.replaceChildren();
  if (!token) return;
  unsubscribe = subscribe(UPDATES, {}, {
    token,
    onData: ({ notificationUpdates }) => {
      showCount(notificationUpdates.unreadCount);
      const [newest] = notificationUpdates.notifications;
      if (newest) {
        announcer.textContent = `New notification: ${newest.title}`;
        if (!panel.hidden) refill();
        // Pages showing what it is about (My donations) bring themselves up to date.
        window.dispatchEvent(new CustomEvent("careforall:notification", { detail: newest }));
      }
    },
    // The session ended on the server (e.g. expired): no count to show.
    onError: () => showCount(0),
  });
}

onSessionChange(follow);
follow();
