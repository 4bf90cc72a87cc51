// The rate chart: each variant's cumulative conversion rate at the end of each day of the
// series (GET .../series). Without a series (a proxy that does not serve it yet), one point per
// variant: the current results. Every point is an API figure; only the axes are chosen here.

import { fill, h, s } from "./dom.js";
import { count, day, isNumber, rate } from "./format.js";
import { frame, legend, scale, seriesClass, tickDecimals, ticks, widthOf } from "./chart.js";

const TOP = 16;
const BOTTOM = 52;
const LEFT = 54;
const RIGHT = 22;
const HEIGHT = 260;
const DAY_MS = 86400000;

function dayNumber(date) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date || "");
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3]) / DAY_MS : NaN;
}

/**
 * days: [{date, variants: [{key, exposures, conversions, conversion_rate}]}] oldest first; a
 * single entry with date null for the current results. order: the variant keys, control first.
 */
export function drawRate(host, days, order) {
  const width = widthOf(host);
  const bottom = HEIGHT - BOTTOM;
  const numbers = days.map((d, i) => (d.date ? dayNumber(d.date) : i));
  const dated = days.length > 1 && numbers.every(Number.isFinite);
  const x = dated
    ? scale([numbers[0], numbers[numbers.length - 1]], [LEFT + 8, width - RIGHT])
    : scale([0, Math.max(1, days.length - 1)], [LEFT + 8, width - RIGHT]);
  const xOf = (i) => (days.length === 1 ? (LEFT + width - RIGHT) / 2 : x(dated ? numbers[i] : i));

  const rates = days.flatMap((d) => d.variants.map((v) => v.conversion_rate)).filter(isNumber);
  const axis = ticks(0, Math.max(0.01, ...rates), 5);
  const y = scale([0, axis.domain[1]], [bottom, TOP]);
  const decimals = tickDecimals(axis.step, 100);

  const last = days[days.length - 1];
  const span =
    days.length === 1
      ? last.date
        ? `on ${day(last.date)}`
        : "now"
      : `${days.length} days, ${day(days[0].date)} to ${day(last.date)}`;
  const description =
    `Cumulative conversion rate per variant, ${span}. ` +
    (last ? last.variants.map((v) => `${v.key}: ${rate(v.conversion_rate)}`).join("; ") : "");
  const svg = frame({
    width,
    height: HEIGHT,
    className: "rate-chart",
    title: "Cumulative conversion rate per variant",
    description,
  });

  const axes = s("g", { class: "axis" });
  for (const t of axis.values) {
    axes.append(
      s("line", {
        class: t === 0 ? "baseline" : "grid",
        x1: LEFT,
        x2: width - RIGHT,
        y1: y(t),
        y2: y(t),
      }),
      s(
        "text",
        { class: "tick", x: LEFT - 8, y: y(t) + 4, "text-anchor": "end" },
        `${(t * 100).toFixed(decimals)}%`,
      ),
    );
  }
  // Date labels, thinned to one per ~80 px so they never overlap.
  const every = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor((width - LEFT) / 80))));
  days.forEach((d, i) => {
    if (i % every !== 0 && i !== days.length - 1) return;
    axes.append(
      s(
        "text",
        { class: "tick", x: xOf(i), y: bottom + 18, "text-anchor": "middle" },
        d.date ? day(d.date) : "Now",
      ),
    );
  });
  axes.append(
    s(
      "text",
      {
        class: "axis-label",
        x: (LEFT + width - RIGHT) / 2,
        y: HEIGHT - 10,
        "text-anchor": "middle",
      },
      days.length > 1 ? "Day (UTC, days with events)" : "Current results",
    ),
    s(
      "text",
      {
        class: "axis-label",
        transform: `translate(14 ${(TOP + bottom) / 2}) rotate(-90)`,
        "text-anchor": "middle",
      },
      "Conversion rate",
    ),
  );
  svg.append(axes);

  order.forEach((key, index) => {
    const g = s("g", { class: `series ${seriesClass(index)}`, "data-variant": key });
    const points = [];
    days.forEach((d, i) => {
      const v = d.variants.find((item) => item.key === key);
      if (v && isNumber(v.conversion_rate)) points.push({ i, v, date: d.date });
    });
    if (points.length > 1) {
      const path = points
        .map(
          (p, n) => `${n ? "L" : "M"}${xOf(p.i).toFixed(1)} ${y(p.v.conversion_rate).toFixed(1)}`,
        )
        .join(" ");
      g.append(s("path", { class: "line", d: path }));
    }
    for (const p of points) {
      const when = p.date ? day(p.date) : "now";
      g.append(
        s(
          "circle",
          {
            class: "mark",
            cx: xOf(p.i),
            cy: y(p.v.conversion_rate),
            r: 4.5,
            "data-value": p.v.conversion_rate,
          },
          s(
            "title",
            {},
            `${key}, ${when}: ${rate(p.v.conversion_rate)} ` +
              `(${count(p.v.conversions)} of ${count(p.v.exposures)})`,
          ),
        ),
      );
    }
    svg.append(g);
  });

  fill(
    host,
    svg,
    legend(
      "Rate chart legend",
      order.map((key, index) => ({ label: key, className: seriesClass(index), kind: "line" })),
    ),
  );
}

export function rateFigure() {
  const slot = h("div", { class: "chart-slot" });
  const note = h("p", { class: "note", hidden: true });
  const figure = h(
    "figure",
    { class: "chart", "data-chart": "rate" },
    h("figcaption", {}, "Conversion rate per day"),
    slot,
    note,
  );
  return { figure, slot, note };
}
