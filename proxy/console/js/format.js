// Turning the API's numbers into text. Formatting only: no figure is ever computed here, and an
// absent or null figure (undefined for this variant, or not served by this proxy) is a dash.

export const DASH = "—";
const MINUS = "\u2212";
const INTEGER = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const AMOUNT = new Intl.NumberFormat("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export function isNumber(x) {
  return typeof x === "number" && Number.isFinite(x);
}

/** x with `digits` decimals and a sign (+, − with a true minus; none for zero). */
function signed(x, digits) {
  const magnitude = Math.abs(x).toFixed(digits);
  if (Number(magnitude) === 0) return magnitude;
  return (x < 0 ? MINUS : "+") + magnitude;
}

function interval(ci, one) {
  if (!Array.isArray(ci) || ci.length !== 2 || !isNumber(ci[0]) || !isNumber(ci[1])) return DASH;
  return `[${one(ci[0])}, ${one(ci[1])}]`;
}

/** 1234 → "1,234" */
export function count(n) {
  return isNumber(n) ? INTEGER.format(n) : DASH;
}

/** A conversion rate: 0.1234 → "12.34%" */
export function rate(x) {
  return isNumber(x) ? `${(x * 100).toFixed(2)}%` : DASH;
}

/** An absolute lift of rates, in percentage points: 0.0123 → "+1.23 pp" */
export function points(x) {
  return isNumber(x) ? `${signed(x * 100, 2)} pp` : DASH;
}

export function pointsInterval(ci) {
  const text = interval(ci, (x) => signed(x * 100, 2));
  return text === DASH ? text : `${text} pp`;
}

/** A relative lift: 0.123 → "+12.3%" */
export function relative(x) {
  return isNumber(x) ? `${signed(x * 100, 1)}%` : DASH;
}

export function relativeInterval(ci) {
  return interval(ci, (x) => `${signed(x * 100, 1)}%`);
}

/** A difference of means (value goals), in the goal's own unit. */
export function difference(x) {
  return isNumber(x) ? signed(x, 2) : DASH;
}

export function differenceInterval(ci) {
  return interval(ci, (x) => signed(x, 2));
}

export function amount(x) {
  return isNumber(x) ? AMOUNT.format(x).replace("-", MINUS) : DASH;
}

export function pValue(p) {
  if (!isNumber(p)) return DASH;
  return p < 0.0001 ? "< 0.0001" : p.toFixed(4);
}

/** Chance to beat control: 0.9312 → "93.1%"; the ends are not rounded to certainty. */
export function chance(x) {
  if (!isNumber(x)) return DASH;
  if (x > 0.999) return "> 99.9%";
  if (x < 0.001) return "< 0.1%";
  return `${(x * 100).toFixed(1)}%`;
}

/** The interval's level from the experiment's alpha (the API's default is 0.05). */
export function level(alpha) {
  const a = isNumber(alpha) ? alpha : 0.05;
  return `${Number(((1 - a) * 100).toFixed(2))}%`;
}

/** A flag value in its JSON spelling ("control" with quotes, true, 42, {...}). */
export function value(v) {
  const text = JSON.stringify(v);
  return text === undefined ? DASH : text;
}

/** "2024-03-14T10:22:05Z" → "2024-03-14 10:22 UTC" (the API's times are UTC). */
export function time(iso) {
  if (typeof iso !== "string" || !iso) return DASH;
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

const DAY = new Intl.DateTimeFormat("en", { month: "short", day: "numeric", timeZone: "UTC" });

/** A series day, "2024-03-14" → "Mar 14". */
export function day(date) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date || "");
  return m ? DAY.format(new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]))) : String(date);
}

/** The local clock, for "updated at". */
export function clock(at = new Date()) {
  return at.toLocaleTimeString("en", { hour12: false });
}
