// Admins' review: the campaigns waiting (oldest first, with the organiser's
// other campaigns and the reports against them), approved or rejected with a
// note; and the latest reports from visitors.
import { api } from "../session.js";
import { CAMPAIGN_STATUS, ago, badge, dateTime, h, money, notice } from "../dom.js";

const QUEUE = `query AdminReviewQueue($after: String) {
  adminReviewQueue(first: 20, after: $after) {
    edges { node {
      campaign { id title description category goalCents currency createdAt owner { id name } }
      reportCount organiserReportCount
      organiserCampaigns { id title status }
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const REVIEW = `mutation ReviewCampaign($id: ID!, $approve: Boolean!, $note: String) {
  reviewCampaign(id: $id, approve: $approve, note: $note) { id status }
}`;
const REPORTS = `query AdminReports { adminReports(first: 20) {
  edges { node { id campaignId reason reporter createdAt } }
} }`;

const link = (id, title) => h("a", { href: `#/campaigns/${encodeURIComponent(id)}` }, title);

/** One campaign waiting: what it says, who asks, their history, and the decision. */
function queueItem(entry, onDecided) {
  const c = entry.campaign;
  const others = entry.organiserCampaigns.filter((o) => o.id !== c.id);
  const note = h("textarea", { rows: 2, maxlength: 1000, "aria-label": `Note to the organiser of “${c.title}”` });
  const outcome = h("div", {});
  const approve = h("button", { type: "button", class: "primary", "aria-label": `Approve “${c.title}”` }, "Approve");
  const reject = h("button", { type: "button", class: "danger", "aria-label": `Reject “${c.title}”` }, "Reject");
  const item = h("li", { class: "review-item", "data-campaign-id": c.id },
    h("h3", {}, link(c.id, c.title)),
    h("p", { class: "muted" },
      `${c.category} · goal ${money(c.goalCents, c.currency)} · by ${c.owner.name} · sent `,
      h("time", { datetime: c.createdAt, title: dateTime(c.createdAt) }, ago(c.createdAt))),
    h("p", { class: "review-story" }, c.description.length > 400 ? `${c.description.slice(0, 400)}…` : c.description),
    h("p", {}, `Reports: ${entry.reportCount} on this campaign, ${entry.organiserReportCount} on all of the organiser's.`),
    others.length
      ? h("div", {}, h("p", {}, "The organiser's other campaigns:"),
          h("ul", { class: "organiser-history" }, others.map((o) =>
            h("li", {}, link(o.id, o.title), " ", badge("campaign", o.status, CAMPAIGN_STATUS)))))
      : h("p", { class: "muted" }, "The organiser's first campaign."),
    h("div", { class: "field" }, h("p", { class: "hint" }, "A note is required to reject; the organiser reads it."), note),
    h("div", { class: "button-row" }, approve, reject),
    outcome);

  async function decide(approved) {
    if (!approved && !note.value.trim()) {
      outcome.replaceChildren(notice("error", "Say why in the note: the organiser reads it."));
      note.focus();
      return;
    }
    approve.disabled = reject.disabled = true;
    try {
      await api(REVIEW, { id: c.id, approve: approved, note: note.value.trim() || null });
      item.replaceChildren(notice("success",
        approved ? `Approved “${c.title}”: it is live.` : `Rejected “${c.title}”; the organiser is told why.`));
      onDecided();
    } catch (error) {
      approve.disabled = reject.disabled = false;
      outcome.replaceChildren(notice("error", `Could not decide: ${error.message}`));
    }
  }
  approve.addEventListener("click", () => decide(true));
  reject.addEventListener("click", () => decide(false));
  return item;
}

export async function drawQueue(signal) {
  const list = h("ul", { class: "review-queue", "aria-label": "Campaigns waiting for review" });
  const status = h("div", { role: "status" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More campaigns");
  let after = null;
  const emptyCheck = () => {
    if (!list.querySelector("button")) status.replaceChildren(h("p", { class: "muted" }, "No campaign is waiting for review."));
  };
  async function load() {
    const page = (await api(QUEUE, { after }, { signal })).adminReviewQueue;
    list.append(...page.edges.map((e) => queueItem(e.node, emptyCheck)));
    after = page.pageInfo.endCursor;
    more.hidden = !page.pageInfo.hasNextPage;
    emptyCheck();
  }
  more.addEventListener("click", () => load().catch((error) => status.replaceChildren(notice("error", error.message))));
  await load();
  return h("div", {}, status, list, more);
}

export async function drawReports(signal) {
  const reports = (await api(REPORTS, {}, { signal })).adminReports.edges.map((e) => e.node);
  if (!reports.length) return h("p", { class: "muted" }, "No reports.");
  return h("ul", { class: "reports" }, reports.map((r) => h("li", {},
    h("p", {}, link(r.campaignId, "The campaign"), " · ",
      h("time", { datetime: r.createdAt, title: dateTime(r.createdAt) }, ago(r.createdAt)),
      h("span", { class: "muted" }, ` · from ${r.reporter.startsWith("anon:") ? "a guest" : "an account"}`)),
    h("blockquote", {}, r.reason))));
}
