// A flag: what it is, its "Enabled" switch, its rules in one environment in evaluation order,
// and its experiments (names link to their results) with "Start" and "Stop".

import { query, seg } from "../api.js";
import { fill, h, keepFocus } from "../dom.js";
import { count, time, value } from "../format.js";
import { lifecycleButton } from "../lifecycle.js";
import { href } from "../router.js";
import { enabledSwitch } from "../switch.js";
import { environmentTabs, scroller, table } from "../table.js";
import { environmentOf } from "./project.js";

const NO_VALUE = new Set(["is_set", "is_not_set"]);

export async function render(root, route, ctx) {
  const { flagId } = route.params;
  const heading = h("h1", { tabindex: "-1" }, "Flag");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(root, heading, body);

  let loaded = false;
  async function load() {
    const signal = ctx.signal;
    try {
      const { data: flag } = await ctx.api.get(`flags/${seg(flagId)}`, { signal });
      const { data: project } = await ctx.api.get(`flags/projects/${seg(flag.project_id)}`, {
        signal,
      });
      const env = environmentOf(project, route.query.env);
      const [{ data: rules }, { data: experiments }] = await Promise.all([
        ctx.api.get(`flags/${seg(flagId)}/rules${query({ environment: env })}`, { signal }),
        ctx.api.get(`flags/${seg(flagId)}/experiments`, { signal }),
      ]);
      let segments = {};
      if (rules.some((r) => r.segment_id)) {
        const listed = await ctx.api.get(
          `flags/segments${query({ project_id: flag.project_id })}`,
          { signal },
        );
        segments = Object.fromEntries(listed.data.map((sgm) => [sgm.id, sgm.name]));
      }
      ctx.setTitle(flag.key);
      ctx.setCrumbs([
        { label: "Projects", href: "#/projects" },
        { label: project.name, href: href("project", { projectId: project.id }, { env }) },
        { label: flag.key },
      ]);
      fill(heading, h("code", {}, flag.key));
      ctx.showError(null);
      keepFocus(body, () =>
        fill(
          body,
          summary(flag, ctx),
          environmentTabs(project.environments, env, (e) => href("flag", { flagId }, { env: e })),
          h("h2", {}, `Rules in ${env}`),
          ruleList(rules, segments),
          h("h2", {}, "Experiments"),
          experiments.length
            ? scroller("Experiments", experimentTable(experiments, ctx, load))
            : h("p", { class: "muted" }, "No experiments on this flag yet."),
        ),
      );
      loaded = true;
    } catch (error) {
      if (!loaded && !signal.aborted) fill(body); // a failed refresh keeps what was there
      ctx.fail(error);
    }
  }

  await load();
  return { refresh: load };
}

function summary(flag, ctx) {
  const item = (term, ...detail) => h("div", {}, h("dt", {}, term), h("dd", {}, ...detail));
  return h(
    "dl",
    { class: "facts" },
    item("Name", flag.name),
    item("Type", flag.flag_type),
    item("Default", h("code", { class: "value" }, value(flag.default_value))),
    flag.description ? item("Description", flag.description) : null,
    flag.tags?.length ? item("Tags", flag.tags.join(", ")) : null,
    item("Enabled", enabledSwitch(flag, ctx)),
  );
}

function condition(c) {
  const parts = [h("code", {}, c.attribute), ` ${c.operator.replaceAll("_", " ")}`];
  if (!NO_VALUE.has(c.operator)) parts.push(" ", h("code", { class: "value" }, value(c.value)));
  return h("span", { class: "condition" }, parts);
}

function ruleList(rules, segments) {
  if (!rules.length) {
    return h("p", { class: "muted" }, "No rules: an enabled flag serves its default here.");
  }
  return h(
    "ol",
    { class: "rules" },
    rules.map((rule) => {
      const when = rule.conditions.length
        ? rule.conditions.flatMap((c, i) => (i ? [" and ", condition(c)] : [condition(c)]))
        : ["Everyone"];
      return h(
        "li",
        { class: rule.enabled === false ? "rule rule-off" : "rule" },
        h("span", { class: "rule-when" }, "If ", ...when),
        rule.segment_id
          ? h(
              "span",
              { class: "chip" },
              `in segment ${segments[rule.segment_id] ?? rule.segment_id}`,
            )
          : null,
        rule.percentage !== null && rule.percentage !== undefined
          ? h("span", { class: "chip" }, `${rule.percentage}% of them`)
          : null,
        h(
          "span",
          { class: "rule-serve" },
          "serve ",
          h("code", { class: "value" }, value(rule.value)),
        ),
        rule.enabled === false ? h("span", { class: "chip chip-off" }, "disabled") : null,
      );
    }),
  );
}

function experimentTable(experiments, ctx, reload) {
  return table({
    caption: "Experiments",
    quiet: true,
    className: "experiments",
    columns: [
      {
        label: "Name",
        cell: (e) =>
          h(
            "a",
            {
              href: href("experiment", { flagId: e.flag_id, experimentId: e.id }),
              dataset: { focus: `experiment:${e.id}` },
            },
            e.name,
          ),
      },
      { label: "Environment", cell: (e) => e.environment },
      { label: "Status", cell: (e) => h("span", { class: `badge status-${e.status}` }, e.status) },
      {
        label: "Variants",
        cell: (e) => e.variants.map((v) => `${v.key} ${v.percentage}%`).join(" · "),
      },
      { label: "Traffic", numeric: true, cell: (e) => `${e.traffic_percentage}%` },
      { label: "Converting users", numeric: true, cell: (e) => count(e.conversions) },
      { label: "Started", cell: (e) => time(e.started_at) },
      { label: "Stopped", cell: (e) => time(e.stopped_at) },
      { label: "Action", cell: (e) => lifecycleButton(e, ctx, reload) || "—" },
    ],
    rows: experiments,
  });
}
