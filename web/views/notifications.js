// Notifications: the page listing them (#/notifications), and the pieces the
// header's bell shares with it. Each person sees only their own: a guest's
// are about the donations made in this browser, and move to the account
// when the guest registers or signs in.
import { api, currentSession } from "../session.js";
import { ago, dateTime, h, notice } from "../dom.js";
import { pager } from "../pager.js";

export const NOTIFICATION_FIELDS = `id kind title body pledgeId campaignId createdAt readAt`;
export const FEED = `query Notifications($first: Int, $after: String, $unreadOnly: Boolean) {
  notifications(first: $first, after: $after, unreadOnly: $unreadOnly) {
    edges { node { ${NOTIFICATION_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
  unreadNotificationCount
}`;
const MARK = `mutation MarkNotificationsRead($ids: [ID!]!) {
  markNotificationsRead(ids: $ids) { marked unreadCount }
}`;
const MARK_ALL = `mutation MarkAllNotificationsRead($upTo: ID) {
  markAllNotificationsRead(upTo: $upTo) { marked unreadCount }
}`;

/** Mark some read; resolves to the unread count after. */
export async function markRead(ids) {
  return (await api(MARK, { ids })).markNotificationsRead.unreadCount;
}

/** Mark all read up to the newest one shown (a newer one stays unread). */
export async function markAllRead(upTo) {
  return (await api(MARK_ALL, { upTo })).markAllNotificationsRead.unreadCount;
}

/** Where a notification leads: the receipt, the campaign, or the admin page. */
export function notificationLink(n) {
  if (n.kind.startsWith("PAYMENT_") && n.pledgeId) return `#/donations/${encodeURIComponent(n.pledgeId)}`;
  // A recurring gift that paused or ended: the donor acts on it in My donations.
  if (n.kind.startsWith("RECURRING_")) return "#/donations";
  if (n.campaignId) return `#/campaigns/${encodeURIComponent(n.campaignId)}`;
  if (n.kind === "DEAD_LETTER" || n.kind === "WEBHOOKS_REJECTED") return "#/admin";
  return null;
}

/**
 * One notification as a list item. Following its link marks it read. `onOpen(n)`
 * runs when its link is followed, `onRead(n, unreadCount)` once it is read.
 */
export function notificationItem(n, { onOpen = () => {}, onRead = () => {} } = {}) {
  const href = notificationLink(n);
  function opened() {
    if (!n.readAt) {
      n.readAt = new Date().toISOString();
      // The page changes now; the count follows when the server answers.
      markRead([n.id]).then((unread) => onRead(n, unread), () => {});
    }
    onOpen(n);
  }
  const title = href ? h("a", { href, onclick: opened }, n.title) : n.title;
  const item = h("li", { class: n.readAt ? "notification" : "notification unread", "data-notification-id": n.id },
    h("p", { class: "notification-title" },
      n.readAt ? null : h("span", { class: "visually-hidden" }, "Unread: "),
      h("strong", {}, title)),
    h("p", { class: "notification-body" }, n.body),
    h("p", { class: "notification-meta" },
      h("time", { datetime: n.createdAt, title: dateTime(n.createdAt, true) }, ago(n.createdAt))));
  if (!n.readAt) {
    const button = h("button", { type: "button", class: "link-button", "aria-label": `Mark “${n.title}” read` }, "Mark read");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const count = await markRead([n.id]);
        n.readAt = new Date().toISOString();
        item.classList.remove("unread");
        item.querySelector(".visually-hidden")?.remove();
        button.remove();
        onRead(n, count);
      } catch (error) {
        button.disabled = false;
        item.append(notice("error", `Could not mark it read: ${error.message}`));
      }
    });
    item.querySelector(".notification-meta").append(" · ", button);
  }
  return item;
}

export async function notificationsView(ctx) {
  ctx.setTitle("Notifications");
  const heading = h("h1", { tabindex: "-1" }, "Notifications");
  if (!currentSession()) {
    return h("section", { class: "narrow" }, heading,
      h("p", {}, "Notifications tell you when your donations are paid, and organisers when their campaigns receive one. ",
        h("a", { href: "#/signin?next=/notifications" }, "Sign in"), " or ", h("a", { href: "#/" }, "find a campaign"), " to start."));
  }
  const list = h("ul", { class: "notifications", "aria-live": "polite" });
  const status = h("p", { role: "status", "data-testid": "unread-status" });
  const feedback = h("div", {});
  const listStatus = h("div", { role: "status" });
  const onlyUnread = h("input", { type: "checkbox", id: "only-unread" });
  const markAll = h("button", { type: "button", class: "secondary" }, "Mark all read");
  let newest = null;

  function showCount(count) {
    status.textContent = count
      ? `${count} unread notification${count === 1 ? "" : "s"}.`
      : "Everything is read.";
    markAll.disabled = count === 0;
  }

  const { more, load } = pager({
    query: FEED,
    field: "notifications",
    variables: () => ({ unreadOnly: onlyUnread.checked }),
    list,
    row: (node) => {
      newest ??= node.id;
      return notificationItem(node, { onRead: (_, count) => showCount(count) });
    },
    status: listStatus,
    label: "Load more notifications",
    empty: () => h("p", { class: "muted" }, onlyUnread.checked ? "No unread notifications." : "No notifications yet."),
    what: "notifications",
    signal: ctx.signal,
    onPage: ({ data }) => showCount(data.unreadNotificationCount),
  });
  function reload() {
    newest = null;
    return load(true);
  }

  onlyUnread.addEventListener("change", reload);
  markAll.addEventListener("click", async () => {
    markAll.disabled = true;
    try {
      await markAllRead(newest);
      feedback.replaceChildren(notice("success", "All marked read."));
      await reload();
    } catch (error) {
      markAll.disabled = false;
      feedback.replaceChildren(notice("error", `Could not mark them read: ${error.message}`));
    }
  });

  await reload();
  return h("section", { class: "narrow" },
    heading,
    status,
    h("div", { class: "button-row notifications-tools" },
      h("span", { class: "check" }, onlyUnread, h("label", { for: "only-unread" }, "Only unread")),
      markAll),
    feedback,
    listStatus,
    list,
    more);
}
