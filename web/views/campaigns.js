// The campaign list: newest first, paged with a cursor ("Load more").
import { api } from "../session.js";
import { campaignBadge, h, money, notice, percent, progress } from "../dom.js";

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
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more campaigns");
  const filter = h(
    "select",
    { id: "status-filter" },
    h("option", { value: "" }, "All campaigns"),
    h("option", { value: "ACTIVE" }, "Active (taking donations)"),
    h("option", { value: "PAUSED" }, "Paused"),
    h("option", { value: "CLOSED" }, "Closed"),
  );
  let after = null;
  let loading = false;

  async function load(reset) {
    if (loading) return;
    loading = true;
    more.disabled = true;
    if (reset) {
      after = null;
      list.replaceChildren();
    }
    status.textContent = "Loading campaigns…";
    try {
      const data = await api(
        CAMPAIGNS,
        { first: PAGE_SIZE, after, status: filter.value || null },
        { signal: ctx.signal },
      );
      const { edges, pageInfo } = data.campaigns;
      const items = edges.map(({ node }) => h("li", {}, campaignCard(node)));
      list.append(...items);
      after = pageInfo.endCursor;
      more.hidden = !pageInfo.hasNextPage;
      status.textContent = list.children.length
        ? ""
        : filter.value
          ? "No campaigns with this status."
          : "No campaigns yet. Start the first one!";
      if (!reset && items.length) items[0].querySelector("a").focus();
    } catch (error) {
      if (error.name === "AbortError") return;
      status.replaceChildren(notice("error", `Could not load campaigns: ${error.message}`));
    } finally {
      loading = false;
      more.disabled = false;
    }
  }

  more.addEventListener("click", () => load(false));
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
