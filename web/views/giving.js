// A signed-in donor's yearly giving summary (for a tax return): the year's
// paid donations and their totals, and the same as a CSV file.
import { api, currentSession } from "../session.js";
import { dateTime, h, money, notice } from "../dom.js";

const SUMMARY = `query Giving($year: Int!) {
  myGivingSummary(year: $year) {
    year
    lines { pledgeId paidAt campaignTitle amountCents currency recurring }
    totals { currency amountCents donations }
  }
}`;

/** Fetch the CSV with the donor's token and hand it to the browser as a file. */
async function downloadCsv(year) {
  const response = await fetch(`/account/giving/${year}.csv`, {
    headers: { Authorization: `Bearer ${currentSession()?.token}`, Accept: "text/csv" },
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(typeof body.error === "string" ? body.error : `The download was refused (HTTP ${response.status}).`);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: `careforall-giving-${year}.csv`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function summaryTable(summary) {
  if (!summary.lines.length) return h("p", {}, `No donations paid in ${summary.year}.`);
  return h("table", { class: "donations" },
    h("caption", { class: "visually-hidden" }, `Donations paid in ${summary.year}`),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Date"),
      h("th", { scope: "col" }, "Campaign"),
      h("th", { scope: "col", class: "num" }, "Amount"),
      h("th", { scope: "col" }, "Kind"))),
    h("tbody", {}, summary.lines.map((line) => h("tr", {},
      h("td", { "data-label": "Date" }, dateTime(line.paidAt)),
      h("td", { "data-label": "Campaign" }, line.campaignTitle),
      h("td", { "data-label": "Amount", class: "num" }, money(line.amountCents, line.currency)),
      h("td", { "data-label": "Kind" }, line.recurring ? "Recurring" : "One-off")))),
    h("tfoot", {}, summary.totals.map((t) => h("tr", {},
      h("th", { scope: "row", colspan: "2" }, `Total (${t.donations} donation${t.donations === 1 ? "" : "s"})`),
      h("td", { class: "num", "data-testid": `giving-total-${t.currency}` }, money(t.amountCents, t.currency)),
      h("td", {})))));
}

/** The yearly summary section of My donations, for the current year first. */
export function givingSection() {
  const thisYear = new Date().getUTCFullYear();
  const select = h("select", { id: "giving-year" },
    [0, 1, 2, 3].map((back) => h("option", { value: String(thisYear - back) }, String(thisYear - back))));
  const body = h("div", { role: "status" });
  const csv = h("button", { type: "button", class: "secondary" }, "Download CSV");
  const show = async () => {
    try {
      const year = Number(select.value);
      body.replaceChildren(summaryTable((await api(SUMMARY, { year })).myGivingSummary));
    } catch (error) {
      body.replaceChildren(notice("error", error.message));
    }
  };
  select.addEventListener("change", show);
  csv.addEventListener("click", () => downloadCsv(select.value).catch((error) =>
    body.replaceChildren(notice("error", error.message))));
  show();
  return h("section", { class: "giving", "aria-labelledby": "giving-heading" },
    h("h2", { id: "giving-heading" }, "Yearly summary"),
    h("p", { class: "muted" }, "Your donations paid in a year, for your tax return."),
    h("div", { class: "field" }, h("label", { for: "giving-year" }, "Year"), select),
    body, csv);
}
