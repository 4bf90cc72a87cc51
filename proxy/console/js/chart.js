// What both charts share: linear scales with round ticks, the <svg role="img"> frame with its
// accessible name and description, and the legend. Colours and strokes come from console.css
// classes (series-0, series-1, ...), so light and dark mode each get readable ones.

import { h, s, uid } from "./dom.js";

export const SERIES = 6; // console.css defines this many series colours; then they repeat

export function seriesClass(index) {
  return `series-${index % SERIES}`;
}

/** A linear map from [d0, d1] to [r0, r1]. */
export function scale([d0, d1], [r0, r1]) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (x) => (d1 === d0 ? (r0 + r1) / 2 : r0 + (x - d0) * k);
}

/** Round tick values covering [lo, hi] (about `count` of them) and the domain they span. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.5 : 0.01;
    return ticks(lo - pad, hi + pad, count);
  }
  const raw = (hi - lo) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((st) => st >= raw);
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const values = [];
  for (let v = start; v <= end + step / 2; v += step) values.push(Math.abs(v) < step / 1e6 ? 0 : v);
  return { values, domain: [start, end], step };
}

/** Decimals that tell ticks `step` apart once multiplied by `unit` (100 for percentages). */
export function tickDecimals(step, unit = 1) {
  return Math.max(0, -Math.floor(Math.log10(step * unit) + 1e-9));
}

/** The chart's <svg>: a title and description (its accessible name and text), sized in pixels. */
export function frame({ width, height, title, description, className }) {
  const titleId = uid("chart-title");
  const descId = uid("chart-desc");
  return s(
    "svg",
    {
      class: `chart-svg ${className}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
    },
    s("title", { id: titleId }, title),
    s("desc", { id: descId }, description),
  );
}

/** A legend under a chart: [{label, className, kind: "dot" | "line" | "dash"}]. */
export function legend(label, items) {
  return h(
    "ul",
    { class: "legend", "aria-label": label },
    items.map((item) =>
      h(
        "li",
        {},
        h("span", {
          class: `swatch swatch-${item.kind || "dot"} ${item.className}`,
          "aria-hidden": "true",
        }),
        item.label,
      ),
    ),
  );
}

/** The width a chart can take inside `host` (a sensible one while it is not laid out yet). */
export function widthOf(host) {
  const w = Math.floor(host.getBoundingClientRect().width);
  return w > 0 ? Math.max(260, w) : 640;
}
