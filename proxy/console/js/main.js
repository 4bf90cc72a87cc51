// Boot and navigation: the signed-in key, the route of the address bar to its view, and the
// header's Refresh and Sign out. A 401 from any call means the key is gone: back to sign-in.

import { Api } from "./api.js";
import { fill, h } from "./dom.js";
import { setCrumbs, setTitle, showError, showStatus } from "./page.js";
import { parse } from "./router.js";
import { forgetKey, savedKey } from "./session.js";
import * as experiment from "./views/experiment.js";
import * as flag from "./views/flag.js";
import * as project from "./views/project.js";
import * as projects from "./views/projects.js";
import * as signin from "./views/signin.js";

const missing = {
  render(root) {
    setTitle("Not found");
    setCrumbs([{ label: "Projects", href: "#/projects" }, { label: "Not found" }]);
    fill(
      root,
      h("h1", { tabindex: "-1" }, "Page not found"),
      h("p", {}, h("a", { href: "#/projects" }, "Back to the projects")),
    );
  },
};

const VIEWS = { projects, project, flag, experiment, missing };
const viewRoot = () => document.getElementById("view");
const refreshButton = document.getElementById("refresh");
const signOutButton = document.getElementById("sign-out");

let current = null; // {controller, view}: the page on screen, to abort and dispose on leaving

function leave() {
  if (!current) return;
  current.controller.abort();
  current.view?.dispose?.();
  current = null;
}

function setSignedIn(on) {
  refreshButton.hidden = !on;
  signOutButton.hidden = !on;
}

/** What a view may use: the API with this session's key, and the page's chrome. */
function context(api, controller) {
  return {
    api,
    signal: controller.signal,
    showError,
    showStatus,
    setCrumbs,
    setTitle,
    /** Any failure of a call: ignored once the page is left, sign-in on a 401, else shown. */
    fail(error) {
      if (error?.name === "AbortError" || controller.signal.aborted) return;
      if (error?.status === 401) {
        forgetKey();
        show().then(() => showError(error));
        return;
      }
      showError(error);
    },
  };
}

async function show({ focus = false } = {}) {
  leave();
  showError(null);
  showStatus("");
  const root = viewRoot();
  const controller = new AbortController();
  current = { controller, view: null };
  const key = savedKey();
  setSignedIn(Boolean(key));
  if (!key) {
    signin.render(root, { signal: controller.signal, onSignedIn: () => show({ focus: true }) });
    return;
  }
  const route = parse(location.hash);
  const ctx = context(new Api(key), controller);
  try {
    const view = await VIEWS[route.name].render(root, route, ctx);
    if (current?.controller === controller) current.view = view || null;
    else view?.dispose?.(); // left while loading
  } catch (error) {
    ctx.fail(error);
  }
  // Where a screen reader lands after a move: the new page's heading; unless the user already
  // went on (typing into the page while it loaded), whose focus is theirs to keep.
  const theirs = root.contains(document.activeElement);
  if (focus && !theirs && current?.controller === controller) {
    root.querySelector("h1")?.focus({ preventScroll: false });
  }
}

window.addEventListener("hashchange", () => show({ focus: true }));
refreshButton.addEventListener("click", () => current?.view?.refresh?.());
signOutButton.addEventListener("click", () => {
  forgetKey();
  show();
  showStatus("Signed out.");
});

show();
