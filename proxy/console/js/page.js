// The chrome around every view: the alert (the API's errors in its own words), the quiet status
// line, the breadcrumb and the document title.

import { fill, h } from "./dom.js";

const alertBox = () => document.getElementById("alert");
const statusLine = () => document.getElementById("status");

/** Show an error: an ApiError's message and its details, or any text. null clears it. */
export function showError(error) {
  const box = alertBox();
  if (!error) {
    fill(box);
    return;
  }
  const message = typeof error === "string" ? error : error.message;
  const details = error && typeof error === "object" && error.details ? error.details : null;
  fill(
    box,
    h("p", { class: "alert-message" }, message),
    details
      ? h(
          "ul",
          { class: "alert-details" },
          Object.entries(details).map(([field, what]) =>
            h("li", {}, h("code", {}, field), ": ", String(what)),
          ),
        )
      : null,
  );
}

export function showStatus(text) {
  statusLine().textContent = text || "";
}

/** The breadcrumb: [{label, href}], the last being the current page. */
export function setCrumbs(items) {
  const nav = document.getElementById("crumbs");
  if (!items.length) {
    fill(nav);
    return;
  }
  fill(
    nav,
    h(
      "ol",
      {},
      items.map((item, i) =>
        h(
          "li",
          {},
          i === items.length - 1
            ? h("span", { "aria-current": "page" }, item.label)
            : h("a", { href: item.href }, item.label),
        ),
      ),
    ),
  );
}

export function setTitle(text) {
  document.title = text ? `${text} · Edge console` : "Edge console";
}
