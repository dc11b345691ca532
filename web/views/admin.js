// Admins: the service's numbers, campaigns to review and reports, stuck
// pledges, dead letters, the webhook log, payments (refunds, cancels), reconcile
// and the donations export. Everyone else gets a message and no admin data is ever requested
// for them.
import { api, currentSession, currentUser } from "../session.js";
import { ApiError } from "../graphql.js";
import { PLEDGE_STATUS, ago, badge, dateTime, h, money, notice } from "../dom.js";
import { PAYMENT_FIELDS, cancelCell, disputeCell, paymentCell, refundCell, refundedCell } from "./admin-payments.js";
import { drawQueue, drawReports } from "./review.js";

const STUCK_AFTER_MINUTES = 5;

const ME = `query Me { me { id role } }`;
const STATS = `query AdminStats {
  adminStats {
    at outboxPending outboxLagSeconds deadLetters webhookRejectsLastHour
    pledgesByStatus { status count amounts { currency amountCents } }
    raisedToday { currency amountCents }
    raisedTotal { currency amountCents }
  }
}`;
const PLEDGE_FIELDS = `id amountCents currency status donorName createdAt campaign { id title } ${PAYMENT_FIELDS}`;
const PLEDGES = `query AdminPledges($status: PledgeStatus, $createdTo: DateTime, $first: Int) {
  adminPledges(status: $status, createdTo: $createdTo, first: $first) {
    edges { node { ${PLEDGE_FIELDS} } }
  }
}`;
const DEAD_LETTERS = `query DeadLetters { deadLetters(first: 50) {
  edges { node { id name attempts lastError createdAt } }
} }`;
const WEBHOOKS = `query WebhookLog { webhookLog(first: 20) {
  edges { node { id receivedAt outcome reason statusCode eventId type pledgeId } }
} }`;
const FAILING_PLANS = `query FailingPlans { adminFailingRecurringDonations(first: 20) {
  edges { node { id amountCents currency interval status nextChargeAt failureReason campaign { id title } } }
} }`;
const REPLAY = `mutation ReplayDeadLetter($id: ID!) { replayDeadLetter(id: $id) }`;
const REPLAY_ALL = `mutation ReplayAllDeadLetters { replayAllDeadLetters }`;
const RECONCILE = `mutation ReconcileTotals { reconcileTotals {
  campaignId raisedCentsWas pledgeCountWas raisedCents pledgeCount
} }`;
const CAMPAIGN = `query Campaign($id: ID!) { campaign(id: $id) { id title currency } }`;

function onlyAdmins(ctx) {
  ctx.setTitle("Admin");
  return h("section", {},
    h("h1", { tabindex: "-1" }, "Admin"),
    notice("info", "Only admins can see this page. ",
      currentUser()
        ? "Your account is not an admin account."
        : h("span", {}, h("a", { href: "#/signin?next=%2Fadmin" }, "Sign in"), " with an admin account to continue.")),
    h("p", {}, h("a", { href: "#/" }, "Back to the campaigns")));
}

const amounts = (rows) => (rows.length ? rows.map((r) => money(r.amountCents, r.currency)).join(", ") : money(0, "USD"));

function table(className, caption, headings, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-scroll" },
    h("table", { class: `admin-table ${className}` },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

function panel(id, title, ...children) {
  return h("section", { class: "panel admin-panel", "aria-labelledby": `${id}-title`, "data-testid": id },
    h("h2", { id: `${id}-title` }, title), ...children);
}

/** Whether this is an admin: the browser's copy of the role, then the server's (it may be newer). */
async function confirmedAdmin(signal) {
  const user = currentUser();
  if (!user || user.role !== "ADMIN") return false;
  const me = (await api(ME, {}, { signal })).me;
  return Boolean(me && me.role === "ADMIN");
}

/** Put what `draw()` makes in `target`, or why it could not be made. */
async function fill(target, draw, signal) {
  try {
    target.replaceChildren(await draw());
  } catch (error) {
    if (error.name === "AbortError" || signal.aborted) return;
    target.replaceChildren(notice("error", `Could not load this: ${error.message}`));
  }
}

function stat(label, value, testId = null) {
  return h("div", {}, h("dt", {}, label), h("dd", { "data-testid": testId }, value));
}

async function drawStats(signal) {
  const s = (await api(STATS, {}, { signal })).adminStats;
  const byStatus = s.pledgesByStatus.map((row) => h("tr", {},
    h("td", {}, badge("pledge", row.status, PLEDGE_STATUS)),
    h("td", { class: "num" }, String(row.count)),
    h("td", { class: "num" }, amounts(row.amounts))));
  return h("div", {},
    h("dl", { class: "stats" },
      stat("Raised today", amounts(s.raisedToday), "raised-today"),
      stat("Raised in total", amounts(s.raisedTotal), "raised-total"),
      stat("Outbox events waiting", String(s.outboxPending)),
      stat("Oldest waiting event", `${s.outboxLagSeconds.toFixed(1)} s`),
      stat("Dead letters", String(s.deadLetters), "dead-letter-count"),
      stat("Webhooks rejected (last hour)", String(s.webhookRejectsLastHour))),
    table("by-status", "Pledges by status", ["Status", "Pledges", "Amount"], byStatus, "No pledges yet."),
    h("p", { class: "muted" }, `As of ${dateTime(s.at, true)}.`));
}

function pledgeCells(p) {
  return [
    h("td", {}, h("a", { href: `#/campaigns/${encodeURIComponent(p.campaign.id)}` }, p.campaign.title)),
    h("td", {}, p.donorName || h("span", { class: "muted" }, "Anonymous")),
    h("td", { class: "num" }, money(p.amountCents, p.currency)),
    h("td", {}, badge("pledge", p.status, PLEDGE_STATUS)),
    h("td", {}, h("time", { datetime: p.createdAt, title: dateTime(p.createdAt, true) }, ago(p.createdAt))),
  ];
}

const nodes = (connection) => connection.edges.map((e) => e.node);

/**
 * A pledge's row: `columns(p)` are its figures, redrawn when `action(p,
 * changed)` (its last cell, which keeps what it says) changes the pledge.
 */
function pledgeRow(p, columns, action, refreshStats) {
  const row = h("tr", { "data-pledge-id": p.id });
  const last = action(p, () => {
    row.replaceChildren(...columns(p), last);
    refreshStats();
  });
  row.replaceChildren(...columns(p), last);
  return row;
}

async function drawStuck(signal, refreshStats) {
  const before = new Date(Date.now() - STUCK_AFTER_MINUTES * 60_000).toISOString();
  const lists = await Promise.all(["AUTHORIZED", "PENDING"].map((status) =>
    api(PLEDGES, { status, createdTo: before, first: 50 }, { signal })));
  const columns = (p) => [...pledgeCells(p), paymentCell(p),
    h("td", {}, h("a", { href: `#/donations/${encodeURIComponent(p.id)}` }, "Receipt"))];
  const rows = lists.flatMap((d) => nodes(d.adminPledges))
    .map((p) => pledgeRow(p, columns, cancelCell, refreshStats));
  return table("stuck", "Stuck pledges",
    ["Campaign", "Donor", "Amount", "Status", "Created", "Payment", "Details", "Cancel"], rows,
    `No pledge has waited in Pending or Authorized for more than ${STUCK_AFTER_MINUTES} minutes.`);
}

async function drawCaptured(signal, refreshStats) {
  const data = await api(PLEDGES, { status: "CAPTURED", first: 20 }, { signal });
  const columns = (p) => [...pledgeCells(p), paymentCell(p), refundedCell(p), disputeCell(p)];
  const rows = nodes(data.adminPledges).map((p) => pledgeRow(p, columns, refundCell, refreshStats));
  return table("captured", "Captured donations",
    ["Campaign", "Donor", "Amount", "Status", "Created", "Payment", "Refunded", "Dispute", "Refund"], rows,
    "No captured donations.");
}

function deadLetterRow(d, replay) {
  const button = h("button", { type: "button", class: "secondary", "aria-label": `Replay event ${d.id} (${d.name})` }, "Replay");
  button.addEventListener("click", () => replay(button, REPLAY, { id: d.id }, `Event ${d.id}`));
  return h("tr", {},
    h("td", {}, h("code", {}, d.name), " ", h("span", { class: "muted" }, `#${d.id}`)),
    h("td", { class: "num" }, String(d.attempts)),
    h("td", { class: "wrap" }, d.lastError || "—"),
    h("td", {}, h("time", { datetime: d.createdAt }, dateTime(d.createdAt))),
    h("td", {}, button));
}

/** The dead letters, each with a replay button, and one to replay them all. */
async function drawDeadLetters(signal, refreshStats) {
  const message = h("div", {});
  const list = h("div", {});
  const all = h("button", { type: "button", class: "secondary" }, "Replay all dead letters");
  async function drawList() {
    const letters = nodes((await api(DEAD_LETTERS, {}, { signal })).deadLetters);
    all.disabled = letters.length === 0;
    return table("dead-letters", "Dead letters", ["Event", "Tries", "Last error", "Parked", "Replay"],
      letters.map((d) => deadLetterRow(d, replay)),
      "No dead letters: every event was delivered.");
  }
  async function replay(button, mutation, variables, what) {
    button.disabled = true;
    try {
      const n = Object.values(await api(mutation, variables))[0];
      message.replaceChildren(notice("success", n
        ? `${what}: ${n} event${n === 1 ? "" : "s"} sent for delivery again.`
        : `${what}: nothing to replay, it is no longer dead.`));
      await fill(list, drawList, signal);
      refreshStats();
    } catch (error) {
      button.disabled = false;
      message.replaceChildren(notice("error", `Could not replay: ${error.message}`));
    }
  }
  all.addEventListener("click", () => replay(all, REPLAY_ALL, {}, "Replay all"));
  list.replaceChildren(await drawList());
  return h("div", {}, message, list, h("div", { class: "button-row" }, all));
}

async function drawWebhooks(signal) {
  const data = await api(WEBHOOKS, {}, { signal });
  const rows = nodes(data.webhookLog).map((w) => h("tr", {},
    h("td", {}, h("time", { datetime: w.receivedAt }, dateTime(w.receivedAt, true))),
    h("td", {}, String(w.outcome).toLowerCase().replace(/_/g, " ")),
    h("td", { class: "num" }, String(w.statusCode)),
    h("td", {}, w.type || "—"),
    h("td", { class: "wrap" }, w.eventId || "—"),
    h("td", { class: "wrap" }, w.reason || "—")));
  return table("webhooks", "Webhook log", ["Received", "Outcome", "HTTP", "Type", "Event", "Reason"], rows,
    "No webhooks received yet.");
}

async function drawFailingPlans(signal) {
  const data = await api(FAILING_PLANS, {}, { signal });
  const rows = nodes(data.adminFailingRecurringDonations).map((p) => h("tr", {},
    h("td", {}, h("a", { href: `#/campaigns/${encodeURIComponent(p.campaign.id)}` }, p.campaign.title)),
    h("td", { class: "num" }, money(p.amountCents, p.currency)),
    h("td", {}, p.interval === "WEEKLY" ? "weekly" : "monthly"),
    h("td", {}, p.status === "PAUSED" ? "paused" : "retrying"),
    h("td", {}, p.nextChargeAt ? dateTime(p.nextChargeAt) : "—"),
    h("td", { class: "wrap" }, p.failureReason || "—")));
  return table("failing-plans", "Failing recurring gifts",
    ["Campaign", "Amount", "Every", "State", "Next try", "Reason"], rows, "No recurring gift is failing.");
}

/** What reconcile repaired: each drifted campaign's totals, was and now. */
async function drifted(drifts) {
  const campaigns = await Promise.all(drifts.map((d) => api(CAMPAIGN, { id: d.campaignId }).then((r) => r.campaign).catch(() => null)));
  const rows = drifts.map((d, i) => {
    const c = campaigns[i];
    const cur = c?.currency || "USD";
    return h("tr", {},
      h("td", {}, h("a", { href: `#/campaigns/${encodeURIComponent(d.campaignId)}` }, c?.title || d.campaignId)),
      h("td", { class: "num" }, `${money(d.raisedCentsWas, cur)} → ${money(d.raisedCents, cur)}`),
      h("td", { class: "num" }, `${d.pledgeCountWas} → ${d.pledgeCount}`));
  });
  return [
    notice("success", `${drifts.length} campaign${drifts.length === 1 ? "" : "s"} had drifted and ${drifts.length === 1 ? "was" : "were"} repaired:`),
    table("drifts", "Repaired totals", ["Campaign", "Raised (was → now)", "Donations (was → now)"], rows, ""),
  ];
}

/**
 * A button and the place below it for what it did: `working` while `act(out)`
 * runs (it shows its outcome in `out`), or why it failed ("`failure`: …").
 */
function actionControls(label, working, failure, act) {
  const out = h("div", {});
  const button = h("button", { type: "button", class: "secondary" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren(h("p", { role: "status" }, working));
    try {
      await act(out);
    } catch (error) {
      out.replaceChildren(notice("error", `${failure}: ${error.message}`));
    }
    button.disabled = false;
  });
  return [h("div", { class: "button-row" }, button), out];
}

function reconcileControls(refreshStats) {
  return actionControls("Reconcile totals", "Recomputing every campaign's totals from its pledges…",
    "Could not reconcile", async (out) => {
      const drifts = (await api(RECONCILE)).reconcileTotals;
      out.replaceChildren(...(drifts.length
        ? await drifted(drifts)
        : [notice("success", "Nothing drifted: every campaign's totals match its pledges.")]));
      refreshStats();
    });
}

/** The donations export as a file, or an ApiError saying why not. */
async function fetchExport() {
  const token = currentSession()?.token;
  let response;
  try {
    response = await fetch("/admin/export/donations.csv", { headers: { Authorization: `Bearer ${token}` } });
  } catch {
    throw new ApiError("Could not reach CareForAll: the connection dropped. Try again.", "NETWORK");
  }
  if (!response.ok) {
    let message = `The export failed (HTTP ${response.status}).`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch {
      // keep the generic message
    }
    throw new ApiError(message, `HTTP_${response.status}`);
  }
  return response.blob();
}

/** The download button; the file's URL lasts as long as the page. */
function exportControls(ctx) {
  return actionControls("Download donations (CSV)", "Preparing the file…", "Could not export", async (out) => {
    const url = URL.createObjectURL(await fetchExport());
    const name = `donations-${new Date().toISOString().slice(0, 10)}.csv`;
    const link = h("a", { href: url, download: name }, `Save ${name}`);
    out.replaceChildren(h("p", { role: "status" }, "The file is ready: ", link, "."));
    ctx.onCleanup(() => URL.revokeObjectURL(url));
    link.click();
  });
}

export async function adminView(ctx) {
  if (!(await confirmedAdmin(ctx.signal))) return onlyAdmins(ctx);
  ctx.setTitle("Admin");
  const signal = ctx.signal;
  const stats = h("div", { "aria-live": "polite" });
  const stuck = h("div", {});
  const captured = h("div", {});
  const dead = h("div", {});
  const webhooks = h("div", {});
  const queue = h("div", {});
  const reports = h("div", {});
  const failing = h("div", {});
  const refreshStats = () => fill(stats, () => drawStats(signal), signal);

  await Promise.all([
    refreshStats(),
    fill(stuck, () => drawStuck(signal, refreshStats), signal),
    fill(captured, () => drawCaptured(signal, refreshStats), signal),
    fill(dead, () => drawDeadLetters(signal, refreshStats), signal),
    fill(webhooks, () => drawWebhooks(signal), signal),
    fill(queue, () => drawQueue(signal), signal),
    fill(reports, () => drawReports(signal), signal),
    fill(failing, () => drawFailingPlans(signal), signal),
  ]);

  return h("section", { class: "admin" },
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Admin")),
    panel("admin-stats", "Numbers", stats),
    panel("admin-review", "Campaigns to review", h("p", { class: "hint" }, "Oldest first. Approve to publish, or reject with a note."), queue),
    panel("admin-reports", "Reports", h("p", { class: "hint" }, "The newest 20 reports from visitors."), reports),
    panel("admin-captured", "Captured donations", h("p", { class: "hint" },
      "The newest 20. A refund asks first; refunding part of a donation needs Stripe."), captured),
    panel("admin-stuck", "Stuck pledges", h("p", { class: "hint" },
      "An authorization can be canceled: the card is not charged."), stuck),
    panel("admin-dead-letters", "Dead letters", dead),
    panel("admin-failing-plans", "Failing recurring gifts",
      h("p", { class: "hint" }, "Declined charges being retried, and gifts paused after their last retry."), failing),
    panel("admin-reconcile", "Reconcile totals",
      h("p", { class: "hint" }, "Recompute each campaign's totals from its pledges and repair any that drifted."),
      reconcileControls(refreshStats)),
    panel("admin-export", "Export", h("p", { class: "hint" }, "Every donation as a spreadsheet file."),
      exportControls(ctx)),
    panel("admin-webhooks", "Webhook log", h("p", { class: "hint" }, "The newest 20 requests to /webhooks/payments."), webhooks));
}
