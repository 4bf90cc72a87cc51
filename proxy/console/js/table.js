// Data tables: real <table>s with column headers, the first cell of a row as its header, and a
// data-label on every cell so that a phone can show each row as a card (see console.css). The
// explicit table roles keep screen readers reading a table once CSS makes its rows blocks.

import { h } from "./dom.js";

/**
 * columns: [{label, cell: (row) => Node|string, numeric?: boolean}]; the first is the row header.
 * A caption that repeats the heading above it is kept for screen readers only (quiet: true).
 */
export function table({ caption, columns, rows, className = "", quiet = false }) {
  return h(
    "table",
    { class: `data ${className}`.trim(), role: "table" },
    caption ? h("caption", { class: quiet ? "visually-hidden" : null }, caption) : null,
    h(
      "thead",
      { role: "rowgroup" },
      h(
        "tr",
        { role: "row" },
        columns.map((c) =>
          h(
            "th",
            { scope: "col", role: "columnheader", class: c.numeric ? "num" : null },
            // A non-breaking hyphen: a narrow header breaks "Adjusted / p-value", not "p- / value".
            c.label.replaceAll("-", "\u2011"),
          ),
        ),
      ),
    ),
    h(
      "tbody",
      { role: "rowgroup" },
      rows.map((row) =>
        h(
          "tr",
          { role: "row" },
          columns.map((c, i) =>
            h(
              i === 0 ? "th" : "td",
              {
                scope: i === 0 ? "row" : null,
                role: i === 0 ? "rowheader" : "cell",
                class: c.numeric ? "num" : null,
                "data-label": c.label,
              },
              c.cell(row),
            ),
          ),
        ),
      ),
    ),
  );
}

/** A wrapper that scrolls a wide table sideways, reachable by keyboard. */
export function scroller(label, ...children) {
  return h(
    "div",
    { class: "scroller", role: "region", "aria-label": label, tabindex: "0" },
    children,
  );
}

/** Environment tabs as links (each environment is its own address). */
export function environmentTabs(environments, current, hrefOf) {
  return h(
    "nav",
    { class: "tabs", "aria-label": "Environments" },
    h(
      "ul",
      {},
      environments.map((env) =>
        h(
          "li",
          {},
          h("a", { href: hrefOf(env), "aria-current": env === current ? "page" : null }, env),
        ),
      ),
    ),
  );
}
