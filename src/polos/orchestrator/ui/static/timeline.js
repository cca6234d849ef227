// The Gantt timeline of one execution: its steps, child executions and open waits as bars.

import { badge, fmtDur, h } from "./dom.js";

export const KIND_LABELS = {
  run: "run",
  llm: "llm",
  tool: "tool",
  suspend: "suspend",
  sleep: "sleep",
  wait_event: "wait event",
  invoke: "invoke",
  invoke_wait: "invoke+wait",
  publish: "publish",
  acquire: "acquire",
  uuid: "uuid",
  now: "now",
  random: "random",
  guardrail: "guardrail",
  hook: "hook",
  memory: "memory",
  child: "child",
  wait: "waiting",
};

/** What a step is, for colour and label: the recorded kind, or the agent's role of a run step. */
export function stepKind(step) {
  if (step.key.startsWith("guardrail:")) return "guardrail";
  if (step.key.startsWith("hook:")) return "hook";
  if (step.key.startsWith("memory:")) return "memory";
  return step.kind;
}

function niceStep(span) {
  const target = span / 6;
  const steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000];
  return steps.find((x) => x >= target) || Math.ceil(target / 86_400_000) * 86_400_000;
}

function tickLabel(ms) {
  if (ms === 0) return "0";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(2)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  if (ms < 86_400_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  return `${+(ms / 86_400_000).toFixed(1)} d`;
}

/**
 * Build the timeline.
 * @param {object} x execution
 * @param {object[]} steps step records
 * @param {object[]} children child executions
 * @param {object[]} waits open waits of this execution
 * @param {object} opts {selected, onSelect(step), now}
 */
export function timeline(x, steps, children, waits, opts) {
  const now = opts.now || Date.now();
  const t0 = x.created_at;
  let t1 = x.completed_at || now;
  for (const st of steps) t1 = Math.max(t1, st.completed_at || st.started_at || 0);
  for (const c of children) t1 = Math.max(t1, c.completed_at || now);
  const span = Math.max(t1 - t0, 1);
  const pct = (t) => `${(((t - t0) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `${(((b - a) / span) * 100).toFixed(3)}%`;

  const tickStep = niceStep(span);
  const ticks = [];
  for (let t = 0; t <= span + 1; t += tickStep) ticks.push(t);
  const axis = h(
    "div",
    { class: "g-row g-axis" },
    h("div", { class: "g-label" }, h("span", { class: "muted" }, `${steps.length} step${steps.length === 1 ? "" : "s"}${children.length ? `, ${children.length} child${children.length === 1 ? "" : "ren"}` : ""}`)),
    h(
      "div",
      { class: "g-track" },
      ticks.map((t) => h("span", { class: "g-tick", style: { left: `${((t / span) * 100).toFixed(3)}%` } }, tickLabel(t))),
    ),
    h("div", { class: "g-dur" }, "duration"),
  );

  const gridLines = () => h("div", { class: "g-grid" }, ticks.map((t) => h("span", { style: { left: `${((t / span) * 100).toFixed(3)}%` } })));

  const rows = [axis];
  // The execution itself: queued until started, then run (attempt ends marked).
  const started = x.started_at || null;
  const end = x.completed_at || now;
  const execTrack = h("div", { class: "g-track" }, gridLines());
  if (started && started > t0) execTrack.appendChild(h("div", { class: "g-bar k-queued", style: { left: pct(t0), width: width(t0, started) }, title: `queued ${fmtDur(started - t0)}` }));
  execTrack.appendChild(h("div", { class: ["g-bar", `k-exec`, `st-${x.status}`, !x.completed_at && "open"], style: { left: pct(started || t0), width: width(started || t0, end) }, title: `${x.status}` }));
  for (const a of x.attempts || []) {
    execTrack.appendChild(h("div", { class: ["g-mark", `o-${a.outcome}`], style: { left: pct(a.ended_at) }, title: `attempt ${a.attempt} ${a.outcome}${a.error ? `: ${a.error.message}` : ""}` }));
  }
  rows.push(h("div", { class: "g-row g-exec" }, h("div", { class: "g-label" }, h("span", { class: "kind k-exec" }, "execution"), h("span", { class: "g-key" }, x.workflow_id), badge(x.status, "small")), execTrack, h("div", { class: "g-dur" }, fmtDur((x.completed_at || now) - t0))));

  const byParentStep = new Map();
  for (const c of children) {
    const key = c.parent_step_key || "";
    if (!byParentStep.has(key)) byParentStep.set(key, []);
    byParentStep.get(key).push(c);
  }

  const childRow = (c) => {
    const cEnd = c.completed_at || now;
    const cStart = c.started_at || c.created_at;
    const href = `#/executions/${encodeURIComponent(c.id)}`;
    return h(
      "a",
      { class: "g-row g-child", href, dataset: { child: c.id } },
      h("div", { class: "g-label" }, h("span", { class: "g-indent" }, "↳"), h("span", { class: "kind k-child" }, "child"), h("span", { class: "g-key" }, c.workflow_id), badge(c.status, "small")),
      h(
        "div",
        { class: "g-track" },
        gridLines(),
        c.started_at && c.started_at > c.created_at ? h("div", { class: "g-bar k-queued", style: { left: pct(c.created_at), width: width(c.created_at, c.started_at) } }) : null,
        h("div", { class: ["g-bar", "k-child", `st-${c.status}`, !c.completed_at && "open"], style: { left: pct(cStart), width: width(cStart, cEnd) }, title: `${c.workflow_id} ${c.status}` }),
      ),
      h("div", { class: "g-dur" }, fmtDur(c.started_at ? cEnd - c.started_at : null)),
    );
  };

  const frag = document.createDocumentFragment();
  for (const r of rows) frag.appendChild(r);
  for (const st of steps) {
    const kind = stepKind(st);
    const start = st.started_at || st.completed_at || t0;
    const stop = st.completed_at || now;
    const selected = opts.selected === st.key;
    const failed = !!st.error;
    const instant = st.completed_at && st.started_at && st.completed_at - st.started_at < 1;
    frag.appendChild(
      h(
        "div",
        {
          class: ["g-row", "g-step", selected && "selected"],
          dataset: { key: st.key, kind },
          tabindex: "0",
          role: "button",
          onclick: () => opts.onSelect(st),
          onkeydown: (ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              opts.onSelect(st);
            }
          },
        },
        h("div", { class: "g-label", title: st.key }, h("span", { class: ["kind", `k-${kind}`] }, KIND_LABELS[kind] || kind), h("span", { class: "g-key" }, st.key), st.attempts > 1 ? h("span", { class: "g-attempts", title: `${st.attempts} attempts` }, `×${st.attempts}`) : null, failed ? h("span", { class: "g-err", title: st.error.message }, "error") : null),
        h("div", { class: "g-track" }, gridLines(), h("div", { class: ["g-bar", `k-${kind}`, failed && "failed", !st.completed_at && "open", instant && "instant"], style: { left: pct(start), width: width(start, stop) }, title: `${st.key}: ${fmtDur(stop - start)}` })),
        h("div", { class: "g-dur" }, st.completed_at ? fmtDur(st.completed_at - start) : "running"),
      ),
    );
    for (const c of byParentStep.get(st.key) || []) frag.appendChild(childRow(c));
    byParentStep.delete(st.key);
  }
  for (const list of byParentStep.values()) for (const c of list) frag.appendChild(childRow(c));
  for (const w of waits) {
    const kind = { suspend: "suspend", event: "wait_event", sleep: "sleep", child: "invoke_wait", acquire: "acquire" }[w.kind] || "wait";
    const what = w.kind === "suspend" ? "waiting for a human" : w.kind === "event" ? `waiting for an event on ${w.topic}` : w.kind === "sleep" ? "sleeping" : w.kind === "child" ? `waiting for ${w.pending_children ?? "?"} child(ren)` : `waiting (${w.kind})`;
    frag.appendChild(
      h(
        "div",
        { class: "g-row g-wait", dataset: { wait: w.step_key } },
        h("div", { class: "g-label", title: what }, h("span", { class: ["kind", `k-${kind}`] }, KIND_LABELS[kind] || kind), h("span", { class: "g-key" }, w.step_key), h("span", { class: "g-open" }, "open")),
        h(
          "div",
          { class: "g-track" },
          gridLines(),
          h("div", { class: ["g-bar", `k-${kind}`, "open", "waiting"], style: { left: pct(w.created_at), width: width(w.created_at, now) }, title: what }),
          w.expires_at && w.expires_at <= t1 ? h("div", { class: "g-mark o-deadline", style: { left: pct(w.expires_at) }, title: "times out here" }) : null,
        ),
        h("div", { class: "g-dur" }, fmtDur(now - w.created_at)),
      ),
    );
  }
  const legendKinds = ["run", "llm", "tool", "guardrail", "suspend", "sleep", "wait_event", "invoke_wait", "child", "publish"];
  const legend = h("div", { class: "legend" }, legendKinds.map((k) => h("span", { class: "legend-item" }, h("span", { class: ["swatch", `k-${k}`] }), KIND_LABELS[k])));
  return h("div", { class: "gantt-wrap" }, legend, h("div", { class: "gantt", role: "list" }, frag));
}
