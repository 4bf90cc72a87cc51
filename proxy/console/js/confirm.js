// A confirmation in a modal <dialog>: focus moves into it and stays there, Escape or Cancel
// answers no, and focus goes back where it was when the dialog closes.

import { h, uid } from "./dom.js";

export function confirm({ title, message, confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const textId = uid("dialog-text");
    const cancel = h("button", { type: "button", class: "button" }, "Cancel");
    const ok = h(
      "button",
      { type: "button", class: danger ? "button danger" : "button primary" },
      confirmLabel,
    );
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": titleId, "aria-describedby": textId },
      h("h2", { id: titleId }, title),
      h("p", { id: textId }, message),
      h("div", { class: "dialog-actions" }, cancel, ok),
    );
    let answer = false;
    cancel.addEventListener("click", () => dialog.close());
    ok.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    // The safe answer has the focus: Enter at once never stops an experiment by mistake.
    cancel.focus();
  });
}
