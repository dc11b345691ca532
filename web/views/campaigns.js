// The campaign list: newest first, paged with a cursor ("Load more").
import { campaignBadge, h, money, notice, percent, progress } from "../dom.js";
import { pager } from "../pager.js";

const PAGE_SIZE = 12;
const CAMPAIGNS = `query Campaigns($first: Int, $after: String, $status: CampaignStatus) {
  campaigns(first: $first, after: $after, status: $status) {
    edges { node { id title description category status acceptingPledges goalCents currency
      totals { raisedCents pledgeCount } } }
    pageInfo { hasNextPage endCursor }
  }
}`;

function teaser(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 160 ? `${flat.slice(0, 157).trimEnd()}…` : flat;
}

/** One campaign as a card; shared with "My campaigns". */
export function campaignCard(node, ...extra) {
  const { raisedCents, pledgeCount } = node.totals;
  return h(
    "article",
    { class: "card" },
    h("h2", {}, h("a", { href: `#/campaigns/${encodeURIComponent(node.id)}` }, node.title)),
    h(
      "p",
      { class: "badges" },
      h("span", { class: "badge badge-category" }, node.category),
      campaignBadge(node),
    ),
    node.description ? h("p", { class: "teaser" }, teaser(node.description)) : null,
    progress(raisedCents, node.goalCents, node.currency),
    h(
      "p",
      { class: "meta" },
      h("strong", {}, money(raisedCents, node.currency)),
      ` raised of ${money(node.goalCents, node.currency)} (${percent(raisedCents, node.goalCents)}%)`,
      ` · ${pledgeCount} ${pledgeCount === 1 ? "donation" : "donations"}`,
    ),
    ...extra,
  );
}

export async function campaignsView(ctx) {
  ctx.setTitle("Campaigns");
  const list = h("ul", { class: "cards", "aria-label": "Campaigns" });
  const status = h("p", { role: "status", class: "list-status" });
  const filter = h(
    "select",
    { id: "status-filter" },
    h("option", { value: "" }, "All campaigns"),
    h("option", { value: "ACTIVE" }, "Active (taking donations)"),
    h("option", { value: "PAUSED" }, "Paused"),
    h("option", { value: "CLOSED" }, "Closed"),
  );
  const { more, load } = pager({
    query: CAMPAIGNS,
    field: "campaigns",
    first: PAGE_SIZE,
    variables: () => ({ status: filter.value || null }),
    list,
    row: (node) => h("li", {}, campaignCard(node)),
    status,
    label: "Load more campaigns",
    loading: "Loading campaigns…",
    empty: () => (filter.value ? "No campaigns with this status." : "No campaigns yet. Start the first one!"),
    what: "campaigns",
    signal: ctx.signal,
    // After "Load more", the focus goes to the first new campaign.
    onPage: ({ rows, reset }) => {
      if (!reset && rows.length) rows[0].querySelector("a").focus();
    },
  });
  filter.addEventListener("change", () => load(true));
  await load(true);

  return h(
    "section",
    {},
    ctx.flash ? notice("info", ctx.flash) : null,
    h("div", { class: "page-head" },
      h("h1", { tabindex: "-1" }, "Campaigns"),
      h("a", { href: "#/start", class: "button" }, "Start a campaign")),
    h("p", { class: "lead" },
      "Help pay for someone's medical treatment. Every donation is counted once, ",
      "and totals update live."),
    h("p", { class: "filter" }, h("label", { for: "status-filter" }, "Show "), filter),
    status,
    list,
    more,
  );
}
