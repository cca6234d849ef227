// Executions list: live status, filters kept in the URL, keyset pagination.

import { api, every, showError } from "./api.js";
import { badge, empty, fill, fmtDur, fmtTime, h, pageHeader, pill, shortId, STATUSES, timeCell } from "./dom.js";
import { replaceQuery } from "./route.js";

const PAGE_SIZE = 50;
const RANGES = [
  ["", "Any time"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Custom range…"],
];
const RANGE_MS = { "15m": 900_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 };

function toLocalInput(ms) {
  if (!ms) return "";
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function fromLocalInput(text) {
  if (!text) return null;
  const ms = new Date(text).getTime();
  return Number.isNaN(ms) ? null : ms;
}

/** Filters from the hash query (so that Back and shared links keep them). */
function readFilters(query) {
  return {
    workflow: query.get("workflow") || "",
    status: (query.get("status") || "").split(",").filter((x) => STATUSES.includes(x)),
    range: query.get("range") || "",
    after: Number(query.get("after")) || null,
    before: Number(query.get("before")) || null,
    q: query.get("q") || "",
    top: query.get("top") !== "0",
  };
}

export function duration(e, now = Date.now()) {
  if (!e.started_at) return null;
  return (e.completed_at || now) - e.started_at;
}

export function mount(root, { query }) {
  const f = readFilters(query);
  const cursors = [null]; // cursor of each page seen; the last is the current one
  let nextCursor = null;
  let lastJson = "";
  let kinds = {};
  let controller = null;

  const saveFilters = () =>
    replaceQuery({
      workflow: f.workflow,
      status: f.status,
      range: f.range,
      after: f.range === "custom" ? f.after : null,
      before: f.range === "custom" ? f.before : null,
      q: f.q,
      top: f.top ? null : "0",
    });

  const params = () => {
    const p = {
      workflow_id: f.workflow || null,
      status: f.status,
      q: f.q.trim() || null,
      top_level: f.top ? "true" : null,
      limit: PAGE_SIZE,
      cursor: cursors[cursors.length - 1],
    };
    if (f.range === "custom") {
      p.created_after = f.after;
      p.created_before = f.before;
    } else if (RANGE_MS[f.range]) {
      p.created_after = Date.now() - RANGE_MS[f.range];
    }
    return p;
  };

  // ---------------------------------------------------------------- filter bar
  const workflowSelect = h("select", { id: "f-workflow", "aria-label": "Workflow or agent", onchange: (ev) => changed({ workflow: ev.target.value }) }, h("option", { value: "" }, "All workflows & agents"));
  if (f.workflow) workflowSelect.appendChild(h("option", { value: f.workflow, selected: true }, f.workflow));

  const statusChips = h(
    "div",
    { class: "chips", role: "group", "aria-label": "Status" },
    STATUSES.map((st) =>
      h(
        "button",
        {
          class: ["chip", `chip-${st}`, f.status.includes(st) && "on"],
          dataset: { status: st },
          "aria-pressed": String(f.status.includes(st)),
          onclick: (ev) => {
            const on = !f.status.includes(st);
            f.status = on ? [...f.status, st] : f.status.filter((x) => x !== st);
            ev.currentTarget.classList.toggle("on", on);
            ev.currentTarget.setAttribute("aria-pressed", String(on));
            changed({});
          },
        },
        h("span", { class: `dot st-${st}` }),
        st,
      ),
    ),
  );

  const afterInput = h("input", { type: "datetime-local", id: "f-after", value: toLocalInput(f.after), onchange: (ev) => changed({ after: fromLocalInput(ev.target.value) }) });
  const beforeInput = h("input", { type: "datetime-local", id: "f-before", value: toLocalInput(f.before), onchange: (ev) => changed({ before: fromLocalInput(ev.target.value) }) });
  const customRange = h("span", { class: "custom-range", hidden: f.range !== "custom" }, h("label", null, "after ", afterInput), h("label", null, "before ", beforeInput));
  const rangeSelect = h(
    "select",
    {
      id: "f-range",
      "aria-label": "Created",
      onchange: (ev) => {
        customRange.hidden = ev.target.value !== "custom";
        changed({ range: ev.target.value });
      },
    },
    RANGES.map(([v, label]) => h("option", { value: v, selected: v === f.range }, label)),
  );

  let searchTimer = null;
  const search = h("input", {
    type: "search",
    id: "f-q",
    placeholder: "Search by execution id or prefix",
    value: f.q,
    oninput: (ev) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => changed({ q: ev.target.value }), 250);
    },
  });
  const topToggle = h("label", { class: "toggle" }, h("input", { type: "checkbox", id: "f-top", checked: f.top, onchange: (ev) => changed({ top: ev.target.checked }) }), "Top-level only");

  const clearBtn = h(
    "button",
    {
      class: "btn-link",
      onclick: () => {
        location.hash = "#/executions";
      },
    },
    "Clear filters",
  );

  // ---------------------------------------------------------------- table
  const tbody = h("tbody", { id: "exec-rows" });
  const status = h("div", { class: "list-status" });
  const newerBtn = h("button", { class: "btn", id: "page-newer", disabled: true, onclick: () => page(-1) }, "← Newer");
  const nextBtn = h("button", { class: "btn", id: "page-next", disabled: true, onclick: () => page(1) }, "Next →");
  const pageLabel = h("span", { class: "muted" });
  const live = h("span", { class: "live", title: "Refreshes every 2 s" }, h("span", { class: "live-dot" }), "live");

  root.append(
    pageHeader("Executions", "Every run of a workflow or agent, newest first.", live),
    h("div", { class: "filters" }, h("div", { class: "filter-row" }, search, workflowSelect, rangeSelect, customRange, topToggle, clearBtn), statusChips),
    h(
      "div",
      { class: "card flush" },
      h(
        "table",
        { class: "grid executions" },
        h(
          "thead",
          null,
          h("tr", null, h("th", { style: { width: "150px" } }, "Execution"), h("th", null, "Workflow"), h("th", { style: { width: "110px" } }, "Status"), h("th", { class: "num", style: { width: "70px" } }, "Attempt"), h("th", { style: { width: "170px" } }, "Created"), h("th", { class: "num", style: { width: "100px" } }, "Duration"), h("th", { style: { width: "120px" } }, "Flags")),
        ),
        tbody,
      ),
    ),
    h("div", { class: "pager" }, status, h("div", { class: "pager-buttons" }, pageLabel, newerBtn, nextBtn)),
  );

  function changed(delta) {
    Object.assign(f, delta);
    saveFilters();
    cursors.length = 1;
    cursors[0] = null;
    lastJson = "";
    load();
  }

  function page(direction) {
    if (direction > 0 && nextCursor) cursors.push(nextCursor);
    else if (direction < 0 && cursors.length > 1) cursors.pop();
    lastJson = "";
    load();
    window.scrollTo(0, 0);
  }

  function row(e, now) {
    const href = `#/executions/${encodeURIComponent(e.id)}`;
    const kind = kinds[e.workflow_id];
    const flags = [];
    if (e.code_changed) flags.push(pill("code changed", "warn", "A later attempt replayed this execution under different workflow code"));
    if (e.parent_id) flags.push(pill("child", "muted", `Started by ${e.parent_id}`));
    if (e.cancelled_by) flags.push(pill("by " + e.cancelled_by.split(":")[0], "muted", `Cancelled by ${e.cancelled_by}`));
    const tr = h(
      "tr",
      { class: "clickable", dataset: { id: e.id, status: e.status }, onclick: (ev) => {
        if (ev.target.closest("a")) return;
        location.hash = href;
      } },
      h("td", { class: "mono" }, h("a", { href, title: e.id }, shortId(e.id))),
      h("td", null, h("span", { class: "wf" }, e.workflow_id), kind === "agent" ? pill("agent", "agent") : null),
      h("td", null, badge(e.status)),
      h("td", { class: "num" }, String(e.attempt), e.failed_attempts + e.crashed_attempts > 0 ? h("span", { class: "muted", title: `${e.failed_attempts} failed, ${e.crashed_attempts} crashed` }, " ⟳") : null),
      h("td", { title: fmtTime(e.created_at) }, timeCell(e.created_at)),
      h("td", { class: "num mono" }, fmtDur(duration(e, now))),
      h("td", null, flags),
    );
    return tr;
  }

  async function load() {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    try {
      const data = await api("/executions", { params: params(), signal: mine.signal });
      if (mine !== controller) return;
      nextCursor = data.next_cursor;
      const json = JSON.stringify(data);
      newerBtn.disabled = cursors.length <= 1;
      nextBtn.disabled = !nextCursor;
      pageLabel.textContent = cursors.length > 1 ? `page ${cursors.length}` : "";
      const now = Date.now();
      if (json === lastJson) {
        // Same rows: only the running durations and relative times move.
        for (const tr of tbody.children) {
          const e = data.items.find((x) => x.id === tr.dataset.id);
          if (e && !e.completed_at) tr.children[5].textContent = fmtDur(duration(e, now));
        }
        return;
      }
      lastJson = json;
      if (data.items.length === 0) {
        fill(tbody, h("tr", null, h("td", { colspan: 7 }, empty(f.q || f.workflow || f.status.length || f.range ? "No execution matches these filters." : "No executions yet. Start one with `polos run` or the client."))));
      } else {
        const frag = document.createDocumentFragment();
        for (const e of data.items) frag.appendChild(row(e, now));
        fill(tbody, frag);
      }
      status.textContent = `${data.items.length} shown${nextCursor ? ", more on the next page" : ""} · updated ${fmtTime(now)}`;
      status.classList.remove("error");
    } catch (e) {
      if (e.name === "AbortError") return;
      status.textContent = e.message;
      status.classList.add("error");
      if (lastJson === "") showError(e);
    }
  }

  async function loadWorkflows() {
    try {
      const wf = await api("/workflows");
      kinds = Object.fromEntries(wf.items.map((w) => [w.id, w.kind]));
      const opts = [h("option", { value: "" }, "All workflows & agents")];
      const ids = wf.items.map((w) => w.id);
      if (f.workflow && !ids.includes(f.workflow)) ids.unshift(f.workflow);
      for (const id of ids) opts.push(h("option", { value: id, selected: id === f.workflow }, kinds[id] === "agent" ? `${id} (agent)` : id));
      fill(workflowSelect, ...opts);
      lastJson = "";
      load();
    } catch (e) {
      /* the filter keeps its free entry */
    }
  }

  loadWorkflows();
  load();
  const stop = every(2000, load);
  return () => {
    stop();
    clearTimeout(searchTimer);
    if (controller) controller.abort();
  };
}
