// A flag's "Enabled" switch: PATCH {enabled} at once; the API's answer decides the state, and an
// error puts the switch back and shows the API's message (a read-only key: "Insufficient scope").

import { seg } from "./api.js";
import { h } from "./dom.js";

export function enabledSwitch(flag, ctx, onChange) {
  const button = h(
    "button",
    {
      type: "button",
      role: "switch",
      class: "switch",
      "aria-checked": String(Boolean(flag.enabled)),
      "aria-label": `Enabled ${flag.key}`,
      dataset: { focus: `switch:${flag.id}` },
    },
    h("span", { class: "switch-thumb", "aria-hidden": "true" }),
  );
  const set = (on) => button.setAttribute("aria-checked", String(Boolean(on)));

  button.addEventListener("click", async () => {
    // aria-busy rather than disabled: a disabled button would drop the keyboard focus.
    if (button.getAttribute("aria-busy") === "true") return;
    const was = button.getAttribute("aria-checked") === "true";
    set(!was);
    button.setAttribute("aria-busy", "true");
    try {
      const { data } = await ctx.api.patch(
        `flags/${seg(flag.id)}`,
        { enabled: !was },
        { signal: ctx.signal },
      );
      set(data.enabled);
      ctx.showError(null);
      ctx.showStatus(`${data.key} is now ${data.enabled ? "enabled" : "disabled"}.`);
      onChange?.(data);
    } catch (error) {
      set(was);
      ctx.fail(error);
    } finally {
      button.removeAttribute("aria-busy");
    }
  });
  return button;
}
