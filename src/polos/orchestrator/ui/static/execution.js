// One execution: header and actions, timeline of steps, conversation (agents),
// payload and result, attempts and audit trail, and a side panel for one step.

import { api, every, showError, toast, user } from "./api.js";
import { conversation, isAgentRun } from "./conversation.js";
import { badge, copyButton, empty, errorBox, fields, fill, fmtDur, fmtTime, h, jsonView, pill, shortId } from "./dom.js";
import { replaceQuery } from "./route.js";
import { KIND_LABELS, stepKind, timeline } from "./timeline.js";

const TABS = [
  ["timeline", "Timeline"],
  ["conversation", "Conversation"],
  ["io", "Payload & result"],
  ["audit", "Attempts & audit"],
];
const WAIT_KINDS = new Set(["suspend", "wait_event", "sleep", "invoke_wait", "acquire"]);

let workflowKinds = null; // cached for the session: id -> kind

async function kindOf(workflowId) {
  if (!workflowKinds) {
    try {
      const wf = await api("/workflows");
      workflowKinds = Object.fromEntries(wf.items.map((w) => [w.id, w.kind]));
    } catch (e) {
      return null;
    }
  }
  return workflowKinds[workflowId] || null;
}

function link(id, text) {
  if (!id) return null;
  return h("a", { href: `#/executions/${encodeURIComponent(id)}`, class: "mono", title: id }, text || shortId(id));
}

/** Who resumed a suspend step, when, with what comment (the step's recorded output). */
function resumeInfo(step) {
  const out = step.output;
  if (!out || typeof out !== "object" || Array.isArray(out)) return null;
  if (!("resumed_at" in out) && !("resumed_by" in out) && !("data" in out)) return null;
  return { data: out.data, at: out.resumed_at || step.completed_at, by: out.resumed_by || null, comment: out.comment || null };
}

function auditEntries(x, steps) {
  const entries = [{ at: x.created_at, what: "created", detail: x.trigger_event ? "by an event" : x.parent_id ? `by parent ${shortId(x.parent_id)}` : "" }];
  for (const a of x.attempts || []) entries.push({ at: a.ended_at, what: `attempt ${a.attempt} ${a.outcome}`, detail: a.error ? `${a.error.type}: ${a.error.message}` : a.worker_id ? `on ${a.worker_id}` : "" });
  for (const s of steps) {
    if (s.kind !== "suspend" || !s.completed_at) continue;
    const r = resumeInfo(s);
    const data = r ? r.data : s.output;
    const approved = data && typeof data === "object" && "approved" in data ? (data.approved ? "approved" : "rejected") : "resumed";
    entries.push({ at: r && r.at ? r.at : s.completed_at, what: `${s.key} ${approved}`, who: r && r.by, detail: r && r.comment ? `“${r.comment}”` : "", data, key: s.key, kind: "resume" });
  }
  if (x.cancelled_by) entries.push({ at: x.completed_at, what: "cancelled", who: x.cancelled_by.split(":")[0], detail: x.cancelled_by.includes(":") ? x.cancelled_by.slice(x.cancelled_by.indexOf(":") + 1).trim() : "" });
  else if (x.completed_at) entries.push({ at: x.completed_at, what: x.status, detail: x.error ? x.error.message : "" });
  return entries.sort((a, b) => (a.at || 0) - (b.at || 0));
}

function auditList(entries) {
  return h(
    "ol",
    { class: "audit", id: "audit" },
    entries.map((e) =>
      h(
        "li",
        { class: ["audit-item", e.kind && `audit-${e.kind}`], dataset: { key: e.key || "" } },
        h("span", { class: "audit-time" }, fmtTime(e.at)),
        h("span", { class: "audit-what" }, e.what),
        e.who ? h("span", { class: "audit-who" }, "by ", h("strong", null, e.who)) : null,
        e.detail ? h("span", { class: "audit-detail" }, e.detail) : null,
      ),
    ),
  );
}

export function mount(root, { params, query }) {
  const id = params.id;
  const state = { tab: query.get("tab") || "timeline", selected: query.get("step") || null, x: null, steps: [], children: [], waits: [], kind: null };
  let lastJson = "";
  let cancelOpen = false;
  let stopped = false;

  const headerBox = h("div");
  const tabsBox = h("div", { class: "tabs", role: "tablist" });
  const contentBox = h("div", { class: "tab-content" });
  const panelBox = h("aside", { class: "panel", hidden: true, id: "step-panel" });
  const body = h("div", { class: "exec-body" }, h("div", { class: "exec-main" }, contentBox), panelBox);
  root.append(headerBox, tabsBox, body);
  root.appendChild(h("div", { class: "loading" }, "Loading…"));

  const save = () => replaceQuery({ tab: state.tab === "timeline" ? null : state.tab, step: state.selected });

  function select(step) {
    state.selected = state.selected === step.key ? null : step.key;
    save();
    renderContent();
    renderPanel();
  }

  // -------------------------------------------------------------- header
  function renderHeader() {
    const x = state.x;
    const terminal = ["completed", "failed", "cancelled"].includes(x.status);
    const actions = [];
    if (!terminal) actions.push(h("button", { class: "btn danger", id: "cancel-btn", onclick: () => ((cancelOpen = !cancelOpen), renderHeader()) }, "Cancel…"));
    if (x.status === "failed" || x.status === "cancelled") actions.push(h("button", { class: "btn primary", id: "retry-btn", onclick: retry }, "Retry"));
    const agent = isAgentRun(state.kind, state.steps);
    const title = h("span", { class: "title-line" }, h("span", null, x.workflow_id), badge(x.status), agent ? pill("agent", "agent") : null, x.code_changed ? pill("replayed under changed code", "warn", "A later attempt ran under different workflow code than the first (code fingerprint changed)") : null);
    const now = Date.now();
    const dur = x.started_at ? (x.completed_at || now) - x.started_at : null;
    const summary = fields(
      [
        ["Execution", h("span", null, h("span", { class: "mono" }, x.id), " ", copyButton(x.id))],
        ["Created", fmtTime(x.created_at)],
        ["Started", x.started_at ? `${fmtTime(x.started_at)} (queued ${fmtDur(x.started_at - x.created_at)})` : "not yet"],
        ["Completed", x.completed_at ? fmtTime(x.completed_at) : "—"],
        ["Duration", fmtDur(dur)],
        ["Attempt", `${x.attempt}${x.failed_attempts || x.crashed_attempts ? ` (${x.failed_attempts} failed, ${x.crashed_attempts} crashed)` : ""}`],
        ["Worker", x.worker_id || "—"],
        ["Queue", x.queue ? `${x.queue}${x.concurrency_key ? ` / ${x.concurrency_key}` : ""}` : null],
        ["Parent", x.parent_id ? h("span", null, link(x.parent_id), x.parent_step_key ? ` at ${x.parent_step_key}` : "") : null],
        ["Root", x.root_id && x.root_id !== x.id && x.root_id !== x.parent_id ? link(x.root_id) : null],
        ["Cancelled by", x.cancelled_by],
        ["Idempotency key", x.idempotency_key],
        ["Timeout", x.deadline_at ? `at ${fmtTime(x.deadline_at)}` : x.run_timeout_ms ? fmtDur(x.run_timeout_ms) : null],
        ["Code", x.code_fingerprint ? h("span", { class: "mono" }, x.code_fingerprint) : null],
      ],
      "summary",
    );
    const cancelForm = cancelOpen && !terminal ? cancelBox() : null;
    const resumes = auditEntries(x, state.steps).filter((e) => e.kind === "resume" || e.what === "cancelled");
    fill(headerBox, 
      h("div", { class: "crumbs" }, h("a", { href: "#/executions" }, "Executions"), " / ", h("span", { class: "mono" }, shortId(x.id))),
      h("div", { class: "page-header" }, h("div", null, h("h1", null, title)), h("div", { class: "actions" }, actions)),
      cancelForm,
      x.error ? errorBox(x.error) : null,
      h("div", { class: "card" }, summary),
      resumes.length ? h("div", { class: "card audit-card" }, h("div", { class: "card-title" }, "Audit trail"), auditList(resumes)) : null,
    );
  }

  function cancelBox() {
    const reason = h("input", { id: "cancel-reason", placeholder: "Reason (recorded)", maxlength: 1000 });
    const box = h(
      "div",
      { class: "confirm-box" },
      h("span", null, "Cancel this execution and its unfinished children?"),
      reason,
      h(
        "button",
        {
          class: "btn danger",
          id: "cancel-confirm",
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              state.x = await api(`/executions/${encodeURIComponent(id)}/cancel`, { method: "POST", body: { reason: reason.value.trim() || null, by: user() } });
              cancelOpen = false;
              toast("Execution cancelled", "ok");
              lastJson = "";
              await load();
            } catch (e) {
              ev.target.disabled = false;
              showError(e);
            }
          },
        },
        "Cancel execution",
      ),
      h("button", { class: "btn", onclick: () => ((cancelOpen = false), renderHeader()) }, "Keep running"),
    );
    setTimeout(() => reason.focus(), 0);
    return box;
  }

  async function retry(ev) {
    ev.target.disabled = true;
    try {
      await api(`/executions/${encodeURIComponent(id)}/retry`, { method: "POST", body: { by: user() } });
      toast("Execution queued again: it goes on from where it stopped", "ok");
      lastJson = "";
      await load();
    } catch (e) {
      ev.target.disabled = false;
      showError(e);
    }
  }

  // -------------------------------------------------------------- tabs
  function renderTabs() {
    const agent = isAgentRun(state.kind, state.steps);
    const tabs = TABS.filter(([k]) => k !== "conversation" || agent);
    if (!tabs.some(([k]) => k === state.tab)) state.tab = "timeline";
    fill(tabsBox, 
      ...tabs.map(([k, label]) =>
        h(
          "button",
          {
            class: ["tab", state.tab === k && "active"],
            role: "tab",
            "aria-selected": String(state.tab === k),
            dataset: { tab: k },
            onclick: () => {
              state.tab = k;
              save();
              renderTabs();
              renderContent();
            },
          },
          label,
          k === "timeline" ? h("span", { class: "tab-count" }, String(state.steps.length)) : null,
        ),
      ),
    );
  }

  function renderContent() {
    const x = state.x;
    let node;
    if (state.tab === "conversation") node = conversation(x, state.steps);
    else if (state.tab === "io") node = ioTab(x);
    else if (state.tab === "audit") node = auditTab(x);
    else if (!state.steps.length && !state.children.length && !state.waits.length) node = h("div", null, timeline(x, [], [], [], { onSelect: select }), empty(x.status === "queued" ? "Queued: no step has run yet." : "No step recorded."));
    else node = timeline(x, state.steps, state.children, state.waits, { selected: state.selected, onSelect: select });
    fill(contentBox, node);
  }

  function ioTab(x) {
    return h(
      "div",
      { class: "io" },
      h("div", { class: "card" }, h("div", { class: "card-title" }, "Payload"), jsonView(x.payload)),
      h("div", { class: "card" }, h("div", { class: "card-title" }, "Result"), x.status === "completed" ? jsonView(x.result) : h("div", { class: "muted" }, `none (${x.status})`)),
      x.error ? h("div", { class: "card" }, h("div", { class: "card-title" }, "Error"), errorBox(x.error)) : null,
      x.state !== null && x.state !== undefined ? h("div", { class: "card" }, h("div", { class: "card-title" }, "State"), jsonView(x.state)) : null,
      x.trigger_event ? h("div", { class: "card" }, h("div", { class: "card-title" }, "Trigger event"), jsonView(x.trigger_event)) : null,
    );
  }

  function auditTab(x) {
    const attempts = x.attempts || [];
    return h(
      "div",
      null,
      h(
        "div",
        { class: "card flush" },
        h("div", { class: "card-title pad" }, "Attempts that did not succeed"),
        attempts.length
          ? h("table", { class: "grid" }, h("thead", null, h("tr", null, h("th", null, "attempt"), h("th", null, "outcome"), h("th", null, "worker"), h("th", null, "ended"), h("th", null, "error"))), h("tbody", null, attempts.map((a) => h("tr", null, h("td", { class: "num" }, String(a.attempt)), h("td", null, pill(a.outcome, a.outcome === "failed" || a.outcome === "crashed" ? "bad" : "muted")), h("td", { class: "mono" }, a.worker_id || "—"), h("td", null, fmtTime(a.ended_at)), h("td", null, a.error ? `${a.error.type}: ${a.error.message}` : "—")))))
          : empty(`None: ${x.attempt} attempt${x.attempt === 1 ? "" : "s"} in all.`),
      ),
      h("div", { class: "card" }, h("div", { class: "card-title" }, "Audit trail"), auditList(auditEntries(x, state.steps))),
    );
  }

  // -------------------------------------------------------------- step panel
  function toolArguments(step) {
    const callId = step.key.split("#")[0].split(":").slice(2).join(":");
    for (const s of state.steps) {
      if (s.kind !== "llm" || !s.output) continue;
      for (const c of s.output.tool_calls || []) if (c.id === callId) return c.arguments;
    }
    return undefined;
  }

  function renderPanel() {
    const step = state.steps.find((s) => s.key === state.selected);
    if (!step) {
      panelBox.hidden = true;
      body.classList.remove("with-panel");
      return;
    }
    body.classList.add("with-panel");
    panelBox.hidden = false;
    const kind = stepKind(step);
    const dur = step.started_at && step.completed_at ? step.completed_at - step.started_at : null;
    const resumed = step.kind === "suspend" ? resumeInfo(step) : null;
    const sections = [];
    if (step.kind === "tool") {
      const args = toolArguments(step);
      if (args !== undefined) sections.push(h("div", { class: "panel-section" }, h("h3", null, "Input (arguments)"), jsonView(args)));
    }
    if (resumed) {
      sections.push(
        h(
          "div",
          { class: "panel-section", id: "panel-resume" },
          h("h3", null, "Decision"),
          fields([
            ["Resumed by", resumed.by || "—"],
            ["At", fmtTime(resumed.at)],
            ["Comment", resumed.comment || "—"],
          ]),
          jsonView(resumed.data),
        ),
      );
    }
    if (step.error) sections.push(h("div", { class: "panel-section" }, h("h3", null, "Error"), errorBox(step.error)));
    sections.push(h("div", { class: "panel-section" }, h("h3", null, "Output", step.output_type ? h("span", { class: "muted mono small" }, ` ${step.output_type}`) : null), step.completed_at || step.output !== null ? jsonView(step.output, { class: "panel-json", raw: false }) : h("div", { class: "muted" }, "not finished")));
    if (step.has_state) sections.push(h("div", { class: "panel-section" }, h("h3", null, "State after the step"), jsonView(step.state)));
    fill(panelBox, 
      h("div", { class: "panel-head" }, h("span", { class: ["kind", `k-${kind}`] }, KIND_LABELS[kind] || kind), h("strong", { class: "mono panel-key" }, step.key), h("button", { class: "btn-link close", title: "Close", "aria-label": "Close", onclick: () => select(step) }, "×")),
      fields([
        ["Status", step.error ? pill("failed", "bad") : step.completed_at ? pill("completed", "ok") : WAIT_KINDS.has(step.kind) ? pill("waiting", "muted") : pill("running", "muted")],
        ["Sequence", String(step.seq)],
        ["Started", step.started_at ? fmtTime(step.started_at) : "—"],
        ["Completed", step.completed_at ? fmtTime(step.completed_at) : "—"],
        ["Duration", h("span", { id: "panel-duration" }, fmtDur(dur))],
        ["Attempts", String(step.attempts)],
        ["Idempotency key", h("span", { class: "mono small" }, `${state.x.id}:${step.key}`)],
      ]),
      sections,
    );
  }

  // -------------------------------------------------------------- data
  async function load() {
    try {
      const [x, steps, children] = await Promise.all([
        api(`/executions/${encodeURIComponent(id)}`),
        api(`/executions/${encodeURIComponent(id)}/steps`),
        api("/executions", { params: { parent_id: id, limit: 500 } }).catch(() => ({ items: [] })),
      ]);
      if (stopped) return;
      let waits = [];
      if (x.status === "waiting") {
        try {
          const page = await api("/waits", { params: { workflow_id: x.workflow_id, limit: 500 } });
          waits = page.items.filter((w) => w.execution_id === id);
        } catch (e) {
          waits = [];
        }
      }
      if (state.kind === null) state.kind = await kindOf(x.workflow_id);
      const json = JSON.stringify([x, steps.items, children.items, waits]);
      const running = !["completed", "failed", "cancelled"].includes(x.status);
      if (json === lastJson && !running) return;
      const changed = json !== lastJson;
      lastJson = json;
      Object.assign(state, { x, steps: steps.items.slice().sort((a, b) => a.seq - b.seq), children: children.items.slice().sort((a, b) => a.created_at - b.created_at), waits });
      root.querySelector(".loading")?.remove();
      if (!cancelOpen) renderHeader();
      renderTabs();
      // While it runs, bars grow with time; otherwise only redraw on change.
      if (changed || state.tab === "timeline") renderContent();
      if (changed) renderPanel();
    } catch (e) {
      if (e.status === 404) {
        fill(root, h("div", { class: "crumbs" }, h("a", { href: "#/executions" }, "Executions")), empty(e.message));
        stopped = true;
        return;
      }
      showError(e);
    }
  }

  load();
  const stop = every(2000, async () => {
    if (stopped || !state.x) return;
    if (["completed", "failed", "cancelled"].includes(state.x.status)) {
      // Finished: look again now and then (a retry makes it run again).
      if (Date.now() % 10_000 >= 2000) return;
    }
    await load();
  });
  return () => {
    stopped = true;
    stop();
  };
}
