// The campaign list, read from the same GraphQL API that every client uses.
"use strict";

const QUERY = `query Campaigns($first: Int) {
  campaigns(first: $first) {
    edges { node { id title category status goalCents currency
      totals { raisedCents pledgeCount } } }
  }
}`;

function money(cents, currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}

function render(campaigns) {
  const list = document.getElementById("campaigns");
  list.replaceChildren();
  for (const { node } of campaigns) {
    const share = Math.min(100, (100 * node.totals.raisedCents) / node.goalCents);
    const item = document.createElement("li");
    const title = document.createElement("h3");
    title.textContent = node.title;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(Math.round(share)));
    const fill = document.createElement("span");
    fill.style.width = `${share}%`;
    bar.append(fill);
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = `${money(node.totals.raisedCents, node.currency)} raised of ` +
      `${money(node.goalCents, node.currency)} · ${node.totals.pledgeCount} donations · ` +
      `${node.category} · ${node.status.toLowerCase()}`;
    item.append(title, bar, meta);
    list.append(item);
  }
}

async function load() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: QUERY, variables: { first: 20 } }),
    });
    const body = await response.json();
    if (body.errors) throw new Error(body.errors[0].message);
    const edges = body.data.campaigns.edges;
    render(edges);
    status.textContent = edges.length ? "" : "No campaigns yet.";
  } catch (error) {
    status.textContent = `Could not load campaigns: ${error.message}`;
  }
}

load();
