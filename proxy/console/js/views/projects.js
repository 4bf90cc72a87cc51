// Projects: every project the key may see, each name a link to its flags.

import { fill, h } from "../dom.js";
import { href } from "../router.js";

export async function render(root, _route, ctx) {
  ctx.setTitle("Projects");
  ctx.setCrumbs([{ label: "Projects" }]);
  const heading = h("h1", { tabindex: "-1" }, "Projects");
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(root, heading, body);

  let loaded = false;
  async function load() {
    try {
      const { data } = await ctx.api.get("flags/projects", { signal: ctx.signal });
      ctx.showError(null);
      fill(body, data.length ? list(data) : h("p", { class: "muted" }, "No projects yet."));
      loaded = true;
    } catch (error) {
      if (!loaded) fill(body); // a failed refresh keeps what was there
      ctx.fail(error);
    }
  }

  await load();
  return { refresh: load };
}

function list(projects) {
  return h(
    "ul",
    { class: "cards" },
    projects.map((p) =>
      h(
        "li",
        { class: "card" },
        h("a", { class: "card-title", href: href("project", { projectId: p.id }) }, p.name),
        h("span", { class: "muted" }, p.slug),
        h("span", { class: "muted" }, `Environments: ${(p.environments || []).join(", ")}`),
      ),
    ),
  );
}
