// DOM helpers. Every string goes into the page as a text node or an attribute value:
// nothing here (or anywhere in the UI) assigns innerHTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked" || name === "selected" || name === "disabled") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Replace an element's children (nulls skipped, arrays flattened, strings as text). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ------------------------------------------------------------------ formatting

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** "2025-01-31 14:05:09" in local time. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "14:05:09.123" */
export function fmtClock(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in ms as "850 ms", "4.2 s", "3m 10s", "2h 05m", "3d 4h". */
export function fmtDur(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec < 10 ? sec.toFixed(2) : sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m}m ${pad(Math.floor(sec % 60))}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${pad(m % 60)}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** "12 s ago", "in 3 min". */
export function fmtRel(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "—";
  const diff = ms - now;
  const abs = Math.abs(diff);
  let text;
  if (abs < 1500) return "just now";
  if (abs < 60_000) text = `${Math.round(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.round(abs / 60_000)} min`;
  else if (abs < 172_800_000) text = `${Math.round(abs / 3_600_000)} h`;
  else text = `${Math.round(abs / 86_400_000)} d`;
  return diff < 0 ? `${text} ago` : `in ${text}`;
}

/** A time cell: relative text, absolute time on hover. */
export function timeCell(ms) {
  return h("span", { class: "time", title: ms ? fmtTime(ms) : "" }, fmtRel(ms));
}

export function shortId(id) {
  if (!id) return "—";
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

export function fmtNum(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

// ------------------------------------------------------------------ small components

export const STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelled"];

export function badge(status, extra) {
  return h("span", { class: ["badge", `st-${status}`, extra] }, status);
}

export function pill(text, cls, title) {
  return h("span", { class: ["pill", cls], title }, text);
}

/** A pretty JSON block with coloured tokens (each token a text node inside a span). */
export function jsonView(value, opts = {}) {
  const pre = h("pre", { class: ["json", opts.class] });
  if (value === undefined) {
    pre.appendChild(h("span", { class: "j-null" }, "—"));
    return pre;
  }
  let text;
  try {
    text = typeof value === "string" && opts.raw ? value : JSON.stringify(value, null, 2);
  } catch (e) {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  if (text.length > 200_000) text = `${text.slice(0, 200_000)}\n… (${fmtNum(text.length)} characters in all)`;
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false)\b|\b(null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  const frag = document.createDocumentFragment();
  for (const m of text.matchAll(re)) {
    if (m.index > last) frag.appendChild(document.createTextNode(text.slice(last, m.index)));
    let cls = "j-num";
    if (m[1]) cls = m[2] ? "j-key" : "j-str";
    else if (m[3]) cls = "j-bool";
    else if (m[4]) cls = "j-null";
    frag.appendChild(h("span", { class: cls }, m[1] && m[2] ? m[1] : m[0]));
    if (m[1] && m[2]) frag.appendChild(document.createTextNode(m[2]));
    last = m.index + m[0].length;
  }
  if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
  pre.appendChild(frag);
  return pre;
}

/** A value in one line (for table cells). */
export function compact(value, max = 120) {
  if (value === null || value === undefined) return "—";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function copyButton(text, label = "copy") {
  return h(
    "button",
    {
      class: "btn-link copy",
      title: "Copy to clipboard",
      onclick: async (ev) => {
        ev.preventDefault();
        ev.stopPropagation();
        try {
          await navigator.clipboard.writeText(text);
          ev.target.textContent = "copied";
          setTimeout(() => (ev.target.textContent = label), 1200);
        } catch (e) {
          /* clipboard refused (no secure context): nothing to do */
        }
      },
    },
    label,
  );
}

/** A definition list from [label, value] pairs (values: strings or nodes). */
export function fields(pairs, cls) {
  const dl = h("dl", { class: ["fields", cls] });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === false) continue;
    dl.appendChild(h("dt", null, label));
    dl.appendChild(h("dd", null, value));
  }
  return dl;
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function errorBox(error) {
  if (!error) return null;
  return h(
    "div",
    { class: "error-box" },
    h("div", { class: "error-title" }, h("strong", null, error.type || "Error"), ": ", error.message || ""),
    error.traceback ? h("details", null, h("summary", null, "traceback"), h("pre", { class: "trace" }, error.traceback)) : null,
  );
}

/** A page header: title, subtitle and right-hand actions. */
export function pageHeader(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-header" },
    h("div", null, h("h1", null, title), subtitle ? h("div", { class: "subtitle" }, subtitle) : null),
    h("div", { class: "actions" }, actions),
  );
}

export function table(columns, rows, opts = {}) {
  const thead = h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.cls, style: c.width ? { width: c.width } : null }, c.label))));
  const tbody = h("tbody");
  for (const row of rows) tbody.appendChild(row);
  return h("table", { class: ["grid", opts.class] }, thead, tbody);
}
