// Sign-in: a key is tried against the API (GET /flags/projects) and kept in sessionStorage only
// once the API accepted it: 200, or 403 (a valid key that cannot list projects; the next page
// says so in the API's words). A 401 keeps nothing and shows the API's message.

import { Api } from "../api.js";
import { fill, h } from "../dom.js";
import { setCrumbs, setTitle, showError, showStatus } from "../page.js";
import { saveKey } from "../session.js";

export function render(root, { signal, onSignedIn }) {
  setTitle("Sign in");
  setCrumbs([]);
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const button = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h(
    "form",
    { class: "signin", novalidate: true },
    h("h1", { tabindex: "-1" }, "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { id: "api-key-help", class: "muted" },
      "A key of this proxy (kr_live_…). It stays in this tab only and is sent to this proxy only.",
    ),
    button,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      showError("Enter an API key.");
      input.focus();
      return;
    }
    button.disabled = true;
    showError(null);
    showStatus("Checking the key…");
    try {
      await new Api(key).get("flags/projects", { signal });
      saveKey(key);
    } catch (error) {
      if (error?.name === "AbortError") return;
      if (error?.status === 403) {
        saveKey(key); // accepted; what it may not do, the pages say
      } else {
        showStatus("");
        showError(error);
        button.disabled = false;
        input.select();
        return;
      }
    }
    showStatus("");
    // replaceState, not location.hash: no hashchange, so the page is drawn once.
    if (!location.hash || location.hash === "#/") history.replaceState(null, "", "#/projects");
    onSignedIn();
  });

  fill(root, form);
  input.focus();
}
