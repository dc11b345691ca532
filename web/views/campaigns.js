// The campaign list: search, category chips and sorts, paged with a cursor
// ("Load more"). What is asked lives in the hash route (#/?q=knee&category=…
// &sort=…) so a link opens the same list.
import { campaignBadge, h, money, notice, percent, progress } from "../dom.js";
import { api } from "../session.js";
import { pager } from "../pager.js";

const PAGE_SIZE = 12;
const SEARCH_DELAY_MS = 300; // typing pauses this long before the list reloads
const SORTS = [
  ["NEWEST", "Newest"],
  ["MOST_RAISED", "Most raised"],
  ["CLOSEST_TO_GOAL", "Closest to goal"],
  ["TRENDING", "Trending (48 hours)"],
];
const CATEGORIES = "query Categories { categories }";
const CAMPAIGNS = `query Campaigns($first: Int, $after: String, $status: CampaignStatus,
    $search: String, $category: String, $sort: CampaignSort) {
  campaigns(first: $first, after: $after, status: $status, search: $search,
      category: $category, sort: $sort) {
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

/** The hash route of the list as asked (empty values left out). */
function listRoute({ q, category, sort }) {
  const params = new URLSearchParams();
  if (q) params.set("q", q);
  if (category) params.set("category", category);
  if (sort && sort !== "NEWEST") params.set("sort", sort);
  const text = params.toString();
  return text ? `#/?${text}` : "#/";
}

function chip(label, value, pressed) {
  return h(
    "button",
    { type: "button", class: "chip", "data-category": value, "aria-pressed": String(pressed) },
    label,
  );
}

export async function campaignsView(ctx) {
  ctx.setTitle("Campaigns");
  const asked = {
    q: ctx.query.get("q") || "",
    category: ctx.query.get("category") || "",
    sort: SORTS.some(([v]) => v === ctx.query.get("sort")) ? ctx.query.get("sort") : "NEWEST",
  };
  const list = h("ul", { class: "cards", "aria-label": "Campaigns" });
  const status = h("p", { role: "status", class: "list-status" });
  const search = h("input", {
    type: "search",
    id: "campaign-search",
    value: asked.q,
    placeholder: "Search by word, e.g. knee or dialysis",
    autocomplete: "off",
    maxlength: "200",
  });
  const sort = h(
    "select",
    { id: "campaign-sort" },
    ...SORTS.map(([value, label]) => h("option", { value, selected: value === asked.sort }, label)),
  );
  const filter = h(
    "select",
    { id: "status-filter" },
    h("option", { value: "" }, "All campaigns"),
    h("option", { value: "ACTIVE" }, "Active (taking donations)"),
    h("option", { value: "PAUSED" }, "Paused"),
    h("option", { value: "CLOSED" }, "Closed"),
  );
  const chips = h("div", { class: "chips", role: "group", "aria-label": "Categories" });

  // With words to match, the default order is the best match first.
  function nameDefaultSort() {
    sort.options[0].textContent = search.value.trim() ? "Best match" : "Newest";
  }
  function showChips(categories) {
    const all = chip("All", "", !asked.category);
    const shown = categories.includes(asked.category) || !asked.category
      ? categories
      : [asked.category, ...categories];
    chips.replaceChildren(all, ...shown.map((c) => chip(c, c, c === asked.category)));
  }

  const { more, load } = pager({
    query: CAMPAIGNS,
    field: "campaigns",
    first: PAGE_SIZE,
    variables: () => ({
      status: filter.value || null,
      search: asked.q || null,
      category: asked.category || null,
      sort: asked.sort,
    }),
    list,
    row: (node) => h("li", {}, campaignCard(node)),
    status,
    label: "Load more campaigns",
    loading: "Loading campaigns…",
    empty: () => {
      if (asked.q) return `No campaigns match “${asked.q}”${asked.category ? ` in ${asked.category}` : ""}.`;
      if (asked.category) return `No campaigns in ${asked.category}.`;
      return filter.value ? "No campaigns with this status." : "No campaigns yet. Start the first one!";
    },
    what: "campaigns",
    signal: ctx.signal,
    // After "Load more", the focus goes to the first new campaign.
    onPage: ({ rows, reset }) => {
      if (!reset && rows.length) rows[0].querySelector("a").focus();
    },
  });

  // The route follows what is asked without rendering the page again (the
  // search box keeps its focus); a link or a reload opens the same list.
  function reload() {
    history.replaceState(null, "", listRoute(asked));
    load(true);
  }
  let timer = null;
  search.addEventListener("input", () => {
    nameDefaultSort();
    clearTimeout(timer);
    timer = setTimeout(() => {
      asked.q = search.value.trim();
      reload();
    }, SEARCH_DELAY_MS);
  });
  ctx.onCleanup(() => clearTimeout(timer));
  sort.addEventListener("change", () => {
    asked.sort = sort.value;
    reload();
  });
  chips.addEventListener("click", (event) => {
    const button = event.target.closest("button.chip");
    if (!button) return;
    asked.category = button.dataset.category;
    for (const other of chips.children) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    reload();
  });
  filter.addEventListener("change", () => load(true));
  nameDefaultSort();
  showChips([]);
  const categories = api(CATEGORIES, {}, { signal: ctx.signal })
    .then((data) => showChips(data.categories))
    .catch(() => {}); // the chips are a shortcut: the list works without them
  await Promise.all([load(true), categories]);

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
    h("form", { class: "discover", role: "search", onsubmit: (e) => e.preventDefault() },
      h("label", { for: "campaign-search" }, "Search campaigns"),
      search),
    chips,
    h("p", { class: "filter" },
      h("label", { for: "campaign-sort" }, "Sort by "), sort,
      h("label", { for: "status-filter" }, " Show "), filter),
    status,
    list,
    more,
  );
}
