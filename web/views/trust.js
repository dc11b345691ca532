// What makes a campaign page believable: the review or suspension notice, where
// the money went (raised, refunded, paid out, held, and each payout), the
// organiser's updates, a form to report the campaign, and the forms organisers
// and admins use for these (edit, post an update, record a payout, suspend).
import { api, ensureSession } from "../session.js";
import { ago, date, dateTime, h, minorDigits, money, notice, parseAmount } from "../dom.js";

export const TRUST_FIELDS = `reviewNote suspensionNote paidOutCents refundedCents heldCents
  payouts { id amountCents currency recipient reference paidAt }
  updates(first: 10) { edges { node { id title body createdAt } } pageInfo { hasNextPage } }`;
const MONEY = `query CampaignMoney($id: ID!) { campaign(id: $id) {
  totals { raisedCents } paidOutCents refundedCents heldCents
  payouts { id amountCents currency recipient reference paidAt }
} }`;
const UPDATE = `mutation UpdateCampaign($id: ID!, $input: CampaignEditInput!) {
  updateCampaign(id: $id, input: $input) { id title description category goalCents status acceptingPledges }
}`;
const POST = `mutation PostCampaignUpdate($id: ID!, $title: String!, $body: String!) {
  postCampaignUpdate(campaignId: $id, title: $title, body: $body) { id title body createdAt }
}`;
const PAYOUT = `mutation RecordPayout($id: ID!, $amount: Int!, $recipient: String!, $reference: String!, $paidAt: DateTime) {
  recordPayout(campaignId: $id, amountCents: $amount, recipient: $recipient, reference: $reference, paidAt: $paidAt) { id }
}`;
const SUSPEND = `mutation SuspendCampaign($id: ID!, $note: String!) {
  suspendCampaign(id: $id, note: $note) { id status acceptingPledges suspensionNote reviewNote }
}`;
const EDITS = `query AdminCampaignEdits($id: ID!) { adminCampaignEdits(campaignId: $id, first: 50) {
  edges { node { id at field oldValue newValue actorId } }
} }`;
const REPORT = `mutation ReportCampaign($id: ID!, $reason: String!) { reportCampaign(id: $id, reason: $reason) }`;

let fieldIds = 0;
function field(labelText, control, hint = null) {
  const id = control.id || `t-field-${++fieldIds}`;
  control.id = id;
  return h("div", { class: "field" },
    h("label", { for: id }, labelText),
    hint ? h("p", { class: "hint" }, hint) : null,
    control);
}

/** A form whose submit runs `act()`; its outcome (or why it failed) shows below it. */
function actionForm(className, controls, label, act) {
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, label);
  const form = h("form", { class: `stack ${className}`, novalidate: true }, controls, feedback, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    feedback.replaceChildren();
    try {
      const done = await act();
      if (done) feedback.replaceChildren(notice("success", done));
    } catch (error) {
      feedback.replaceChildren(notice("error", error.message));
    }
    submit.disabled = false;
  });
  return form;
}

/** Why a campaign is not public or takes no donations, from the admins. */
export function reviewNotice(campaign) {
  if (campaign.status === "IN_REVIEW") {
    return notice("info", "This campaign is waiting for review: only you and the admins can see it. It is published, and takes donations, once an admin approves it.");
  }
  if (campaign.status === "REJECTED") {
    return notice("warning", "This campaign was not approved and stays hidden.",
      campaign.reviewNote ? h("p", {}, "The reviewer said: ", h("q", {}, campaign.reviewNote)) : null);
  }
  if (campaign.status === "SUSPENDED") {
    return notice("warning", h("strong", {}, "This campaign is suspended"), " and takes no donations.",
      campaign.suspensionNote ? h("p", { "data-testid": "suspension-note" }, campaign.suspensionNote) : null);
  }
  return null;
}

function payoutItem(p) {
  return h("li", {},
    h("strong", {}, money(p.amountCents, p.currency)), ` to ${p.recipient}`,
    h("span", { class: "muted" }, ` · ${date(p.paidAt)} · ref. ${p.reference}`));
}

/** Raised, refunded, paid out and held, and the payouts: where the money went. */
export function moneyPanel(campaign) {
  const box = h("div", { "data-testid": "money" });
  function draw(c) {
    const raised = c.totals.raisedCents;
    const figure = (label, cents, testId) => h("div", {}, h("dt", {}, label),
      h("dd", { "data-testid": testId }, money(cents, campaign.currency)));
    box.replaceChildren(
      h("dl", { class: "stats money-figures" },
        figure("Raised", raised, "money-raised"),
        figure("Refunded", c.refundedCents, "money-refunded"),
        figure("Paid out", c.paidOutCents, "money-paid-out"),
        figure("Held for the treatment", c.heldCents, "money-held")),
      c.payouts.length
        ? h("ul", { class: "payouts", "aria-label": "Payouts" }, c.payouts.map(payoutItem))
        : h("p", { class: "muted" }, "Nothing paid out yet."));
  }
  draw(campaign);
  const section = h("section", { class: "panel money", "aria-labelledby": "money-heading" },
    h("h2", { id: "money-heading" }, "Where the money goes"), box);
  section.refresh = async () => {
    const fresh = (await api(MONEY, { id: campaign.id })).campaign;
    if (fresh) draw(fresh);
  };
  return section;
}

function updateItem(u) {
  return h("li", { class: "update" },
    h("h3", {}, u.title),
    h("p", { class: "muted" }, h("time", { datetime: u.createdAt, title: dateTime(u.createdAt) }, ago(u.createdAt))),
    u.body.split(/\n\s*\n/).filter((p) => p.trim()).map((p) => h("p", {}, p.trim())));
}

/** The organiser's updates, newest first, and for the organiser a form to post one. */
export function updatesSection(campaign, { canPost }) {
  const items = campaign.updates.edges.map((e) => e.node);
  const list = h("ul", { class: "updates", "aria-live": "polite" }, items.map(updateItem));
  const empty = h("p", { class: "muted", hidden: items.length > 0 }, "No updates yet.");
  let form = null;
  if (canPost) {
    const title = h("input", { required: true, maxlength: 200, autocomplete: "off" });
    const body = h("textarea", { required: true, rows: 4, maxlength: 10000 });
    form = actionForm("post-update", [
      h("h3", {}, "Post an update"),
      field("Update title", title),
      field("What happened", body, "Donors see it on this page, newest first."),
    ], "Post the update", async () => {
      if (!title.value.trim() || !body.value.trim()) throw new Error("Give the update a title and say what happened.");
      const posted = (await api(POST, { id: campaign.id, title: title.value, body: body.value })).postCampaignUpdate;
      list.prepend(updateItem(posted));
      empty.hidden = true;
      title.value = "";
      body.value = "";
      return "Your update is posted.";
    });
  }
  return h("section", { class: "updates-section", "aria-labelledby": "updates-heading" },
    h("h2", { id: "updates-heading" }, "Updates"), empty, list, form);
}

/** "Report this campaign": a reason, sent with this browser's token (a guest gets one). */
export function reportForm(campaign) {
  const reason = h("textarea", { required: true, rows: 3, maxlength: 1000 });
  const form = actionForm("report", [
    field("Why should the admins look at this campaign?", reason, "For example: the story is copied, or the photos belong to someone else."),
  ], "Send the report", async () => {
    if (!reason.value.trim()) throw new Error("Say why you are reporting it.");
    await ensureSession();
    await api(REPORT, { id: campaign.id, reason: reason.value });
    reason.value = "";
    return "Thank you: the admins will look at this campaign.";
  });
  return h("details", { class: "report-campaign" }, h("summary", {}, "Report this campaign"), form);
}

/** The organiser's (or an admin's) edit form; `onSaved(campaign)` gets the saved fields. */
export function editForm(campaign, onSaved) {
  const title = h("input", { required: true, maxlength: 200, value: campaign.title, autocomplete: "off" });
  const category = h("input", { required: true, maxlength: 50, value: campaign.category });
  const digits = minorDigits(campaign.currency);
  const goal = h("input", { required: true, inputmode: "decimal", value: (campaign.goalCents / 10 ** digits).toFixed(digits) });
  const story = h("textarea", { required: true, rows: 8, maxlength: 20000 });
  story.value = campaign.description;
  const form = actionForm("edit-campaign", [
    field("Campaign title", title),
    field("Campaign category", category),
    field(`Goal (${campaign.currency})`, goal, "It cannot be less than what was raised already."),
    field("Campaign story", story),
  ], "Save the changes", async () => {
    const amount = parseAmount(goal.value, campaign.currency);
    if (amount.error) throw new Error(`Goal: ${amount.error}`);
    const input = {};
    if (title.value.trim() !== campaign.title) input.title = title.value;
    if (category.value.trim() !== campaign.category) input.category = category.value;
    if (amount.minor !== campaign.goalCents) input.goalCents = amount.minor;
    if (story.value.trim() !== campaign.description) input.description = story.value;
    if (!Object.keys(input).length) return "Nothing to save: no field changed.";
    const saved = (await api(UPDATE, { id: campaign.id, input })).updateCampaign;
    Object.assign(campaign, saved);
    onSaved(saved);
    return "Saved. Every change is kept, with who made it and when.";
  });
  return h("details", { class: "edit" }, h("summary", {}, "Edit the campaign"), form);
}

/** Admins: record a payout, then `onDone()` (the money panel refreshes). */
export function payoutForm(campaign, onDone) {
  const amount = h("input", { required: true, inputmode: "decimal", autocomplete: "off" });
  const recipient = h("input", { required: true, maxlength: 200 });
  const reference = h("input", { required: true, maxlength: 200 });
  const paidOn = h("input", { type: "date" });
  const form = actionForm("record-payout", [
    field(`Amount paid out (${campaign.currency})`, amount),
    field("Paid to", recipient, "Who received it, such as the hospital."),
    field("Reference", reference, "The invoice or bank transfer reference."),
    field("Paid on (optional)", paidOn, "Leave empty for today."),
  ], "Record the payout", async () => {
    const parsed = parseAmount(amount.value, campaign.currency);
    if (parsed.error) throw new Error(`Amount: ${parsed.error}`);
    const paidAt = paidOn.value ? new Date(`${paidOn.value}T12:00:00Z`).toISOString() : null;
    await api(PAYOUT, { id: campaign.id, amount: parsed.minor, recipient: recipient.value, reference: reference.value, paidAt });
    for (const control of [amount, recipient, reference, paidOn]) control.value = "";
    await onDone();
    return "The payout is recorded and shown on the page.";
  });
  return h("details", { class: "payout" }, h("summary", {}, "Record a payout"), form);
}

/** Admins: suspend a live campaign with a note everyone reads. */
export function suspendForm(campaign, onSuspended) {
  const note = h("textarea", { required: true, rows: 3, maxlength: 1000 });
  const form = actionForm("suspend", [
    field("Why is it suspended? (shown on the page)", note),
  ], "Suspend the campaign", async () => {
    if (!note.value.trim()) throw new Error("Say why: the note is shown on the page.");
    const updated = (await api(SUSPEND, { id: campaign.id, note: note.value })).suspendCampaign;
    onSuspended(updated);
    return "The campaign is suspended: it takes no donations until an admin resumes it.";
  });
  return h("details", { class: "suspend" }, h("summary", {}, "Suspend…"), form);
}

const FIELD_NAMES = { title: "Title", description: "Story", category: "Category", goal_cents: "Goal", ends_at: "Last day" };

/** Admins: every change to the campaign, newest first, loaded when opened. */
export function editHistory(campaign) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const box = h("details", { class: "edit-history" }, h("summary", {}, "History of changes"), body);
  box.addEventListener("toggle", async () => {
    if (!box.open) return;
    try {
      const edits = (await api(EDITS, { id: campaign.id })).adminCampaignEdits.edges.map((e) => e.node);
      body.replaceChildren(edits.length
        ? h("ul", { class: "edits", "aria-label": "Changes" }, edits.map((e) => h("li", {},
            h("strong", {}, FIELD_NAMES[e.field] || e.field), ": ",
            h("del", {}, e.oldValue ?? "none"), " → ", h("ins", {}, e.newValue ?? "none"),
            h("span", { class: "muted" }, ` · ${dateTime(e.at)} · by ${e.actorId === campaign.owner.id ? "the organiser" : "an admin"}`))))
        : h("p", { class: "muted" }, "Never edited."));
    } catch (error) {
      body.replaceChildren(notice("error", `Could not load the history: ${error.message}`));
    }
  });
  return box;
}
