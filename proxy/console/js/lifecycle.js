// "Start" and "Stop" for an experiment, each after a confirmation: POST .../start or .../stop.

import { seg } from "./api.js";
import { confirm } from "./confirm.js";
import { h } from "./dom.js";

const ACTIONS = {
  draft: {
    label: "Start",
    path: "start",
    title: (e) => `Start “${e.name}”?`,
    message: (e) =>
      `Users in ${e.environment} start getting its variants, and their exposures and ` +
      "conversions are counted.",
    done: (e) => `Experiment “${e.name}” started.`,
    danger: false,
  },
  running: {
    label: "Stop",
    path: "stop",
    title: (e) => `Stop “${e.name}”?`,
    message: (e) =>
      `Users in ${e.environment} get the flag's rules or its default again. A stopped ` +
      "experiment cannot be started again; its results stay readable.",
    done: (e) => `Experiment “${e.name}” stopped.`,
    danger: true,
  },
};

/** The button for the experiment's next step, or null once it is stopped. */
export function lifecycleButton(experiment, ctx, after) {
  const action = ACTIONS[experiment.status];
  if (!action) return null;
  const button = h(
    "button",
    {
      type: "button",
      class: action.danger ? "button danger" : "button primary",
      "aria-label": `${action.label} ${experiment.name}`,
      dataset: { focus: `lifecycle:${experiment.id}` },
    },
    action.label,
  );
  button.addEventListener("click", async () => {
    const yes = await confirm({
      title: action.title(experiment),
      message: action.message(experiment),
      confirmLabel: `${action.label} experiment`,
      danger: action.danger,
    });
    if (!yes) return;
    try {
      const path = `flags/${seg(experiment.flag_id)}/experiments/${seg(experiment.id)}`;
      const { data } = await ctx.api.post(`${path}/${action.path}`, undefined, {
        signal: ctx.signal,
      });
      ctx.showError(null);
      ctx.showStatus(action.done(data));
      await after(data);
    } catch (error) {
      ctx.fail(error);
    }
  });
  return button;
}
