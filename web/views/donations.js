// My donations (a guest's, kept in this browser, or an account's) and a
// printable receipt for each.
import { api, currentSession, currentUser } from "../session.js";
import { PLEDGE_STATUS, badge, dateTime, h, money, notice } from "../dom.js";
import { pager } from "../pager.js";
import { givingSection } from "./giving.js";
import { plansSection } from "./recurring.js";

const MY_DONATIONS = `query MyDonations($first: Int, $after: String) {
  myDonations(first: $first, after: $after) {
    edges { node { id amountCents currency status createdAt campaign { id title } } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const RECEIPT = `query Receipt($id: ID!) {
  pledge(id: $id) {
    id amountCents currency status donorName message failureReason createdAt
    receiptNumber receiptIssuedAt
    campaign { id title owner { name } }
    history { fromStatus toStatus at source }
  }
  organisation { name address taxId }
}`;

/** A receipt's date as the mailed receipt writes it: "7 December 2026" (UTC). */
function receiptDate(iso) {
  const at = new Date(iso);
  const month = at.toLocaleString("en-GB", { month: "long", timeZone: "UTC" });
  return `${at.getUTCDate()} ${month} ${at.getUTCFullYear()}`;
}

const SOURCES = {
  api: "you, on this site",
  "auto-capture": "automatic capture",
  admin: "CareForAll staff",
};

function sourceText(source) {
  if (SOURCES[source]) return SOURCES[source];
  if (source.startsWith("webhook")) return "the payment provider";
  return source;
}

function signInHint() {
  return currentUser()
    ? null
    : h("p", { class: "muted" },
        "Donations made as a guest are kept in this browser. ",
        h("a", { href: "#/register?next=/donations" }, "Register"), " or ",
        h("a", { href: "#/signin?next=/donations" }, "sign in"),
        " to keep them in an account and see them anywhere.");
}

function donationRow(node) {
  return h("tr", {},
    h("td", { "data-label": "Date" }, dateTime(node.createdAt)),
    h("td", { "data-label": "Campaign" },
      h("a", { href: `#/campaigns/${encodeURIComponent(node.campaign.id)}` }, node.campaign.title)),
    h("td", { "data-label": "Amount", class: "num" }, money(node.amountCents, node.currency)),
    h("td", { "data-label": "State" }, badge("pledge", node.status, PLEDGE_STATUS)),
    h("td", {}, h("a", {
      href: `#/donations/${encodeURIComponent(node.id)}`,
      "aria-label": `Receipt for ${money(node.amountCents, node.currency)} to ${node.campaign.title}`,
    }, "Receipt")));
}

export async function donationsView(ctx) {
  ctx.setTitle("My donations");
  const head = [
    ctx.flash ? notice("info", ctx.flash) : null,
    h("h1", { tabindex: "-1" }, "My donations"),
    signInHint(),
  ];
  if (!currentSession()) {
    return h("section", {}, head,
      h("p", {}, "You have not donated from this browser yet. ", h("a", { href: "#/" }, "Find a campaign"), "."));
  }
  const table = h("tbody", {});
  const status = h("div", { role: "status" });
  const { more, load } = pager({
    query: MY_DONATIONS,
    field: "myDonations",
    list: table,
    row: donationRow,
    status,
    label: "Load more donations",
    empty: () => h("p", {}, "No donations yet. ", h("a", { href: "#/" }, "Find a campaign"), "."),
    what: "your donations",
    signal: ctx.signal,
  });
  // A payment captured, declined or refunded elsewhere: show its new state.
  window.addEventListener("careforall:notification", () => load(true), { signal: ctx.signal });
  await load();
  // A signed-in donor's recurring gifts come first; each charge is a row below.
  const plans = currentUser() ? await plansSection(ctx.signal, ctx.query).catch(() => null) : null;
  return h("section", {}, head, plans, status,
    h("table", { class: "donations" },
      h("caption", { class: "visually-hidden" }, "Your donations, newest first"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Date"),
        h("th", { scope: "col" }, "Campaign"),
        h("th", { scope: "col", class: "num" }, "Amount"),
        h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Receipt")))),
      table),
    more,
    currentUser() ? givingSection() : null);
}

export async function receiptView(ctx) {
  const [id] = ctx.params;
  ctx.setTitle("Receipt");
  if (!currentSession()) {
    return h("section", {}, h("h1", { tabindex: "-1" }, "Receipt"),
      notice("error", "This browser has no donations. Sign in to see receipts of your account."),
      h("p", {}, h("a", { href: `#/signin?next=${encodeURIComponent(ctx.path)}` }, "Sign in")));
  }
  let pledge, org;
  try {
    ({ pledge, organisation: org } = await api(RECEIPT, { id }, { signal: ctx.signal }));
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return h("section", {}, h("h1", { tabindex: "-1" }, "Receipt"), notice("error", error.message),
      h("p", {}, h("a", { href: "#/donations" }, "Back to my donations")));
  }
  if (!pledge) {
    return h("section", {}, h("h1", { tabindex: "-1" }, "Receipt"),
      notice("error", "There is no donation with this number."),
      h("p", {}, h("a", { href: "#/donations" }, "Back to my donations")));
  }
  ctx.setTitle(`Receipt ${pledge.receiptNumber || pledge.id}`);
  const amount = money(pledge.amountCents, pledge.currency);
  const paid = ["CAPTURED", "REFUNDED"].includes(pledge.status);
  const row = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
  const printButton = h("button", { type: "button", class: "secondary no-print" }, "Print this receipt");
  printButton.addEventListener("click", () => window.print());

  return h("article", { class: "receipt" },
    h("p", { class: "no-print" }, h("a", { href: "#/donations" }, "← My donations")),
    h("header", {},
      h("p", { class: "receipt-brand", "data-testid": "receipt-org-name" }, org.name),
      h("h1", { tabindex: "-1" }, "Donation receipt"),
      h("p", { class: "muted", "data-testid": "receipt-number" }, pledge.receiptNumber
        ? `Receipt number ${pledge.receiptNumber}`
        : "No receipt number yet: one is given when the payment goes through and a receipt is mailed.")),
    h("dl", { class: "receipt-facts" },
      row("Amount", h("strong", { "data-testid": "receipt-amount" }, amount)),
      row("Campaign", h("a", { href: `#/campaigns/${encodeURIComponent(pledge.campaign.id)}` }, pledge.campaign.title)),
      row("Organiser", pledge.campaign.owner.name),
      pledge.receiptIssuedAt
        ? row("Date", h("span", { "data-testid": "receipt-date" }, receiptDate(pledge.receiptIssuedAt)))
        : row("Date", dateTime(pledge.createdAt, true)),
      row("Payment reference", h("span", { "data-testid": "receipt-reference" }, pledge.id)),
      row("State", badge("pledge", pledge.status, PLEDGE_STATUS)),
      row("Name shown", pledge.donorName || "Anonymous"),
      pledge.message ? row("Message", pledge.message) : null,
      pledge.failureReason ? row("Why it failed", pledge.failureReason) : null),
    h("p", { class: "receipt-note" },
      pledge.status === "REFUNDED" ? `This donation of ${amount} was refunded.`
        : paid ? `Thank you: ${amount} was paid to this campaign.`
        : pledge.status === "FAILED" ? "This donation was not paid: nothing was charged."
        : "This donation is not paid yet."),
    h("h2", {}, "State history"),
    h("table", { class: "history" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "When"),
        h("th", { scope: "col" }, "Change"),
        h("th", { scope: "col" }, "By"))),
      h("tbody", {}, pledge.history.map((t) => h("tr", {},
        h("td", {}, dateTime(t.at, true)),
        h("td", {}, t.fromStatus
          ? `${PLEDGE_STATUS[t.fromStatus]} → ${PLEDGE_STATUS[t.toStatus]}`
          : `Created as ${PLEDGE_STATUS[t.toStatus]}`),
        h("td", {}, sourceText(t.source)))))),
    h("footer", { class: "receipt-org", "data-testid": "receipt-org" },
      h("p", {}, h("strong", {}, org.name)),
      org.address ? h("p", {}, org.address) : null,
      org.taxId ? h("p", {}, `Tax id: ${org.taxId}`) : null),
    h("div", { class: "button-row no-print" }, printButton));
}
