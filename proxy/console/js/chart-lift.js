// The lift chart: each variant's absolute lift over the control (a dot) with its fixed-horizon
// interval (a thick bar) and, when the API sends one, its sequential (always-valid) interval (a
// thin, longer bar). Every position is an API figure; only the axis is chosen here.

import { fill, h, s } from "./dom.js";
import { isNumber, level, points, pointsInterval } from "./format.js";
import { frame, legend, scale, seriesClass, tickDecimals, ticks, widthOf } from "./chart.js";

const ROW = 44;
const TOP = 14;
const BOTTOM = 52;
const RIGHT = 18;
const MINUS = "\u2212";

function ci(pair) {
  return Array.isArray(pair) && isNumber(pair[0]) && isNumber(pair[1]) ? pair : null;
}

/** Draw into `host` (a <figure>'s chart slot). results: the API's `results`. */
export function drawLift(host, results, alpha) {
  const rows = results.variants
    .map((v, index) => ({ v, index }))
    .filter(({ v }) => v.key !== results.control);
  const width = widthOf(host);
  const longest = Math.max(...rows.map(({ v }) => v.key.length), 4);
  const left = Math.min(Math.max(64, longest * 7.5 + 18), width * 0.4);
  const height = TOP + Math.max(1, rows.length) * ROW + BOTTOM;

  const values = [0];
  for (const { v } of rows) {
    if (isNumber(v.absolute_lift)) values.push(v.absolute_lift);
    for (const pair of [ci(v.absolute_lift_ci), ci(v.sequential?.absolute_lift_ci)]) {
      if (pair) values.push(...pair);
    }
  }
  const axis = ticks(Math.min(...values), Math.max(...values), width < 420 ? 4 : 6);
  const x = scale(axis.domain, [left, width - RIGHT]);
  const plotBottom = TOP + Math.max(1, rows.length) * ROW;
  const decimals = tickDecimals(axis.step, 100);
  const hasSequential = rows.some(({ v }) => ci(v.sequential?.absolute_lift_ci));
  const lvl = level(alpha);

  const description = rows
    .map(({ v }) => {
      const seq = ci(v.sequential?.absolute_lift_ci);
      return (
        `${v.key}: ${points(v.absolute_lift)}, interval ${pointsInterval(v.absolute_lift_ci)}` +
        (seq ? `, sequential interval ${pointsInterval(seq)}` : "")
      );
    })
    .join("; ");
  const svg = frame({
    width,
    height,
    className: "lift-chart",
    title: `Absolute lift over ${results.control}, with ${lvl} intervals`,
    description: description || "No variant to compare with the control.",
  });

  const grid = s("g", { class: "axis" });
  for (const t of axis.values) {
    const tx = x(t);
    const label = t === 0 ? "0" : `${t < 0 ? MINUS : "+"}${Math.abs(t * 100).toFixed(decimals)}`;
    grid.append(
      s("line", { class: t === 0 ? "zero" : "grid", x1: tx, x2: tx, y1: TOP - 6, y2: plotBottom }),
      s("text", { class: "tick", x: tx, y: plotBottom + 18, "text-anchor": "middle" }, label),
    );
  }
  grid.append(
    s(
      "text",
      {
        class: "axis-label",
        x: (left + width - RIGHT) / 2,
        y: height - 10,
        "text-anchor": "middle",
      },
      `Absolute lift over ${results.control} (percentage points)`,
    ),
  );
  svg.append(grid);

  rows.forEach(({ v, index }, i) => {
    const cy = TOP + i * ROW + ROW / 2;
    const g = s("g", { class: `row ${seriesClass(index)}`, "data-variant": v.key });
    g.append(s("text", { class: "label", x: left - 10, y: cy + 4, "text-anchor": "end" }, v.key));
    const seq = ci(v.sequential?.absolute_lift_ci);
    if (seq) g.append(bar("ci-seq", x(seq[0]), x(seq[1]), cy, 9));
    const fixed = ci(v.absolute_lift_ci);
    if (fixed) g.append(bar("ci-fixed", x(fixed[0]), x(fixed[1]), cy, 5));
    if (isNumber(v.absolute_lift)) {
      g.append(
        s(
          "circle",
          { class: "mark", cx: x(v.absolute_lift), cy, r: 5.5, "data-value": v.absolute_lift },
          s(
            "title",
            {},
            `${v.key}: ${points(v.absolute_lift)} ${pointsInterval(v.absolute_lift_ci)}`,
          ),
        ),
      );
    } else {
      g.append(s("text", { class: "note", x: x(0) + 8, y: cy + 4 }, "not enough data yet"));
    }
    svg.append(g);
  });

  const items = [
    { label: `Lift (dot) with its fixed-horizon ${lvl} interval`, className: "ink", kind: "line" },
  ];
  if (hasSequential) {
    items.push({
      label: `Sequential ${lvl} interval (valid at any peek)`,
      className: "ink",
      kind: "dash",
    });
  }
  items.push({ label: `0: no difference from ${results.control}`, className: "ink", kind: "zero" });
  fill(host, svg, legend("Lift chart legend", items));
}

function bar(className, x1, x2, cy, cap) {
  return s(
    "g",
    { class: className },
    s("line", { x1, x2, y1: cy, y2: cy }),
    s("line", { x1, x2: x1, y1: cy - cap, y2: cy + cap }),
    s("line", { x1: x2, x2, y1: cy - cap, y2: cy + cap }),
  );
}

/** The <figure> the experiment page places; drawLift fills its slot. */
export function liftFigure() {
  const slot = h("div", { class: "chart-slot" });
  const figure = h(
    "figure",
    { class: "chart", "data-chart": "lift" },
    h("figcaption", {}, "Lift over the control"),
    slot,
  );
  return { figure, slot };
}
