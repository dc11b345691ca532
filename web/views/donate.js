// The donate form: amount (presets or custom), optional name and message, a
// simulated card (or, with Stripe, a trip to Stripe's own Checkout page and
// back to the campaign), then the pledge's state as it moves. One idempotency key per
// attempt: a double click or a retry after a dropped connection sends the same
// key, so the server returns the same pledge instead of making a second one.
import { ApiError, NETWORK } from "../graphql.js";
import { api, currentSession, currentUser, ensureSession } from "../session.js";
import { PLEDGE_STATUS, field, fieldError, h, minorDigits, money, newKey, notice, parseAmount } from "../dom.js";
import { frequencyFieldset, planStarted, saveCardOnStripe, startPlan } from "./recurring.js";

const PLEDGE_FIELDS = `id status amountCents currency failureReason history { toStatus at }`;
const CREATE_PLEDGE = `mutation CreatePledge($input: PledgeInput!) {
  createPledge(input: $input) { ${PLEDGE_FIELDS} }
}`;
const AUTHORIZE = `mutation Authorize($id: ID!, $method: String!) {
  authorizePayment(pledgeId: $id, paymentMethod: $method) { ${PLEDGE_FIELDS} }
}`;
const PLEDGE = `query Pledge($id: ID!) { pledge(id: $id) { ${PLEDGE_FIELDS} } }`;
const PROVIDER = `query PaymentProvider { paymentProvider { name simulated notice } }`;
const START_CHECKOUT = `mutation StartCheckout($id: ID!) { startCheckout(pledgeId: $id) { url } }`;

const PRESETS = [10, 25, 50, 100];
const CARDS = [
  { value: "pm_card_ok", label: "Card that works", hint: "the payment goes through" },
  { value: "pm_card_declined", label: "Card that is declined", hint: "see what a declined card looks like" },
];
const FOLLOW_FOR_MS = 15000;
const STEPS = ["PENDING", "AUTHORIZED", "CAPTURED"];
const STEP_HELP = {
  PENDING: "recorded, not paid yet",
  AUTHORIZED: "your card approved the amount",
  CAPTURED: "paid: it counts toward the goal",
};

let formCount = 0;
let provider = null; // the server's answer to PROVIDER, asked once per page load

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The amount: preset pills, then "Other amount" as one choice among them: the
 * field itself, drawn as the last pill. Typing in it picks it; picking a
 * preset empties it.
 */
function amountFieldset(n, currency) {
  const unit = 10 ** minorDigits(currency);
  const customId = `amount-custom-${n}`;
  const errorId = `amount-error-${n}`;
  const presets = PRESETS.map((major, i) =>
    h("input", { type: "radio", name: `amount-${n}`, value: String(major * unit), checked: i === 1 }));
  const custom = h("input", {
    id: customId, type: "text", inputmode: "decimal", autocomplete: "off",
    placeholder: "Other", "aria-label": `Other amount in ${currency}`,
    "aria-describedby": errorId,
  });
  const otherPill = h("label", { class: "pill pill-other", for: customId },
    custom, h("span", { class: "pill-currency", "aria-hidden": "true" }, currency));
  const error = h("p", { id: errorId, class: "field-error", "aria-live": "polite" });
  const fieldset = h("fieldset", {},
    h("legend", {}, `1. Amount (${currency})`),
    h("div", { class: "pills" },
      presets.map((radio, i) =>
        h("label", { class: "pill" }, radio, money(PRESETS[i] * unit, currency))),
      otherPill),
    error);
  return { fieldset, presets, custom, otherPill, error };
}

/**
 * The donor's name, message and (for a guest; an account's receipts go to its
 * own address) where the receipt goes, all optional.
 */
function aboutFieldset(n) {
  const nameId = `donor-name-${n}`;
  const messageId = `donor-message-${n}`;
  const name = h("input", { id: nameId, type: "text", maxlength: 100, autocomplete: "name" });
  const message = h("textarea", { id: messageId, rows: 3, maxlength: 1000 });
  const email = currentUser() ? null : h("input", { id: `donor-email-${n}`, type: "email", autocomplete: "email" });
  // Never ticked for the donor: updates by mail only when asked.
  const updates = h("input", { id: `donor-updates-${n}`, type: "checkbox" });
  const updatesChoice = h("label", { class: "choice", for: updates.id }, updates,
    h("span", {}, "Email me this campaign's updates"));
  if (email) {
    // A guest's updates go to the receipt address: offered once there is one.
    const offer = () => {
      updatesChoice.hidden = !email.value.trim();
      if (updatesChoice.hidden) updates.checked = false;
    };
    email.addEventListener("input", offer);
    offer();
  }
  const fieldset = h("fieldset", {},
    h("legend", {}, "2. About you (optional)"),
    h("label", { for: nameId }, "Your name"),
    h("p", { class: "hint" }, "Shown with your donation. Leave it empty to give anonymously."),
    name,
    h("label", { for: messageId }, "A message for the family"),
    message,
    email ? field(email.id, "Email for your receipt", email,
      "Your receipt goes there once the payment goes through, and a notice if it is declined or refunded. Never shown to anyone.") : null,
    updatesChoice);
  return { fieldset, name, message, email, updates };
}

/** The guest's receipt address: { email } (null when none), or { error } in words. */
function chosenEmail(about) {
  const value = about.email?.value.trim() || "";
  if (!value) return { email: null };
  return about.email.checkValidity() && !/\s/.test(value)
    ? { email: value }
    : { error: "Enter an email address like ada@example.org, or leave it empty." };
}

/** The simulated card: one that works, one that is declined. */
function cardFieldset(n) {
  const radios = CARDS.map((card, i) =>
    h("input", { type: "radio", name: `card-${n}`, value: card.value, checked: i === 0 }));
  const fieldset = h("fieldset", {},
    h("legend", {}, "3. Card"),
    h("p", { class: "hint" }, "Payments here are simulated: no real money moves. Pick how the card should behave."),
    h("div", { class: "cards-choice" },
      radios.map((radio, i) =>
        h("label", { class: "choice" }, radio, h("span", {}, h("strong", {}, CARDS[i].label), ` (${CARDS[i].hint})`)))));
  return { fieldset, radios };
}

/** The amount chosen: { minor } or { error } in words. */
function chosenAmount(donation) {
  const { amount, currency } = donation;
  const picked = amount.presets.find((r) => r.checked);
  if (!picked) return parseAmount(amount.custom.value, currency);
  return { minor: Number(picked.value) };
}

function useCustom(amount, yes) {
  if (yes) for (const radio of amount.presets) radio.checked = false;
  else amount.custom.value = "";
  amount.otherPill.classList.toggle("active", yes);
}

function updateButton(donation) {
  if (donation.busy) return;
  const amount = chosenAmount(donation);
  donation.submit.textContent = amount.minor ? `Donate ${money(amount.minor, donation.currency)}` : "Donate";
}

function lock(donation, locked) {
  const { form, submit } = donation;
  donation.busy = locked;
  for (const fieldset of form.querySelectorAll("fieldset")) fieldset.disabled = locked;
  submit.disabled = locked;
  if (locked) submit.textContent = "Processing…";
  else {
    updateButton(donation);
    if (document.activeElement === document.body && form.isConnected) submit.focus();
  }
}

/**
 * Any change to the donation (amount, name, message) is a new attempt with a
 * new key. The card is not part of the pledge: after a dropped connection,
 * trying another card must still find the pledge the first try made.
 */
function followChanges(donation) {
  const { form, amount, card } = donation;
  form.addEventListener("input", (event) => {
    if (donation.busy) return;
    if (event.target === amount.custom) useCustom(amount, true);
    else if (amount.presets.includes(event.target)) useCustom(amount, false);
    if (!card.radios.includes(event.target)) donation.attempt = null;
    amount.error.textContent = "";
    updateButton(donation);
  });
  // Back in a field that holds an amount: that amount is the one given again.
  amount.custom.addEventListener("focus", () => {
    if (amount.custom.value.trim()) {
      useCustom(amount, true);
      updateButton(donation);
    }
  });
}

/** The pledge's state, and the steps it has passed on the way to paid. */
function showProgress(box, pledge) {
  const reached = new Set(pledge.history.map((t) => t.toStatus));
  reached.add(pledge.status);
  const steps = STEPS.map((status) => {
    const done = reached.has(status);
    return h("li", { class: done ? "done" : "todo" },
      h("span", { class: "step-mark", "aria-hidden": "true" }, done ? "✓" : "○"),
      h("strong", {}, PLEDGE_STATUS[status]),
      ` — ${STEP_HELP[status]}`,
      h("span", { class: "visually-hidden" }, done ? " (done)" : " (not yet)"));
  });
  if (pledge.status === "FAILED") {
    steps.push(h("li", { class: "failed" },
      h("span", { class: "step-mark", "aria-hidden": "true" }, "✗"),
      h("strong", {}, "Declined")));
  }
  box.replaceChildren(
    h("p", { class: "pledge-state", "data-testid": "pledge-status", "data-status": pledge.status },
      `Donation of ${money(pledge.amountCents, pledge.currency)}: `,
      h("strong", {}, PLEDGE_STATUS[pledge.status])),
    h("ol", { class: "steps", "aria-label": "Payment progress" }, steps),
  );
}

/** Read the pledge again while it is on its way, for a while, showing each state. */
async function follow(donation, pledge) {
  const until = Date.now() + FOLLOW_FOR_MS;
  while (["PENDING", "AUTHORIZED"].includes(pledge.status) && Date.now() < until) {
    await sleep(300);
    if (!donation.form.isConnected) return pledge;
    const data = await api(PLEDGE, { id: pledge.id });
    if (data.pledge) pledge = data.pledge;
    showProgress(donation.progressBox, pledge);
  }
  return pledge;
}

function receiptLink(pledge) {
  return h("a", { href: `#/donations/${encodeURIComponent(pledge.id)}` }, "See the receipt");
}

/** A paid donation: the thanks replace the form, with a way to give again. */
function thank(donation, pledge) {
  const { campaign, container, progressBox, feedback } = donation;
  const guest = !currentUser();
  feedback.replaceChildren(notice("success",
    h("strong", {}, "Thank you! "),
    `Your donation of ${money(pledge.amountCents, pledge.currency)} was received. `,
    receiptLink(pledge), ".",
    guest ? h("span", {}, " It is kept in this browser: ",
      h("a", { href: "#/register" }, "register"), " to keep it in an account.") : null));
  const again = h("button", { type: "button", class: "secondary" }, "Make another donation");
  again.addEventListener("click", () => {
    const fresh = donateForm(campaign);
    container.replaceWith(fresh);
    fresh.querySelector("input")?.focus();
  });
  container.replaceChildren(h("h2", {}, "Thank you"), donation.banner, progressBox, feedback, again);
  again.focus();
}

function finished(donation, pledge) {
  if (pledge.status === "CAPTURED") {
    thank(donation, pledge);
  } else if (pledge.status === "FAILED") {
    donation.feedback.replaceChildren(notice("error",
      h("strong", {}, pledge.failureReason || "Your card was declined."),
      " Nothing was charged and the total did not change. Choose another card and try again."));
  } else {
    donation.feedback.replaceChildren(notice("info",
      `Your card approved ${money(pledge.amountCents, pledge.currency)}; the payment is being completed. `,
      "Its state is kept in ", h("a", { href: "#/donations" }, "My donations"), "."));
  }
}

/**
 * With Stripe the card is typed on Stripe's Checkout page, never on this
 * app's (no Stripe script here, so the CSP stays strict): the browser goes
 * there, and Stripe sends it back to the campaign's page.
 */
async function checkout(pledge) {
  const { url } = (await api(START_CHECKOUT, { id: pledge.id })).startCheckout;
  window.location.assign(url);
  return new Promise(() => {}); // the page is being left
}

/** Create the pledge and authorize it, then follow it until it is paid (or not). */
async function pay(donation, input, method) {
  const show = (pledge) => showProgress(donation.progressBox, pledge);
  let pledge = (await api(CREATE_PLEDGE, { input })).createPledge;
  show(pledge);
  if (pledge.status === "PENDING" && donation.hosted) return checkout(pledge);
  if (pledge.status === "PENDING") {
    try {
      pledge = (await api(AUTHORIZE, { id: pledge.id, method })).authorizePayment;
    } catch (error) {
      // An earlier try of this same attempt already paid it: read where it is.
      if (!(error instanceof ApiError) || error.code !== "INVALID_TRANSITION") throw error;
      pledge = (await api(PLEDGE, { id: pledge.id })).pledge;
    }
    show(pledge);
  }
  return follow(donation, pledge);
}

/** Pay with this browser's session, starting one for a guest. */
async function payInSession(donation, input, method) {
  const hadSession = Boolean(currentSession());
  await ensureSession();
  try {
    return await pay(donation, input, method);
  } catch (error) {
    // A stored guest session the server no longer knows: start a new one, once.
    if (!(error instanceof ApiError) || error.code !== "UNAUTHENTICATED" || !hadSession || currentSession()) throw error;
    await ensureSession();
    return pay(donation, input, method);
  }
}

/** The amount's problem, shown at its field; false when there is none. */
function refuseAmount(donation, amount) {
  const { custom, error } = donation.amount;
  if (!amount.error) {
    custom.removeAttribute("aria-invalid");
    return false;
  }
  error.textContent = amount.error;
  custom.setAttribute("aria-invalid", "true");
  custom.focus();
  return true;
}

async function submitDonation(donation) {
  if (donation.busy) return; // a double click: the first click's request is on its way
  const { campaign, currency, about, card, feedback } = donation;
  const amount = chosenAmount(donation);
  if (refuseAmount(donation, amount)) return;
  const receipt = chosenEmail(about);
  if (about.email) fieldError(about.email, receipt.error);
  if (receipt.error) return about.email.focus();
  const method = card.radios.find((r) => r.checked)?.value;
  lock(donation, true);
  feedback.replaceChildren();
  donation.attempt ??= { key: newKey() };
  const input = {
    campaignId: campaign.id,
    amountCents: amount.minor,
    currency,
    idempotencyKey: donation.attempt.key,
    donorName: about.name.value.trim() || null,
    message: about.message.value.trim() || null,
  };
  if (receipt.email) input.donorEmail = receipt.email;
  if (about.updates.checked && (currentUser() || receipt.email)) input.campaignUpdates = true;
  const interval = donation.frequency?.chosen() ?? "ONCE";
  try {
    if (interval !== "ONCE") {
      // A plan has no name or message of its own: its periods are plain gifts.
      const start = {
        campaignId: campaign.id, amountCents: amount.minor, currency, interval,
        idempotencyKey: donation.attempt.key,
      };
      // With Stripe the card is saved on Stripe's page; the gift starts when
      // the donor is back (recurring.js finishCardSetup).
      if (donation.hosted) return await saveCardOnStripe(campaign.id, { start });
      const plan = await startPlan({ ...start, paymentMethod: method });
      donation.attempt = null;
      feedback.replaceChildren(planStarted(plan));
      return;
    }
    const pledge = await payInSession(donation, input, method);
    donation.attempt = null; // this attempt is over: a new donation gets a new key
    finished(donation, pledge);
  } catch (error) {
    const retry = error instanceof ApiError && error.code === NETWORK;
    if (!retry) donation.attempt = null;
    if (receipt.email && error.code === "BAD_USER_INPUT" && /mail/i.test(error.message)) {
      fieldError(about.email, error.message);
      about.email.focus();
      return;
    }
    feedback.replaceChildren(notice("error", retry
      ? `The connection dropped before the answer arrived. Press “Donate ${money(amount.minor, currency)}” again to retry: the same donation is sent, so you are never charged twice.`
      : error.message));
  } finally {
    lock(donation, false);
  }
}

/** The payment provider in use; null when the server could not say. */
function paymentProvider() {
  provider ??= api(PROVIDER)
    .then((data) => data.paymentProvider)
    .catch(() => {
      provider = null; // asked again by the next form
      return null;
    });
  return provider;
}

/**
 * A banner that says so plainly when payments are simulated (the server's
 * CAREFORALL_PAYMENT_PROVIDER): nobody should think a test donation was real.
 */
function simulatedBanner() {
  const banner = h("div", {
    class: "notice notice-warning simulated-banner", role: "note", hidden: true,
    "data-testid": "simulated-payments",
  });
  paymentProvider().then((info) => {
    if (!info?.simulated) return;
    banner.replaceChildren(h("strong", {}, "Test mode. "), info.notice);
    banner.hidden = false;
  });
  return banner;
}

export function donateForm(campaign) {
  const n = ++formCount;
  const { currency } = campaign;
  const amount = amountFieldset(n, currency);
  const about = aboutFieldset(n);
  const card = cardFieldset(n);
  // Recurring gifts belong to an account: only a signed-in donor is asked.
  const frequency = currentUser() ? frequencyFieldset(n) : null;
  const submit = h("button", { type: "submit", class: "primary" });
  const feedback = h("div", { class: "feedback" });
  const progressBox = h("div", { class: "pledge-progress" });
  const form = h("form", { class: "donate-form", novalidate: true },
    amount.fieldset, frequency?.fieldset ?? null, about.fieldset, card.fieldset, feedback, submit);
  const banner = simulatedBanner();
  const container = h("div", { class: "donate-box" }, h("h2", {}, "Donate"), banner, progressBox, form);
  // The form's parts and its state: `attempt` is { key } for the donation
  // being tried now, `busy` while one is on its way.
  const donation = {
    campaign, currency, amount, frequency, about, card, submit, feedback, progressBox, form, container, banner,
    attempt: null, busy: false, hosted: false,
  };
  paymentProvider().then((info) => {
    if (info?.name !== "stripe") return;
    donation.hosted = true;
    card.fieldset.replaceChildren(
      h("legend", {}, "3. Card"),
      h("p", { class: "hint", "data-testid": "hosted-payment" },
        "You type your card on Stripe's secure page, then come back here."));
  });
  followChanges(donation);
  updateButton(donation);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitDonation(donation);
  });
  return container;
}
