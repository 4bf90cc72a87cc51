// Hash routes, so that a reload, a bookmark and back/forward all land on the same page, and the
// server has one page to serve. Ids are checked to be the API's UUIDs before any view uses them.

const ID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})";
const ROUTES = [
  { name: "projects", pattern: new RegExp("^/projects$") },
  { name: "project", pattern: new RegExp(`^/projects/${ID}$`), params: ["projectId"] },
  { name: "flag", pattern: new RegExp(`^/flags/${ID}$`), params: ["flagId"] },
  {
    name: "experiment",
    pattern: new RegExp(`^/flags/${ID}/experiments/${ID}$`),
    params: ["flagId", "experimentId"],
  },
];

/** The route of a location hash: {name, params, query}; unknown paths are "missing". */
export function parse(hash) {
  const text = hash.replace(/^#/, "") || "/projects";
  const [path, search = ""] = text.split("?", 2);
  const query = Object.fromEntries(new URLSearchParams(search));
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (m) {
      const params = Object.fromEntries((route.params || []).map((p, i) => [p, m[i + 1]]));
      return { name: route.name, params, query };
    }
  }
  return { name: "missing", params: { path }, query };
}

/** The hash of a page: href("project", {projectId}, {env: "staging"}). */
export function href(name, params = {}, query = {}) {
  const paths = {
    projects: () => "/projects",
    project: () => `/projects/${params.projectId}`,
    flag: () => `/flags/${params.flagId}`,
    experiment: () => `/flags/${params.flagId}/experiments/${params.experimentId}`,
  };
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const search = q.toString();
  return `#${paths[name]()}${search ? `?${search}` : ""}`;
}
