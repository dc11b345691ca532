// One campaign: its story, live totals (campaignTotals subscription), recent
// donations, the donate form, and the organiser's controls.
import { subscribe } from "../graphql.js";
import { api, currentUser } from "../session.js";
import {
  CAMPAIGN_STATUS, ago, campaignBadge, date, h, money, notice, percent, progress,
} from "../dom.js";
import { donateForm } from "./donate.js";
import { finishCardSetup } from "./recurring.js";
import { IMAGE_FIELDS, coverImage, imageForm, shareButtons } from "./images.js";
import { statusControls } from "./organiser.js";
import {
  TRUST_FIELDS, editForm, editHistory, moneyPanel, payoutForm, reportForm, reviewNotice, suspendForm,
  updatesSection,
} from "./trust.js";

const RECENT_FIELDS = `recentDonations(first: 10) { donorName amountCents currency message createdAt }`;
const CAMPAIGN = `query Campaign($id: ID!) {
  campaign(id: $id) {
    id title description category goalCents currency status endsAt createdAt
    acceptingPledges owner { id name }
    totals { raisedCents pledgeCount updatedAt }
    ${RECENT_FIELDS}
    ${TRUST_FIELDS}
    ${IMAGE_FIELDS}
  }
}`;
const RECENT = `query Recent($id: ID!) { campaign(id: $id) { ${RECENT_FIELDS} } }`;
const TOTALS = `subscription Totals($id: ID!) {
  campaignTotals(campaignId: $id) { raisedCents pledgeCount updatedAt }
}`;

function story(text) {
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  return paragraphs.map((p) => h("p", {}, p));
}

function recentItem(d) {
  return h(
    "li",
    {},
    h("p", {},
      h("strong", {}, d.donorName || "Anonymous"),
      ` gave ${money(d.amountCents, d.currency)} `,
      h("time", { datetime: d.createdAt, class: "muted" }, ago(d.createdAt))),
    d.message ? h("blockquote", {}, d.message) : null,
  );
}

export async function campaignView(ctx) {
  const [id] = ctx.params;
  const data = await api(CAMPAIGN, { id }, { signal: ctx.signal });
  const campaign = data.campaign;
  if (!campaign) {
    ctx.setTitle("Campaign not found");
    return h("section", {},
      h("h1", { tabindex: "-1" }, "Campaign not found"),
      h("p", {}, "There is no campaign at this address. ", h("a", { href: "#/" }, "See all campaigns"), "."));
  }
  ctx.setTitle(campaign.title);
  const { currency, goalCents } = campaign;

  // --- totals, kept live ---------------------------------------------------
  const raised = h("strong", { class: "raised", "data-testid": "raised" });
  const goalText = h("span", {});
  const count = h("span", { "data-testid": "pledge-count" });
  const barSlot = h("div", { class: "bar-slot" });
  const live = h("span", { class: "live", "data-testid": "live-status" }, "Connecting…");
  let shown = null;

  function showTotals(totals) {
    shown = totals;
    raised.textContent = money(totals.raisedCents, currency);
    goalText.textContent = ` raised of ${money(goalCents, currency)} goal (${percent(totals.raisedCents, goalCents)}%)`;
    count.textContent = `${totals.pledgeCount} ${totals.pledgeCount === 1 ? "donation" : "donations"}`;
    barSlot.replaceChildren(progress(totals.raisedCents, goalCents, currency));
  }
  showTotals(campaign.totals);
  const moneySection = moneyPanel(campaign); // where the money went

  // --- recent donations ----------------------------------------------------
  const recentList = h("ul", { class: "recent", "aria-live": "polite" });
  function showRecent(items) {
    recentList.replaceChildren(
      ...(items.length
        ? items.map(recentItem)
        : [h("li", { class: "muted" }, campaign.acceptingPledges ? "No donations yet. Be the first!" : "No donations yet.")]),
    );
  }
  showRecent(campaign.recentDonations);
  let refreshing = null;
  function refreshRecent() {
    refreshing ??= api(RECENT, { id }, { signal: ctx.signal })
      .then((d) => d.campaign && showRecent(d.campaign.recentDonations))
      .catch(() => {}) // the list is a nicety; the totals above are the truth
      .finally(() => { refreshing = null; });
  }

  const unsubscribe = subscribe(TOTALS, { id }, {
    onData: ({ campaignTotals }) => {
      const changed = !shown
        || shown.raisedCents !== campaignTotals.raisedCents
        || shown.pledgeCount !== campaignTotals.pledgeCount;
      showTotals(campaignTotals);
      if (changed) {
        refreshRecent();
        moneySection.refresh().catch(() => {}); // raised and held move with the totals
      }
    },
    onStatus: (state) => {
      live.textContent = state === "live" ? "Live: updates as donations arrive" : "Reconnecting…";
    },
    onError: (error) => {
      live.textContent = `Live updates unavailable: ${error.message}`;
    },
  });
  ctx.onCleanup(unsubscribe);

  // --- the review's word ----------------------------------------------------
  const reviewSlot = h("div", {}, reviewNotice(campaign));

  // --- organiser -----------------------------------------------------------
  const user = currentUser();
  const owns = Boolean(user && user.id === campaign.owner.id);
  const isAdmin = Boolean(user && user.role === "ADMIN");
  const manages = owns || isAdmin;
  const statusBadge = h("span", {}, campaignBadge(campaign));
  const heading = h("h1", { tabindex: "-1" }, campaign.title);
  const storySlot = h("div", {}, story(campaign.description));
  const coverSlot = h("div", { class: "cover-slot" }, coverImage(campaign));
  const donateSlot = h("div", {});
  const jump = h("a", { href: "#donate", class: "jump", onclick: jumpToDonate }, "Donate now");

  function showDonate(current) {
    jump.hidden = !current.acceptingPledges;
    if (current.acceptingPledges) {
      donateSlot.replaceChildren(donateForm(campaign));
    } else {
      const why = current.status === "ACTIVE" ? "it has ended" : `it is ${(CAMPAIGN_STATUS[current.status] || current.status).toLowerCase()}`;
      donateSlot.replaceChildren(
        h("h2", {}, "Donate"),
        notice("info", `This campaign is not taking donations now: ${why}.`),
      );
    }
  }
  showDonate(campaign);
  // Back from Stripe's page where a monthly donor saved their card.
  const cardSetupSlot = h("div", { role: "status" });
  finishCardSetup(ctx.query).then((done) => done && cardSetupSlot.replaceChildren(done));

  const flash = ctx.flash ? notice("info", ctx.flash) : null;
  const statusSlot = h("div", {});
  function statusChanged(updated) {
    Object.assign(campaign, updated);
    flash?.remove(); // "your campaign is live" may no longer be true
    statusBadge.replaceChildren(campaignBadge(campaign));
    reviewSlot.replaceChildren(reviewNotice(campaign) || "");
    showDonate(campaign);
    drawStatus();
  }
  function drawStatus() {
    statusSlot.replaceChildren(statusControls(campaign, statusChanged));
  }
  drawStatus();
  const isLive = (c) => c.status === "ACTIVE" || c.status === "PAUSED";
  const manage = manages
    ? h("section", { class: "panel manage", "aria-labelledby": "manage-heading" },
        h("h2", { id: "manage-heading" }, owns ? "Manage your campaign" : "Manage this campaign"),
        statusSlot,
        campaign.status !== "CLOSED"
          ? editForm(campaign, (saved) => {
              heading.textContent = saved.title;
              ctx.setTitle(saved.title);
              storySlot.replaceChildren(...story(saved.description));
            })
          : null,
        campaign.status !== "CLOSED"
          ? imageForm(campaign, () => coverSlot.replaceChildren(coverImage(campaign)))
          : null,
        isAdmin ? editHistory(campaign) : null,
        isAdmin ? payoutForm(campaign, () => moneySection.refresh()) : null,
        isAdmin && isLive(campaign) ? suspendForm(campaign, statusChanged) : null)
    : null;

  return h(
    "article",
    { class: "campaign" },
    flash,
    h("header", { class: "campaign-head" },
      reviewSlot,
      heading,
      h("p", { class: "badges" },
        h("span", { class: "badge badge-category" }, campaign.category),
        statusBadge),
      h("p", { class: "muted" },
        `Organised by ${campaign.owner.name} · started ${date(campaign.createdAt)}`,
        campaign.endsAt ? ` · ends ${date(campaign.endsAt)}` : ""),
      coverSlot,
      isPublic(campaign) ? shareButtons(campaign) : null),
    h("div", { class: "campaign-side" },
      h("section", { class: "panel totals", "aria-labelledby": "totals-heading" },
        h("h2", { id: "totals-heading", class: "visually-hidden" }, "Money raised"),
        h("p", { class: "big", "aria-live": "polite", "aria-atomic": "true" }, raised, goalText),
        barSlot,
        h("p", { class: "meta" }, count, " · ", live),
        jump),
      manage,
      h("section", { class: "panel donate", id: "donate", "aria-label": "Donate" }, cardSetupSlot, donateSlot),
      moneySection),
    h("div", { class: "campaign-main" },
      h("section", { class: "story", "aria-labelledby": "story-heading" },
        h("h2", { id: "story-heading" }, "The story"),
        storySlot),
      updatesSection(campaign, { canPost: owns }),
      h("section", { class: "recent-donations", "aria-labelledby": "recent-heading" },
        h("h2", { id: "recent-heading" }, "Recent donations"),
        recentList),
      owns ? null : reportForm(campaign)),
  );
}

// A campaign waiting for review, or rejected, has no link worth sharing yet.
function isPublic(campaign) {
  return campaign.status !== "IN_REVIEW" && campaign.status !== "REJECTED";
}

function jumpToDonate(event) {
  event.preventDefault(); // "#donate" is not a route
  const target = document.querySelector("#donate input, #donate");
  document.getElementById("donate").scrollIntoView({ behavior: "smooth", block: "start" });
  target?.focus({ preventScroll: true });
}
