// The donate form: amount (presets or custom), optional name and message, a
// simulated card, then the pledge's state as it moves. One idempotency key per
// attempt: a double click or a retry after a dropped connection sends the same
// key, so the server returns the same pledge instead of making a second one.
import { ApiError, NETWORK } from "../graphql.js";
import { api, currentSession, currentUser, ensureSession } from "../session.js";
import { PLEDGE_STATUS, h, minorDigits, money, newKey, notice, parseAmount } from "../dom.js";

const PLEDGE_FIELDS = `id status amountCents currency failureReason history { toStatus at }`;
const CREATE_PLEDGE = `mutation CreatePledge($input: PledgeInput!) {
  createPledge(input: $input) { ${PLEDGE_FIELDS} }
}`;
const AUTHORIZE = `mutation Authorize($id: ID!, $method: String!) {
  authorizePayment(pledgeId: $id, paymentMethod: $method) { ${PLEDGE_FIELDS} }
}`;
const PLEDGE = `query Pledge($id: ID!) { pledge(id: $id) { ${PLEDGE_FIELDS} } }`;

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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function donateForm(campaign) {
  const n = ++formCount;
  const { currency } = campaign;
  const unit = 10 ** minorDigits(currency);
  const ids = {
    custom: `amount-custom-${n}`,
    name: `donor-name-${n}`,
    message: `donor-message-${n}`,
    amountError: `amount-error-${n}`,
  };
  let attempt = null; // { key } for the donation being tried now
  let busy = false;

  // --- the form -------------------------------------------------------------
  const presetRadios = PRESETS.map((major, i) =>
    h("input", { type: "radio", name: `amount-${n}`, value: String(major * unit), checked: i === 1 }));
  // "Other amount" is one choice among the presets: the field itself, drawn as
  // the last pill. Typing in it picks it; picking a preset empties it.
  const customInput = h("input", {
    id: ids.custom, type: "text", inputmode: "decimal", autocomplete: "off",
    placeholder: "Other", "aria-label": `Other amount in ${currency}`,
    "aria-describedby": ids.amountError,
  });
  const otherPill = h("label", { class: "pill pill-other", for: ids.custom },
    customInput, h("span", { class: "pill-currency", "aria-hidden": "true" }, currency));
  const amountError = h("p", { id: ids.amountError, class: "field-error", "aria-live": "polite" });
  const nameInput = h("input", { id: ids.name, type: "text", maxlength: 100, autocomplete: "name" });
  const messageInput = h("textarea", { id: ids.message, rows: 3, maxlength: 1000 });
  const cardRadios = CARDS.map((card, i) =>
    h("input", { type: "radio", name: `card-${n}`, value: card.value, checked: i === 0 }));
  const submit = h("button", { type: "submit", class: "primary" });
  const feedback = h("div", { class: "feedback" });
  const progressBox = h("div", { class: "pledge-progress" });

  const form = h(
    "form",
    { class: "donate-form", novalidate: true },
    h("fieldset", {},
      h("legend", {}, `1. Amount (${currency})`),
      h("div", { class: "pills" },
        presetRadios.map((radio, i) =>
          h("label", { class: "pill" }, radio, money(PRESETS[i] * unit, currency))),
        otherPill),
      amountError),
    h("fieldset", {},
      h("legend", {}, "2. About you (optional)"),
      h("label", { for: ids.name }, "Your name"),
      h("p", { class: "hint" }, "Shown with your donation. Leave it empty to give anonymously."),
      nameInput,
      h("label", { for: ids.message }, "A message for the family"),
      messageInput),
    h("fieldset", {},
      h("legend", {}, "3. Card"),
      h("p", { class: "hint" }, "Payments here are simulated: no real money moves. Pick how the card should behave."),
      h("div", { class: "cards-choice" },
        cardRadios.map((radio, i) =>
          h("label", { class: "choice" }, radio, h("span", {}, h("strong", {}, CARDS[i].label), ` (${CARDS[i].hint})`))))),
    feedback,
    submit,
  );

  function amountMinor() {
    const picked = presetRadios.find((r) => r.checked);
    if (!picked) return parseAmount(customInput.value, currency);
    return { minor: Number(picked.value) };
  }

  function useCustom(yes) {
    if (yes) for (const radio of presetRadios) radio.checked = false;
    else customInput.value = "";
    otherPill.classList.toggle("active", yes);
  }

  function updateButton() {
    if (busy) return;
    const amount = amountMinor();
    submit.textContent = amount.minor ? `Donate ${money(amount.minor, currency)}` : "Donate";
  }

  // Any change to the donation (amount, name, message) is a new attempt with a
  // new key. The card is not part of the pledge: after a dropped connection,
  // trying another card must still find the pledge the first try made.
  form.addEventListener("input", (event) => {
    if (busy) return;
    if (event.target === customInput) useCustom(true);
    else if (presetRadios.includes(event.target)) useCustom(false);
    if (!cardRadios.includes(event.target)) attempt = null;
    amountError.textContent = "";
    updateButton();
  });
  // Back in a field that holds an amount: that amount is the one given again.
  customInput.addEventListener("focus", () => {
    if (customInput.value.trim()) {
      useCustom(true);
      updateButton();
    }
  });
  updateButton();

  // --- showing the pledge's state ---------------------------------------------
  function showProgress(pledge) {
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
    progressBox.replaceChildren(
      h("p", { class: "pledge-state", "data-testid": "pledge-status", "data-status": pledge.status },
        `Donation of ${money(pledge.amountCents, pledge.currency)}: `,
        h("strong", {}, PLEDGE_STATUS[pledge.status])),
      h("ol", { class: "steps", "aria-label": "Payment progress" }, steps),
    );
  }

  async function follow(pledge) {
    const until = Date.now() + FOLLOW_FOR_MS;
    while (["PENDING", "AUTHORIZED"].includes(pledge.status) && Date.now() < until) {
      await sleep(300);
      if (!form.isConnected) return pledge;
      const data = await api(PLEDGE, { id: pledge.id });
      if (data.pledge) pledge = data.pledge;
      showProgress(pledge);
    }
    return pledge;
  }

  function receiptLink(pledge) {
    return h("a", { href: `#/donations/${encodeURIComponent(pledge.id)}` }, "See the receipt");
  }

  function finished(pledge) {
    if (pledge.status === "CAPTURED") {
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
      container.replaceChildren(h("h2", {}, "Thank you"), progressBox, feedback, again);
      again.focus();
    } else if (pledge.status === "FAILED") {
      feedback.replaceChildren(notice("error",
        h("strong", {}, pledge.failureReason || "Your card was declined."),
        " Nothing was charged and the total did not change. Choose another card and try again."));
    } else {
      feedback.replaceChildren(notice("info",
        `Your card approved ${money(pledge.amountCents, pledge.currency)}; the payment is being completed. `,
        "Its state is kept in ", h("a", { href: "#/donations" }, "My donations"), "."));
    }
  }

  function lock(locked) {
    busy = locked;
    for (const fieldset of form.querySelectorAll("fieldset")) fieldset.disabled = locked;
    submit.disabled = locked;
    if (locked) submit.textContent = "Processing…";
    else {
      updateButton();
      if (document.activeElement === document.body && form.isConnected) submit.focus();
    }
  }

  // --- submitting -------------------------------------------------------------
  async function pay(input, method) {
    let pledge = (await api(CREATE_PLEDGE, { input })).createPledge;
    showProgress(pledge);
    if (pledge.status === "PENDING") {
      try {
        pledge = (await api(AUTHORIZE, { id: pledge.id, method })).authorizePayment;
      } catch (error) {
        // An earlier try of this same attempt already paid it: read where it is.
        if (!(error instanceof ApiError) || error.code !== "INVALID_TRANSITION") throw error;
        pledge = (await api(PLEDGE, { id: pledge.id })).pledge;
      }
      showProgress(pledge);
    }
    return follow(pledge);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return; // a double click: the first click's request is on its way
    const amount = amountMinor();
    if (amount.error) {
      amountError.textContent = amount.error;
      customInput.setAttribute("aria-invalid", "true");
      customInput.focus();
      return;
    }
    customInput.removeAttribute("aria-invalid");
    const method = cardRadios.find((r) => r.checked).value;
    lock(true);
    feedback.replaceChildren();
    attempt ??= { key: newKey() };
    const input = {
      campaignId: campaign.id,
      amountCents: amount.minor,
      currency,
      idempotencyKey: attempt.key,
      donorName: nameInput.value.trim() || null,
      message: messageInput.value.trim() || null,
    };
    try {
      const hadSession = Boolean(currentSession());
      await ensureSession();
      let pledge;
      try {
        pledge = await pay(input, method);
      } catch (error) {
        // A stored guest session the server no longer knows: start a new one, once.
        if (!(error instanceof ApiError) || error.code !== "UNAUTHENTICATED" || !hadSession || currentSession()) throw error;
        await ensureSession();
        pledge = await pay(input, method);
      }
      attempt = null; // this attempt is over: a new donation gets a new key
      finished(pledge);
    } catch (error) {
      const retry = error instanceof ApiError && error.code === NETWORK;
      if (!retry) attempt = null;
      feedback.replaceChildren(notice("error", retry
        ? `The connection dropped before the answer arrived. Press “Donate ${money(amount.minor, currency)}” again to retry: the same donation is sent, so you are never charged twice.`
        : error.message));
    } finally {
      lock(false);
    }
  });

  const container = h("div", { class: "donate-box" }, h("h2", {}, "Donate"), progressBox, form);
  return container;
}
