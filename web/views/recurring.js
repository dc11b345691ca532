// Recurring gifts: "how often" on the donate form (signed-in donors only),
// starting a plan, and the plans in My donations with their changes (amount,
// card, pause, resume, cancel). Each plan's periods are ordinary pledges: they
// show in the donations list below, each with its receipt. With Stripe the
// card is saved on Stripe's own page (Checkout in setup mode): the gift to
// start, or the plan to give the card to, waits in sessionStorage meanwhile,
// and is finished when Stripe sends the donor back with `card_setup=<id>`.
import { api } from "../session.js";
import { badge, dateTime, field, fieldError, h, money, notice, parseAmount } from "../dom.js";

const PLAN_FIELDS = `id amountCents currency interval status nextChargeAt failureReason
  campaign { id title }`;
const CREATE_PLAN = `mutation CreatePlan($input: RecurringDonationInput!) {
  createRecurringDonation(input: $input) { ${PLAN_FIELDS} }
}`;
const MY_PLANS = `query MyPlans {
  myRecurringDonations { ${PLAN_FIELDS} }
  paymentProvider { name }
}`;
const START_CARD_SETUP = `mutation CardSetup($campaignId: ID) {
  startCardSetup(campaignId: $campaignId) { url }
}`;
const CARD_SETUP_KEY = "careforall.cardSetup";
const PAUSE = `mutation Pause($id: ID!) { pauseRecurringDonation(id: $id) { ${PLAN_FIELDS} } }`;
const RESUME = `mutation Resume($id: ID!) { resumeRecurringDonation(id: $id) { ${PLAN_FIELDS} } }`;
const CANCEL = `mutation Cancel($id: ID!) { cancelRecurringDonation(id: $id) { ${PLAN_FIELDS} } }`;
const UPDATE = `mutation Update($id: ID!, $input: RecurringDonationUpdateInput!) {
  updateRecurringDonation(id: $id, input: $input) { ${PLAN_FIELDS} }
}`;

export const PLAN_STATUS = { ACTIVE: "Active", PAUSED: "Paused", CANCELLED: "Cancelled" };
const EVERY = { MONTHLY: "month", WEEKLY: "week" };
const FREQUENCIES = [
  { value: "ONCE", label: "Once" },
  { value: "MONTHLY", label: "Every month" },
  { value: "WEEKLY", label: "Every week" },
];

/** "How often" for a signed-in donor's donate form. */
export function frequencyFieldset(n) {
  const radios = FREQUENCIES.map((f, i) =>
    h("input", { type: "radio", name: `frequency-${n}`, value: f.value, checked: i === 0 }));
  const fieldset = h("fieldset", { "data-testid": "frequency" },
    h("legend", {}, "How often"),
    h("p", { class: "hint" }, "A monthly or weekly gift is charged now, then once each period until you pause or cancel it in My donations."),
    h("div", { class: "pills" },
      radios.map((radio, i) => h("label", { class: "pill" }, radio, FREQUENCIES[i].label))));
  return { fieldset, radios, chosen: () => radios.find((r) => r.checked).value };
}

/** Start a plan; its first period is charged at once (the plan as it is then). */
export async function startPlan(input) {
  return (await api(CREATE_PLAN, { input })).createRecurringDonation;
}

/**
 * Save a card on Stripe's page, then come back: `pending` is what to do with
 * it then ({ start: plan input without its card } or { update: plan id }).
 */
export async function saveCardOnStripe(campaignId, pending) {
  const { url } = (await api(START_CARD_SETUP, { campaignId })).startCardSetup;
  sessionStorage.setItem(CARD_SETUP_KEY, JSON.stringify(pending));
  window.location.assign(url);
  return new Promise(() => {}); // the page is being left
}

/**
 * Back from Stripe's page (`card_setup` in the address): start the gift or
 * give the plan its new card; the notice to show, or null when there was
 * nothing to finish. A reload asks again with the same key: one gift.
 */
export async function finishCardSetup(query) {
  const card = query.get("card_setup");
  const pending = JSON.parse(sessionStorage.getItem(CARD_SETUP_KEY) || "null");
  if (!card || !pending) return null;
  try {
    if (pending.start) {
      const plan = await startPlan({ ...pending.start, paymentMethod: card });
      sessionStorage.removeItem(CARD_SETUP_KEY);
      return planStarted(plan);
    }
    await api(UPDATE, { id: pending.update, input: { paymentMethod: card } });
    sessionStorage.removeItem(CARD_SETUP_KEY);
    return notice("success", h("strong", {}, "Card updated. "),
      "The next gift is charged to the new card; resume a paused gift to try it now.");
  } catch (error) {
    sessionStorage.removeItem(CARD_SETUP_KEY);
    return notice("error", error.message);
  }
}

/** What the donate form says once a plan has started (or its first card was declined). */
export function planStarted(plan) {
  const amount = `${money(plan.amountCents, plan.currency)} every ${EVERY[plan.interval]}`;
  if (plan.status !== "ACTIVE") {
    return notice("error", h("strong", {}, plan.failureReason || "Your card was declined."),
      ` Your gift of ${amount} is paused and nothing was charged. Update the card and resume it in `,
      h("a", { href: "#/donations" }, "My donations"), ".");
  }
  return notice("success", h("strong", {}, "Thank you! "),
    `Your gift of ${amount} has started: the first one is charged now. Change, pause or cancel it in `,
    h("a", { href: "#/donations" }, "My donations"), ".");
}

function nextCharge(plan) {
  if (plan.status !== "ACTIVE" || !plan.nextChargeAt) return "—";
  return dateTime(plan.nextChargeAt);
}

/** One plan: its facts, then its actions; `replace` redraws it after a change. */
function planCard(plan, replace, hosted) {
  const status = h("div", { role: "status" });
  const act = async (document, variables, field) => {
    status.replaceChildren();
    try {
      replace((await api(document, variables))[field]);
    } catch (error) {
      status.replaceChildren(notice("error", error.message));
    }
  };
  const id = plan.id;
  const amountInput = h("input", { id: `plan-amount-${id}`, type: "text", inputmode: "decimal", autocomplete: "off" });
  const change = h("form", { class: "plan-change", novalidate: true },
    field(amountInput.id, `New amount (${plan.currency})`, amountInput, "For the gifts to come; past ones stay."),
    h("button", { type: "submit", class: "secondary" }, "Change amount"));
  change.addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = parseAmount(amountInput.value, plan.currency);
    fieldError(amountInput, amount.error || "");
    if (amount.error) return amountInput.focus();
    act(UPDATE, { id, input: { amountCents: amount.minor } }, "updateRecurringDonation");
  });
  const button = (label, document, mutation, confirmText = null) => {
    const b = h("button", { type: "button", class: "secondary" }, label);
    b.addEventListener("click", () => {
      if (confirmText && !window.confirm(confirmText)) return;
      act(document, { id }, mutation);
    });
    return b;
  };
  const open = plan.status !== "CANCELLED";
  // With Stripe, a new card is saved on Stripe's page (then back here).
  let newCard = null;
  if (open && hosted) {
    newCard = h("button", { type: "button", class: "secondary" }, "Update card");
    newCard.addEventListener("click", () => {
      status.replaceChildren();
      saveCardOnStripe(null, { update: id })
        .catch((error) => status.replaceChildren(notice("error", error.message)));
    });
  }
  return h("li", { class: "plan", "data-plan-id": id },
    h("p", {},
      h("strong", {}, `${money(plan.amountCents, plan.currency)} every ${EVERY[plan.interval]}`),
      " to ", h("a", { href: `#/campaigns/${encodeURIComponent(plan.campaign.id)}` }, plan.campaign.title),
      " ", badge("plan", plan.status, PLAN_STATUS)),
    h("p", { class: "muted" }, `Next charge: ${nextCharge(plan)}`),
    plan.failureReason ? h("p", { class: "muted" }, `Last charge declined: ${plan.failureReason}`) : null,
    open ? h("div", { class: "plan-actions" },
      plan.status === "ACTIVE"
        ? button("Pause", PAUSE, "pauseRecurringDonation")
        : button("Resume", RESUME, "resumeRecurringDonation"),
      button("Cancel", CANCEL, "cancelRecurringDonation",
        "Cancel this gift? Nothing more is charged; past gifts stay with the campaign."),
      newCard) : null,
    open ? change : null,
    status);
}

/** The signed-in donor's plans, for My donations; null when there are none. */
export async function plansSection(signal, query = new URLSearchParams()) {
  const data = await api(MY_PLANS, {}, { signal });
  const plans = data.myRecurringDonations;
  const hosted = data.paymentProvider?.name === "stripe";
  // Back from Stripe's page with a new card: give it to its plan first.
  const finished = await finishCardSetup(query);
  if (finished) return plansSection(signal).then((section) => h("div", {}, finished, section));
  if (!plans.length) return null;
  const list = h("ul", { class: "plans" });
  const draw = (plan) => {
    const item = planCard(plan, (changed) => {
      const fresh = draw(changed);
      item.replaceWith(fresh);
      fresh.querySelector("button")?.focus();
    }, hosted);
    return item;
  };
  list.append(...plans.map(draw));
  return h("section", { class: "recurring", "aria-labelledby": "plans-heading" },
    h("h2", { id: "plans-heading" }, "Recurring gifts"), list);
}
