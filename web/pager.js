// "Load more": a list filled a page at a time from a GraphQL connection (its
// edges and pageInfo), with a button that fetches the next page. Each view says
// what differs: the query, how a row looks, the button's label, what an empty
// list says.
import { api } from "./session.js";
import { h, notice } from "./dom.js";

/**
 * A paged list. `query` takes $first and $after (and any `variables()`, read at
 * each load, like a filter's value); `field` names the connection in its data.
 * `row(node)` makes one row for `list`. `status` is written by the pager alone:
 * `loading` text while a page loads (if given), `empty()` when the list has no
 * rows, nothing once it has some, or why a load failed ("Could not load
 * `what`: …"). `onPage({ data, rows, reset })` runs after each page is shown.
 * Returns the button (`more`) to place, and `load(reset)`: the next page, or
 * with `reset` the first one again. A reset drops the answer of a load still
 * on its way, so the list shows only what the newest load asked for.
 */
export function pager({
  query, field, first = 20, variables = () => ({}),
  list, row, status, label, empty, what, loading = null, signal, onPage = () => {},
}) {
  const more = h("button", { type: "button", class: "secondary", hidden: true }, label);
  let after = null;
  let latest = 0;

  async function load(reset = false) {
    const mine = ++latest;
    if (reset) {
      after = null;
      list.replaceChildren();
    }
    more.disabled = true;
    if (loading) status.replaceChildren(loading);
    try {
      const data = await api(query, { first, after, ...variables() }, { signal });
      if (mine !== latest) return;
      const { edges, pageInfo } = data[field];
      const rows = edges.map(({ node }) => row(node));
      list.append(...rows);
      after = pageInfo.endCursor;
      more.hidden = !pageInfo.hasNextPage;
      status.replaceChildren(...(list.children.length ? [] : [empty()]));
      onPage({ data, rows, reset });
    } catch (error) {
      if (mine !== latest || error.name === "AbortError" || signal.aborted) return;
      status.replaceChildren(notice("error", `Could not load ${what}: ${error.message}`));
    } finally {
      if (mine === latest) more.disabled = false;
    }
  }

  more.addEventListener("click", () => load());
  return { more, load };
}
