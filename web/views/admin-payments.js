// What an admin sees of a pledge's payment: the provider, Stripe's
// PaymentIntent (a link to its page in Stripe's dashboard), what was refunded
// and any dispute; and what they may do about it: refund all or part of a
// captured donation, or cancel an authorization that was never captured.
// Every action asks first and says what happened, or why it could not.
import { api } from "../session.js";
import { field, fieldError, h, money, notice, parseAmount } from "../dom.js";

/** The fields of a pledge these cells read (`payment` is null for non-admins). */
export const PAYMENT_FIELDS = `refundedCents disputeStatus payment { provider paymentIntentId dashboardUrl }`;

const REFUND = `mutation RefundPayment($pledgeId: ID!, $amountCents: Int) {
  refundPayment(pledgeId: $pledgeId, amountCents: $amountCents) { id status refundedCents }
}`;
const CANCEL = `mutation CancelPayment($pledgeId: ID!) { cancelPayment(pledgeId: $pledgeId) { id status } }`;

const PROVIDERS = { simulated: "Simulated", stripe: "Stripe" };

// Stripe's dispute statuses in words; an unknown one is shown as Stripe names it.
const DISPUTES = {
  warning_needs_response: "Inquiry: needs a response",
  warning_under_review: "Inquiry under review",
  warning_closed: "Inquiry closed",
  needs_response: "Needs a response",
  under_review: "Under review",
  won: "Won",
  lost: "Lost",
};

// Only Stripe refunds part of a payment; the simulation refunds whole ones.
const REFUNDS_IN_PART = new Set(["stripe"]);

/** The provider, and with Stripe the PaymentIntent as a link to the dashboard. */
export function paymentCell(p) {
  const pay = p.payment;
  if (!pay) return h("td", {}, "—");
  let intent = null;
  if (pay.paymentIntentId && pay.dashboardUrl) {
    intent = h("a", { href: pay.dashboardUrl, target: "_blank", rel: "noopener noreferrer", class: "intent" },
      h("code", {}, pay.paymentIntentId),
      h("span", { class: "visually-hidden" }, " (Stripe's dashboard, opens in a new tab)"));
  } else if (pay.paymentIntentId) {
    intent = h("code", { class: "intent" }, pay.paymentIntentId);
  } else if (pay.provider === "stripe") {
    intent = h("span", { class: "muted" }, "No PaymentIntent yet");
  }
  return h("td", { class: "wrap payment" },
    h("span", { class: "provider" }, PROVIDERS[pay.provider] || pay.provider),
    intent ? h("br", {}) : null, intent);
}

/** What was given back so far: a REFUNDED pledge gave back all of it. */
export function refundedCell(p) {
  const cents = p.status === "REFUNDED" ? p.amountCents : p.refundedCents;
  return h("td", { class: "num", "data-testid": "refunded" }, money(cents, p.currency));
}

export function disputeCell(p) {
  if (!p.disputeStatus) return h("td", { class: "muted" }, "—");
  return h("td", { "data-testid": "dispute" },
    h("span", { class: `dispute dispute-${p.disputeStatus}` }, DISPUTES[p.disputeStatus] || p.disputeStatus));
}

/** A question with a button that acts and one that backs out. */
function question(text, yesLabel, yes, no) {
  const go = h("button", { type: "button", class: "danger", onclick: yes }, yesLabel);
  const back = h("button", { type: "button", class: "secondary", onclick: no }, "Keep it");
  return [h("p", { role: "alert" }, text), h("div", { class: "button-row" }, go, back)];
}

function disable(cell) {
  for (const b of cell.querySelectorAll("button")) b.disabled = true;
}

function focusFirstButton(cell) {
  cell.querySelector("button")?.focus();
}

/**
 * A captured donation's refund cell: refund all that is left, or (where the
 * provider can) part of it. `changed()` hears that `p` changed (its status,
 * its refunded amount) so the row can show it.
 */
export function refundCell(p, changed) {
  const cell = h("td", { class: "refund" });
  const title = `“${p.campaign.title}”`;
  const left = () => p.amountCents - p.refundedCents;
  const sum = (cents) => money(cents, p.currency);

  function idle(...before) {
    if (p.status !== "CAPTURED") {
      cell.replaceChildren(...before);
      return;
    }
    const all = h("button", {
      type: "button", class: "danger", "aria-label": `Refund ${sum(left())} to ${title}`, onclick: () => ask(null),
    }, "Refund…");
    const part = REFUNDS_IN_PART.has(p.payment?.provider) ? h("button", {
      type: "button", class: "secondary", "aria-label": `Refund part of ${sum(left())} to ${title}`, onclick: amountForm,
    }, "Refund part…") : null;
    cell.replaceChildren(...before, h("div", { class: "button-row" }, all, part));
  }
  function back() {
    idle();
    focusFirstButton(cell);
  }
  function ask(amount) {
    const whole = amount === null || amount === left();
    const text = whole
      ? `Refund ${sum(left())} to ${title}${p.refundedCents ? `, all that is left of ${sum(p.amountCents)}` : ""}? ` +
        "The money goes back to the donor and the campaign's total falls."
      : `Refund ${sum(amount)} of ${sum(p.amountCents)} to ${title}? The money goes back to the donor, ` +
        `the rest of the donation stays, and the campaign's total falls by ${sum(amount)}.`;
    cell.replaceChildren(...question(text, whole ? "Refund now" : `Refund ${sum(amount)} now`,
      () => refund(whole ? null : amount), back));
    focusFirstButton(cell);
  }
  function amountForm() {
    const id = `refund-amount-${p.id}`;
    const input = h("input", { id, type: "text", inputmode: "decimal", autocomplete: "off" });
    const form = h("form", { class: "refund-part", novalidate: true },
      field(id, `Amount to refund (${p.currency})`, input, `Up to ${sum(left())}.`),
      h("div", { class: "button-row" },
        h("button", { type: "submit", class: "secondary" }, "Continue"),
        h("button", { type: "button", class: "link-button", onclick: back }, "Keep it")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const parsed = parseAmount(input.value, p.currency);
      if (parsed.error) return fieldError(input, parsed.error);
      if (parsed.minor > left()) return fieldError(input, `At most ${sum(left())} is left to refund.`);
      ask(parsed.minor);
    });
    cell.replaceChildren(form);
    input.focus();
  }
  async function refund(amount) {
    disable(cell);
    const what = sum(amount ?? left());
    try {
      const variables = amount === null ? { pledgeId: p.id } : { pledgeId: p.id, amountCents: amount };
      const done = (await api(REFUND, variables)).refundPayment;
      p.status = done.status;
      p.refundedCents = done.refundedCents;
      changed();
      idle(notice("success", p.status === "REFUNDED"
        ? `Refunded ${what} to ${title}.`
        : `Refunded ${what} of ${sum(p.amountCents)}; ${sum(left())} is left.`));
    } catch (error) {
      idle(notice("error", `Could not refund: ${error.message}`));
    }
  }
  idle();
  return cell;
}

/** An authorized pledge's cell: cancel the authorization (nothing is charged). */
export function cancelCell(p, changed) {
  const cell = h("td", {});
  const what = `${money(p.amountCents, p.currency)} to “${p.campaign.title}”`;
  function idle(...before) {
    const button = p.status === "AUTHORIZED" ? h("button", {
      type: "button", class: "danger", "aria-label": `Cancel the authorization of ${what}`, onclick: ask,
    }, "Cancel…") : null;
    cell.replaceChildren(...before, button);
  }
  function ask() {
    cell.replaceChildren(...question(
      `Cancel the authorization of ${what}? The card is not charged, the hold on the donor's money is ` +
        "released and the pledge shows as declined.",
      "Cancel it now", cancel, () => { idle(); focusFirstButton(cell); }));
    focusFirstButton(cell);
  }
  async function cancel() {
    disable(cell);
    try {
      p.status = (await api(CANCEL, { pledgeId: p.id })).cancelPayment.status;
      changed();
      idle(notice("success", `Canceled: ${what} was not charged.`));
    } catch (error) {
      idle(notice("error", `Could not cancel: ${error.message}`));
    }
  }
  idle();
  return cell;
}
