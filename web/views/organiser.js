// Organisers: start a campaign, list your own, pause, resume or close them.
import { api, currentUser } from "../session.js";
import { CAMPAIGN_STATUS, campaignBadge, h, minorDigits, money, notice, parseAmount } from "../dom.js";
import { pager } from "../pager.js";
import { campaignCard } from "./campaigns.js";
import { IMAGE_HINT, imageInput, uploadImage } from "./images.js";

const CAMPAIGN_FIELDS = `id title description category status goalCents currency acceptingPledges
  totals { raisedCents pledgeCount }`;
const CREATE = `mutation CreateCampaign($input: CampaignInput!) {
  createCampaign(input: $input) { id status }
}`;
const SET_STATUS = `mutation SetCampaignStatus($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status acceptingPledges }
}`;
const MINE = `query MyCampaigns($first: Int, $after: String) {
  myCampaigns(first: $first, after: $after) {
    edges { node { ${CAMPAIGN_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const MONTHLY = `query MonthlyGiving($id: ID!) {
  campaignMonthlyGiving(campaignId: $id) { donors monthlyAmountCents currency }
}`;

/** "3 monthly donors · $75.00 a month", filled in once asked; empty without any. */
function monthlyGiving(campaignId) {
  const line = h("p", { class: "meta", "data-testid": "monthly-giving" });
  api(MONTHLY, { id: campaignId }).then(({ campaignMonthlyGiving: m }) => {
    if (!m.donors) return;
    const donors = `${m.donors} monthly donor${m.donors === 1 ? "" : "s"}`;
    line.textContent = `${donors} · ${money(m.monthlyAmountCents, m.currency)} a month`;
  }).catch(() => {});
  return line;
}

const CURRENCIES = ["USD", "EUR", "GBP", "CAD", "AUD", "CHF", "INR", "JPY", "NZD", "SEK"];
const CATEGORIES = ["surgery", "cancer care", "emergency", "therapy", "medicine", "rehabilitation", "other"];

function needsAccount(ctx, title, what) {
  ctx.setTitle(title);
  const next = encodeURIComponent(ctx.path);
  return h("section", {},
    h("h1", { tabindex: "-1" }, title),
    h("p", {}, `You need an account to ${what}. `,
      h("a", { href: `#/signin?next=${next}` }, "Sign in"), " or ",
      h("a", { href: `#/register?next=${next}` }, "register"),
      ": it takes a minute, and donations made in this browser come along."));
}

/** Pause / resume / close buttons; `onChange(campaign)` gets the updated campaign. */
export function statusControls(campaign, onChange) {
  const box = h("div", { class: "status-controls" });
  const message = h("div", { class: "status-message" });

  async function setStatus(status) {
    for (const button of box.querySelectorAll("button")) button.disabled = true;
    try {
      const data = await api(SET_STATUS, { id: campaign.id, status });
      campaign = { ...campaign, ...data.setCampaignStatus };
      const words = { ACTIVE: "is active again and takes donations", PAUSED: "is paused: it takes no donations until you resume it", CLOSED: "is closed for good" };
      message.replaceChildren(notice("success", `The campaign ${words[status]}.`));
      onChange?.(campaign);
    } catch (error) {
      message.replaceChildren(notice("error", `Could not change the status: ${error.message}`));
    }
    draw();
    box.querySelector("button")?.focus();
  }

  function draw() {
    const buttons = [];
    const label = (verb) => ({ "aria-label": `${verb} “${campaign.title}”` });
    const admin = currentUser()?.role === "ADMIN";
    if (campaign.status === "ACTIVE") {
      buttons.push(h("button", { type: "button", class: "secondary", ...label("Pause"), onclick: () => setStatus("PAUSED") }, "Pause"));
    }
    if (campaign.status === "PAUSED" || (campaign.status === "SUSPENDED" && admin)) {
      buttons.push(h("button", { type: "button", class: "secondary", ...label("Resume"), onclick: () => setStatus("ACTIVE") }, "Resume"));
    }
    const why = {
      CLOSED: "This campaign is closed. Closed campaigns cannot be reopened.",
      REJECTED: "This campaign was not approved. Start a new one with what the reviewer asked for.",
      SUSPENDED: admin ? null : "An admin suspended this campaign; only an admin can resume it.",
    }[campaign.status];
    if (why) {
      buttons.push(h("p", { class: "muted" }, why));
    } else {
      const close = h("button", { type: "button", class: "danger", ...label("Close") }, "Close…");
      close.addEventListener("click", () => {
        const confirm = h("button", { type: "button", class: "danger", onclick: () => setStatus("CLOSED") }, "Close for good");
        const keep = h("button", { type: "button", class: "secondary", onclick: () => { draw(); } }, "Keep it open");
        box.replaceChildren(
          h("p", { role: "alert" }, "Closing is final: the campaign will never take donations again."),
          h("div", { class: "button-row" }, confirm, keep));
        confirm.focus();
      });
      buttons.push(close);
    }
    box.replaceChildren(
      h("p", {}, "Status: ", h("strong", { "data-testid": "campaign-status" }, CAMPAIGN_STATUS[campaign.status])),
      h("div", { class: "button-row" }, buttons),
      message);
  }
  draw();
  return box;
}

export async function startView(ctx) {
  const title = "Start a campaign";
  if (!currentUser()) return needsAccount(ctx, title, "start a campaign");
  ctx.setTitle(title);
  const field = (id, labelText, control, hint) => h("div", { class: "field" },
    h("label", { for: id }, labelText),
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    control);
  const titleInput = h("input", { id: "c-title", required: true, maxlength: 200, autocomplete: "off" });
  const category = h("input", { id: "c-category", required: true, maxlength: 50, list: "c-categories", "aria-describedby": "c-category-hint" });
  const goal = h("input", { id: "c-goal", required: true, inputmode: "decimal", autocomplete: "off", "aria-describedby": "c-goal-hint" });
  const currency = h("select", { id: "c-currency" }, CURRENCIES.map((c) => h("option", { value: c }, c)));
  const ends = h("input", { id: "c-ends", type: "date", "aria-describedby": "c-ends-hint" });
  const story = h("textarea", { id: "c-story", required: true, rows: 8, maxlength: 20000, "aria-describedby": "c-story-hint" });
  const photo = imageInput("c-image");
  const feedback = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, "Start the campaign");

  const form = h("form", { class: "stack", novalidate: true },
    field("c-title", "Title", titleInput),
    field("c-category", "Category", category, "For example surgery, cancer care or therapy."),
    h("datalist", { id: "c-categories" }, CATEGORIES.map((c) => h("option", { value: c }))),
    h("div", { class: "row" },
      field("c-goal", "Goal", goal, "How much you need, like 5000 or 5000.50."),
      field("c-currency", "Currency", currency)),
    field("c-ends", "Last day for donations (optional)", ends, "Leave empty to keep it open until you close it."),
    field("c-story", "The story", story, "Who is it for, what is the treatment, what will the money pay for? Blank lines start new paragraphs."),
    field("c-image", "Cover image (optional)", photo, IMAGE_HINT),
    feedback,
    submit);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problems = [];
    if (!titleInput.value.trim()) problems.push([titleInput, "Give the campaign a title."]);
    if (!category.value.trim()) problems.push([category, "Choose or type a category."]);
    const amount = parseAmount(goal.value, currency.value);
    if (!goal.value.trim()) problems.push([goal, "Say how much you need: the goal."]);
    else if (amount.error) problems.push([goal, `Goal: ${amount.error}`]);
    if (!story.value.trim()) problems.push([story, "Tell the story: donors want to know who they help."]);
    for (const control of [titleInput, category, goal, story]) control.removeAttribute("aria-invalid");
    if (problems.length) {
      for (const [control] of problems) control.setAttribute("aria-invalid", "true");
      feedback.replaceChildren(notice("error", h("ul", {}, problems.map(([, text]) => h("li", {}, text)))));
      problems[0][0].focus();
      return;
    }
    let endsAt = null;
    if (ends.value) {
      const [y, m, d] = ends.value.split("-").map(Number);
      endsAt = new Date(y, m - 1, d, 23, 59, 59).toISOString(); // the end of that day, here
    }
    submit.disabled = true;
    feedback.replaceChildren();
    try {
      const data = await api(CREATE, { input: {
        title: titleInput.value.trim(),
        category: category.value.trim(),
        goalCents: amount.minor,
        currency: currency.value,
        description: story.value.trim(),
        endsAt,
      } });
      const made = data.createCampaign;
      let imageProblem = "";
      if (photo.files[0]) {
        try {
          await uploadImage(made.id, photo.files[0]);
        } catch (error) {
          imageProblem = ` The image was not added (${error.message}); add another from "Manage your campaign".`;
        }
      }
      ctx.navigate(`/campaigns/${encodeURIComponent(made.id)}`, (made.status === "IN_REVIEW"
        ? "Your campaign is waiting for review. An admin checks every new campaign before it is published; you will be told when it is live."
        : "Your campaign is live. Share this page's address with the people who can help.") + imageProblem);
    } catch (error) {
      if (error.name === "AbortError") return;
      feedback.replaceChildren(notice("error", `Could not start the campaign: ${error.message}`));
      submit.disabled = false;
    }
  });
  // Keep the goal's hint true to the chosen currency.
  currency.addEventListener("change", () => {
    const hint = document.getElementById("c-goal-hint");
    if (hint) hint.textContent = minorDigits(currency.value) ? "How much you need, like 5000 or 5000.50." : "How much you need, in whole units, like 500000.";
  });

  return h("section", { class: "narrow" },
    h("h1", { tabindex: "-1" }, title),
    h("p", { class: "lead" }, "Raise money for someone's medical care. Your campaign takes donations once it is published (an admin may review it first); you can pause or close it at any time from My campaigns."),
    form);
}

/** One of my campaigns: its card with the status controls, its badge kept true. */
function mineRow(campaign) {
  const card = campaignCard(campaign);
  card.append(monthlyGiving(campaign.id));
  card.append(statusControls(campaign, (updated) => {
    card.querySelector(".badge-campaign")?.replaceWith(campaignBadge(updated));
  }));
  return h("li", {}, card);
}

export async function mineView(ctx) {
  const title = "My campaigns";
  if (!currentUser()) return needsAccount(ctx, title, "see your campaigns");
  ctx.setTitle(title);
  const list = h("ul", { class: "cards", "aria-label": "My campaigns" });
  const status = h("div", { role: "status" });
  const { more, load } = pager({
    query: MINE,
    field: "myCampaigns",
    list,
    row: mineRow,
    status,
    label: "Load more",
    empty: () => h("p", {}, "You have not started a campaign yet. ", h("a", { href: "#/start" }, "Start one"), "."),
    what: "your campaigns",
    signal: ctx.signal,
  });
  await load();
  return h("section", {},
    ctx.flash ? notice("info", ctx.flash) : null,
    h("div", { class: "page-head" },
      h("h1", { tabindex: "-1" }, title),
      h("a", { href: "#/start", class: "button" }, "Start a campaign")),
    h("p", { class: "lead" }, "Pause a campaign to stop donations for a while; close it when it is done."),
    status, list, more);
}
