// An experiment's results: the API's figures in a table (fixed-horizon and sequential), the SRM
// warning, the lift chart and the rate chart. Refreshed quietly every 10 s while the tab is
// visible: only what changed is drawn again, and the focus stays where it was.

import { query, seg } from "../api.js";
import { drawLift, liftFigure } from "../chart-lift.js";
import { drawRate, rateFigure } from "../chart-rate.js";
import { fill, h, keepFocus } from "../dom.js";
import * as f from "../format.js";
import { lifecycleButton } from "../lifecycle.js";
import { href } from "../router.js";
import { scroller, table } from "../table.js";

export const REFRESH_MS = 10000;

export async function render(root, route, ctx) {
  const { flagId, experimentId } = route.params;
  const goal = route.query.goal || "";
  const base = `flags/${seg(flagId)}/experiments/${seg(experimentId)}`;

  const heading = h("h1", { tabindex: "-1" }, "Experiment");
  const facts = h("div", { class: "facts-slot" });
  const actions = h("div", { class: "actions-slot" });
  const banner = h("div", { class: "banner-slot" });
  const resultsSlot = h("div", { class: "results-slot" });
  const valueSlot = h("div", { class: "value-slot" });
  const lift = liftFigure();
  const rateChart = rateFigure();
  const charts = h("div", { class: "charts" }, lift.figure, rateChart.figure);
  const updated = h("p", { class: "updated muted" });
  const page = h(
    "div",
    { class: "experiment", hidden: true },
    facts,
    banner,
    h("h2", {}, "Results"),
    resultsSlot,
    h("h2", {}, "Charts"),
    charts,
    valueSlot,
    updated,
  );
  const loading = h("p", { class: "muted" }, "Loading…");
  // The goal field is there even when the first read fails (a goal the API refuses).
  const toolbar = h("div", { class: "toolbar" }, goalForm(goal, flagId, experimentId), actions);
  fill(root, heading, toolbar, loading, page);

  let shown = null; // {experiment, days, text}: what is on screen
  let flagKey = null;
  let busy = false;
  let updatedAt = 0;

  async function fetchSeries(signal) {
    try {
      const { data } = await ctx.api.get(`${base}/series${query({ goal })}`, { signal });
      return data.days;
    } catch (error) {
      if (error.status === 404) return null; // a proxy without the series route
      throw error;
    }
  }

  async function load({ quiet = false } = {}) {
    if (busy) return;
    busy = true;
    const signal = ctx.signal;
    try {
      const [{ data: experiment }, days] = await Promise.all([
        ctx.api.get(`${base}${query({ goal })}`, { signal }),
        fetchSeries(signal),
      ]);
      if (!shown) await frameOnce(experiment, signal);
      const text = JSON.stringify([experiment, days]);
      if (!shown || shown.text !== text) {
        shown = { experiment, days, text };
        keepFocus(root, () => draw(experiment, days));
      }
      updatedAt = Date.now();
      updated.textContent =
        `Updated at ${f.clock()}. ` +
        `Refreshes every ${REFRESH_MS / 1000} s while this tab is visible.`;
      if (!quiet) {
        ctx.showError(null);
        ctx.showStatus(`Results updated at ${f.clock()}.`);
      }
    } catch (error) {
      // Quiet only once there is a page: a first load that fails says so in the alert.
      if (!shown) loading.remove();
      if (quiet && shown && error?.status !== 401 && error?.name !== "AbortError") {
        updated.textContent = `Could not refresh at ${f.clock()}: ${error.message}`;
      } else {
        ctx.fail(error);
      }
    } finally {
      busy = false;
    }
  }

  /** What does not change between refreshes: the flag and project, for the breadcrumb. */
  async function frameOnce(experiment, signal) {
    const { data: flag } = await ctx.api.get(`flags/${seg(flagId)}`, { signal });
    const { data: project } = await ctx.api.get(`flags/projects/${seg(flag.project_id)}`, {
      signal,
    });
    ctx.setTitle(experiment.name);
    ctx.setCrumbs([
      { label: "Projects", href: "#/projects" },
      {
        label: project.name,
        href: href("project", { projectId: project.id }, { env: experiment.environment }),
      },
      { label: flag.key, href: href("flag", { flagId }, { env: experiment.environment }) },
      { label: experiment.name },
    ]);
    flagKey = flag.key;
    loading.remove();
    page.hidden = false;
  }

  function draw(experiment, days) {
    const results = experiment.results;
    fill(
      heading,
      experiment.name,
      " ",
      h("span", { class: `badge status-${experiment.status}` }, experiment.status),
    );
    fill(facts, factList(experiment, flagKey));
    // Quiet: the status line keeps saying "started" / "stopped" rather than "updated".
    fill(
      actions,
      lifecycleButton(experiment, ctx, () => load({ quiet: true })),
    );
    fill(
      banner,
      results.srm?.warning
        ? h(
            "div",
            { class: "banner warning" },
            h("strong", {}, "Sample ratio mismatch. "),
            "The variants' exposures do not match their planned split " +
              `(SRM p-value ${f.pValue(results.srm.p_value)}): ` +
              "users may be assigned or counted unevenly, so these results may be biased.",
          )
        : null,
    );
    fill(
      resultsSlot,
      scroller(`Results for ${results.goal}`, resultTable(results)),
      h(
        "p",
        { class: "muted small" },
        `${f.DASH} : not defined (the control's own comparisons, no data yet, ` +
          "or a figure this proxy does not serve).",
      ),
    );
    const withValues = results.variants.some((v) => v.value && typeof v.value === "object");
    fill(
      valueSlot,
      withValues
        ? [
            h("h2", {}, `Value per user (${results.goal})`),
            scroller("Value per user", valueTable(results)),
          ]
        : null,
    );
    drawCharts();
  }

  function drawCharts() {
    if (!shown) return;
    const { experiment, days } = shown;
    const results = experiment.results;
    drawLift(lift.slot, results, experiment.analysis?.alpha);
    const current = [{ date: null, variants: results.variants }];
    drawRate(
      rateChart.slot,
      days?.length ? days : current,
      results.variants.map((v) => v.key),
    );
    rateChart.note.hidden = Boolean(days?.length);
    rateChart.note.textContent =
      days === null
        ? "This proxy does not serve the daily series yet: " +
          "each variant's current rate is shown as one point."
        : "No day with events yet: each variant's current rate is shown as one point.";
  }

  // Charts are drawn to the pixel width they get: again when it changes (a rotated phone).
  let lastWidth = 0;
  let frameRequest = 0;
  const observer = new ResizeObserver((entries) => {
    const width = Math.floor(entries[0].contentRect.width);
    if (width === lastWidth) return;
    lastWidth = width;
    cancelAnimationFrame(frameRequest);
    frameRequest = requestAnimationFrame(drawCharts);
  });
  observer.observe(charts);

  const tick = () => {
    if (document.visibilityState === "visible") load({ quiet: true });
  };
  const timer = setInterval(tick, REFRESH_MS);
  const onVisible = () => {
    if (document.visibilityState === "visible" && Date.now() - updatedAt >= REFRESH_MS) tick();
  };
  document.addEventListener("visibilitychange", onVisible);

  await load({ quiet: true });
  return {
    refresh: () => load(),
    dispose() {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
      observer.disconnect();
      cancelAnimationFrame(frameRequest);
    },
  };
}

function goalForm(goal, flagId, experimentId) {
  const input = h("input", {
    id: "goal",
    name: "goal",
    value: goal || "conversion",
    autocomplete: "off",
    spellcheck: "false",
    size: "14",
  });
  const form = h(
    "form",
    { class: "goal-form" },
    h("label", { for: "goal" }, "Goal"),
    input,
    h("button", { type: "submit", class: "button" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = input.value.trim();
    location.hash = href(
      "experiment",
      { flagId, experimentId },
      { goal: next === "conversion" ? "" : next },
    );
  });
  return form;
}

function factList(e, flagKey) {
  const item = (term, ...detail) => h("div", {}, h("dt", {}, term), h("dd", {}, ...detail));
  const a = e.analysis || null;
  return h(
    "dl",
    { class: "facts" },
    item(
      "Flag",
      h(
        "a",
        { href: href("flag", { flagId: e.flag_id }, { env: e.environment }) },
        h("code", {}, flagKey || e.flag_id),
      ),
    ),
    item("Environment", e.environment),
    item("Variants", e.variants.map((v) => `${v.key} ${v.percentage}%`).join(" · ")),
    item("Traffic", `${e.traffic_percentage}%`),
    item("Started", f.time(e.started_at)),
    item("Stopped", f.time(e.stopped_at)),
    item("Converting users", f.count(e.conversions)),
    item("Goal", h("code", {}, e.results.goal)),
    item("SRM p-value", f.pValue(e.results.srm?.p_value)),
    item("Alpha", a && f.isNumber(a.alpha) ? String(a.alpha) : f.DASH),
    item("Correction", a ? a.correction || "none" : f.DASH),
    item(
      "Sequential tuning",
      a && f.isNumber(a.sequential_tuning) ? f.count(a.sequential_tuning) : f.DASH,
    ),
  );
}

/** A figure and its interval, one above the other (one dash when neither is defined). */
function withInterval(point, interval) {
  if (point === f.DASH && interval === f.DASH) return f.DASH;
  return [h("span", { class: "fig" }, point), h("span", { class: "ci" }, interval)];
}

/** A sequential p-value, and under it its adjusted one when a correction is set. */
function withAdjusted(p, adjusted) {
  return [
    h("span", { class: "fig" }, f.pValue(p)),
    f.isNumber(adjusted) ? h("span", { class: "ci" }, `adjusted ${f.pValue(adjusted)}`) : null,
  ];
}

function variantCell(results) {
  return (v) =>
    v.key === results.control
      ? [h("code", {}, v.key), " ", h("span", { class: "chip" }, "control")]
      : h("code", {}, v.key);
}

function resultTable(results) {
  return table({
    caption: `Results for goal “${results.goal}”`,
    className: "results",
    columns: [
      { label: "Variant", cell: variantCell(results) },
      { label: "Exposures", numeric: true, cell: (v) => f.count(v.exposures) },
      { label: "Conversions", numeric: true, cell: (v) => f.count(v.conversions) },
      { label: "Conversion rate", numeric: true, cell: (v) => f.rate(v.conversion_rate) },
      {
        label: "Absolute lift",
        numeric: true,
        cell: (v) => withInterval(f.points(v.absolute_lift), f.pointsInterval(v.absolute_lift_ci)),
      },
      {
        label: "Relative lift",
        numeric: true,
        cell: (v) =>
          withInterval(f.relative(v.relative_lift), f.relativeInterval(v.relative_lift_ci)),
      },
      { label: "p-value", numeric: true, cell: (v) => f.pValue(v.p_value) },
      { label: "Adjusted p-value", numeric: true, cell: (v) => f.pValue(v.p_value_adjusted) },
      {
        label: "Sequential CI",
        numeric: true,
        cell: (v) =>
          withInterval(
            f.pointsInterval(v.sequential?.absolute_lift_ci),
            f.relativeInterval(v.sequential?.relative_lift_ci),
          ),
      },
      {
        label: "Sequential p-value",
        numeric: true,
        cell: (v) => withAdjusted(v.sequential?.p_value, v.sequential?.p_value_adjusted),
      },
      {
        label: "Chance to beat control",
        numeric: true,
        cell: (v) => f.chance(v.chance_to_beat_control),
      },
    ],
    rows: results.variants,
  });
}

function valueTable(results) {
  const val = (v) => (v.value && typeof v.value === "object" ? v.value : {});
  return table({
    caption: `Value per exposed user for goal “${results.goal}”`,
    className: "values",
    columns: [
      { label: "Variant", cell: variantCell(results) },
      { label: "Sum", numeric: true, cell: (v) => f.amount(val(v).sum) },
      { label: "Mean", numeric: true, cell: (v) => f.amount(val(v).mean) },
      { label: "Variance", numeric: true, cell: (v) => f.amount(val(v).variance) },
      {
        label: "Absolute lift",
        numeric: true,
        cell: (v) =>
          withInterval(
            f.difference(val(v).absolute_lift),
            f.differenceInterval(val(v).absolute_lift_ci),
          ),
      },
      {
        label: "Relative lift",
        numeric: true,
        cell: (v) =>
          withInterval(
            f.relative(val(v).relative_lift),
            f.relativeInterval(val(v).relative_lift_ci),
          ),
      },
      { label: "p-value", numeric: true, cell: (v) => f.pValue(val(v).p_value) },
      { label: "Adjusted p-value", numeric: true, cell: (v) => f.pValue(val(v).p_value_adjusted) },
      {
        label: "Sequential CI",
        numeric: true,
        cell: (v) =>
          withInterval(
            f.differenceInterval(val(v).sequential?.absolute_lift_ci),
            f.relativeInterval(val(v).sequential?.relative_lift_ci),
          ),
      },
      {
        label: "Sequential p-value",
        numeric: true,
        cell: (v) => withAdjusted(val(v).sequential?.p_value, val(v).sequential?.p_value_adjusted),
      },
    ],
    rows: results.variants,
  });
}
