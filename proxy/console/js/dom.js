// Building DOM nodes. Text always goes in as text nodes, never as markup: flag names, keys and
// values are user data, and a name like <img src=x onerror=...> must stay a name.

const FORBIDDEN = /^(style|on)/i; // blocked by the CSP anyway; refused here so no one tries

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (FORBIDDEN.test(name)) {
      throw new Error(`attribute ${name} is not allowed`);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("a", {href: "#/x", class: "link"}, "text", otherNode) */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** The same for SVG elements (charts). */
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replace every child of `el` at once (one layout, no flicker). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let counter = 0;
/** A document-unique id, for aria-labelledby and label/for pairs. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * Run `update` (which redraws part of `container`) and give the focus back to the element that
 * plays the same part afterwards (same data-focus), so a refresh never drops the keyboard user.
 */
export function keepFocus(container, update) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focus : undefined;
  update();
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}
