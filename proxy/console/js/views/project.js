// A project's flags in one environment: key (a link), name, type, default, how many rules the
// environment has, its running experiment, and the "Enabled" switch.

import { mapLimit, query, seg } from "../api.js";
import { fill, h, keepFocus } from "../dom.js";
import { value } from "../format.js";
import { href } from "../router.js";
import { enabledSwitch } from "../switch.js";
import { environmentTabs, scroller, table } from "../table.js";

/** The environment of the address, if the project has it, else the project's default. */
export function environmentOf(project, asked) {
  const envs = project.environments || [];
  if (asked && envs.includes(asked)) return asked;
  return project.settings?.default_environment || envs[0];
}

export async function render(root, route, ctx) {
  const { projectId } = route.params;
  const heading = h("h1", { tabindex: "-1" }, "Flags");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(root, heading, body);

  let loaded = false;
  async function load() {
    const signal = ctx.signal;
    let project;
    let flags;
    try {
      [{ data: project }, { data: flags }] = await Promise.all([
        ctx.api.get(`flags/projects/${seg(projectId)}`, { signal }),
        ctx.api.get(`flags${query({ project_id: projectId })}`, { signal }),
      ]);
    } catch (error) {
      if (!loaded) {
        ctx.setCrumbs([{ label: "Projects", href: "#/projects" }, { label: "Project" }]);
        fill(body); // a failed refresh keeps what was there
      }
      ctx.fail(error);
      return;
    }
    const env = environmentOf(project, route.query.env);
    ctx.setTitle(`${project.name} (${env})`);
    ctx.setCrumbs([{ label: "Projects", href: "#/projects" }, { label: project.name }]);
    heading.textContent = `${project.name}: flags`;

    // Per flag, what this environment does with it: two reads, a few flags at a time.
    let firstError = null;
    const details = await mapLimit(flags, 4, async (flag) => {
      try {
        const [rules, experiments] = await Promise.all([
          ctx.api.get(`flags/${seg(flag.id)}/rules${query({ environment: env })}`, { signal }),
          ctx.api.get(`flags/${seg(flag.id)}/experiments`, { signal }),
        ]);
        const running = experiments.data.find(
          (e) => e.environment === env && e.status === "running",
        );
        return { rules: rules.data.length, running };
      } catch (error) {
        firstError ??= error;
        return { rules: null, running: null };
      }
    });
    if (signal.aborted) return;
    if (firstError) ctx.fail(firstError);
    else ctx.showError(null);

    const rows = flags.map((flag, i) => ({ flag, ...details[i] }));
    keepFocus(body, () =>
      fill(
        body,
        environmentTabs(project.environments, env, (e) =>
          href("project", { projectId }, { env: e }),
        ),
        rows.length
          ? scroller(`Flags in ${env}`, flagTable(rows, env, ctx))
          : h("p", { class: "muted" }, "No flags in this project yet."),
      ),
    );
    loaded = true;
  }

  await load();
  return { refresh: load };
}

function flagTable(rows, env, ctx) {
  return table({
    caption: `Flags in ${env}`,
    className: "flags",
    columns: [
      {
        label: "Key",
        cell: ({ flag }) =>
          h(
            "a",
            {
              href: href("flag", { flagId: flag.id }, { env }),
              dataset: { focus: `flag:${flag.id}` },
            },
            h("code", {}, flag.key),
          ),
      },
      { label: "Name", cell: ({ flag }) => flag.name },
      { label: "Type", cell: ({ flag }) => flag.flag_type },
      {
        label: "Default",
        cell: ({ flag }) => h("code", { class: "value" }, value(flag.default_value)),
      },
      {
        label: "Rules",
        numeric: true,
        cell: ({ rules }) => (rules === null ? "—" : String(rules)),
      },
      {
        label: "Running experiment",
        cell: ({ flag, running }) =>
          running
            ? h(
                "a",
                { href: href("experiment", { flagId: flag.id, experimentId: running.id }) },
                running.name,
              )
            : "—",
      },
      { label: "Enabled", cell: ({ flag }) => enabledSwitch(flag, ctx) },
    ],
    rows,
  });
}
