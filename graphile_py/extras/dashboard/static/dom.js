// graphile-py dashboard: building the page. Everything the server sends goes in with
// textContent (el() appends strings as text), never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// One row spanning the table that says why there are no rows: empty, loading, or failed.
function notice(tbody, kind, text) {
  const columns = tbody.parentElement.tHead.rows[0].cells.length;
  tbody.replaceChildren(el("tr", { className: kind }, el("td", { colspan: columns }, text)));
}

export function fill(tbody, rows, emptyText) {
  if (rows.length === 0) notice(tbody, "empty", emptyText);
  else tbody.replaceChildren(...rows);
}

export function showLoading(tbody) {
  notice(tbody, "loading", "Loading…");
}

export function showFailed(tbody, message) {
  notice(tbody, "failed", "Could not load: " + message);
}

export function showBanner(message, kind = "error") {
  const banner = $("banner");
  banner.textContent = message;
  banner.className = "banner banner-" + kind;
  banner.hidden = false;
  if (kind !== "error") setTimeout(() => { banner.hidden = true; }, 4000);
}

export function hideErrorBanner() {
  if ($("banner").classList.contains("banner-error")) $("banner").hidden = true;
}
