// Small DOM and formatting helpers. Text always goes in as text (never as HTML),
// and nothing sets a style attribute, so the strict Content-Security-Policy holds.

/** Make an element: h("a", { href: "#/", class: "x", onclick: fn }, "text", child). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value" || name === "checked") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** How many digits a currency's minor unit has (USD 2, JPY 0, KWD 3). */
export function minorDigits(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency })
      .resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** 2500, "USD" -> "$25.00" */
export function money(minor, currency) {
  const digits = minorDigits(currency);
  try {
    return new Intl.NumberFormat(undefined, {
      style: "currency",
      currency,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(minor / 10 ** digits);
  } catch {
    return `${(minor / 10 ** digits).toFixed(digits)} ${currency}`;
  }
}

/** What a person typed ("25", "25.5", "25,50") in minor units, or an error in words. */
export function parseAmount(text, currency) {
  const digits = minorDigits(currency);
  const value = String(text).trim().replace(/\s/g, "");
  const match = /^(\d{1,10})(?:[.,](\d*))?$/.exec(value);
  if (!match) return { error: "Enter an amount in numbers, like 25 or 25.50." };
  const fraction = match[2] || "";
  if (fraction.length > digits) {
    return {
      error: digits
        ? `Use at most ${digits} digits after the decimal point.`
        : `${currency} amounts are whole numbers.`,
    };
  }
  const minor = Number(match[1]) * 10 ** digits + Number(fraction.padEnd(digits, "0") || 0);
  if (!Number.isSafeInteger(minor) || minor < 1) return { error: "Enter an amount above zero." };
  return { minor };
}

/** A date and time; `precise` adds seconds and the time zone (for receipts). */
export function dateTime(iso, precise = false) {
  const options = precise
    ? { year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit", timeZoneName: "short" }
    : { dateStyle: "medium", timeStyle: "short" };
  return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
}

export function date(iso) {
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).format(new Date(iso));
}

/** "just now", "5 minutes ago", "3 days ago" */
export function ago(iso) {
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (seconds < 45) return "just now";
  if (seconds < 3600) return format.format(-Math.round(seconds / 60), "minute");
  if (seconds < 86400) return format.format(-Math.round(seconds / 3600), "hour");
  return format.format(-Math.round(seconds / 86400), "day");
}

export const CAMPAIGN_STATUS = {
  ACTIVE: "Active", PAUSED: "Paused", CLOSED: "Closed",
  IN_REVIEW: "In review", REJECTED: "Not approved", SUSPENDED: "Suspended",
};

export const PLEDGE_STATUS = {
  PENDING: "Pending",
  AUTHORIZED: "Authorized",
  CAPTURED: "Captured",
  REFUNDED: "Refunded",
  FAILED: "Declined",
};

/** A campaign's status for people: an ACTIVE campaign past its end date has "Ended". */
export function campaignBadge(campaign) {
  if (campaign.status === "ACTIVE" && campaign.acceptingPledges === false) {
    return h("span", { class: "badge badge-campaign badge-campaign-closed" }, "Ended");
  }
  return badge("campaign", campaign.status, CAMPAIGN_STATUS);
}

export function badge(kind, status, labels) {
  return h("span", { class: `badge badge-${kind} badge-${kind}-${status.toLowerCase()}` }, labels[status] || status);
}

/** A progress bar for raised of goal, with its meaning for screen readers. */
export function progress(raised, goal, currency) {
  const bar = h("progress", {
    max: goal,
    value: Math.min(raised, goal),
    "aria-label": `${money(raised, currency)} raised of ${money(goal, currency)}`,
  });
  return bar;
}

export function percent(raised, goal) {
  return goal > 0 ? Math.floor((100 * raised) / goal) : 0;
}

/** A random idempotency key; crypto.randomUUID needs a secure context, so fall back. */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A message box: kind "error" is announced at once (role=alert), others politely. */
export function notice(kind, ...children) {
  return h(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    ...children,
  );
}

/**
 * A labelled field with its hint and a place for its error, both read out
 * with it (aria-describedby); `fieldError` fills that place.
 */
export function field(id, label, input, hint = null) {
  const errorId = `${id}-error`;
  input.setAttribute("aria-describedby", hint ? `${id}-hint ${errorId}` : errorId);
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    input,
    h("p", { class: "field-error", id: errorId, "aria-live": "polite" }));
}

/** Show (or, with no message, clear) the error of a field made by `field`. */
export function fieldError(input, message = "") {
  const slot = document.getElementById(`${input.id}-error`);
  if (slot) slot.textContent = message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}
