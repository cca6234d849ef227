// Workflows & agents, workers, queues and schedules: live tables over the API.

import { api, every, showError, toast } from "./api.js";
import { compact, empty, fill, fmtDur, fmtNum, fmtRel, fmtTime, h, pageHeader, pill, timeCell } from "./dom.js";

/** A page that reloads `load()` every few seconds and redraws only when the data changed. */
function livePage(root, header, load, render, ms = 3000) {
  const box = h("div");
  const status = h("div", { class: "list-status" });
  root.append(header, box, status);
  let last = "";
  const refresh = async (force) => {
    try {
      const data = await load();
      const json = JSON.stringify(data);
      if (json !== last || force === true) {
        last = json;
        fill(box, render(data, () => refresh(true)));
      }
      status.textContent = `updated ${fmtTime(Date.now())}`;
      status.classList.remove("error");
    } catch (e) {
      status.textContent = e.message;
      status.classList.add("error");
      if (!last) fill(box, empty(e.message));
    }
  };
  refresh();
  return every(ms, refresh);
}

function grid(head, rows, id) {
  return h(
    "div",
    { class: "card flush" },
    h("table", { class: "grid", id }, h("thead", null, h("tr", null, head.map((c) => (typeof c === "string" ? h("th", null, c) : h("th", { class: c.cls }, c.label))))), h("tbody", null, rows)),
  );
}

function optionsSummary(o) {
  const out = [];
  if (!o) return out;
  if (o.queue) out.push(pill(`queue ${typeof o.queue === "string" ? o.queue : o.queue.name || "?"}`, "muted", compact(o.queue)));
  if (o.trigger_on_event) out.push(pill(`on ${o.trigger_on_event}`, "event", "Started by each event on this topic"));
  if (o.schedule) out.push(pill(`cron ${o.schedule.cron || compact(o.schedule, 40)}`, "muted", compact(o.schedule)));
  if (o.batch_size) out.push(pill(`batch ${o.batch_size}`, "muted"));
  if (o.timeout_seconds) out.push(pill(`timeout ${fmtDur(o.timeout_seconds * 1000)}`, "muted"));
  if (o.agent) {
    const a = o.agent;
    if (a.model) out.push(pill(`${a.provider ? `${a.provider}/` : ""}${a.model}`, "agent"));
    if (Array.isArray(a.tools) && a.tools.length) out.push(h("span", { class: "muted small" }, `tools: ${a.tools.join(", ")}`));
  }
  return out;
}

export const workflows = {
  mount(root) {
    return livePage(
      root,
      pageHeader("Workflows & agents", "Everything a worker of this project registered, with the workers serving it now."),
      async () => {
        const [wf, workers] = await Promise.all([api("/workflows"), api("/workers")]);
        return { wf: wf.items, workers: workers.items };
      },
      ({ wf, workers }) => {
        if (!wf.length) return empty("No workflow registered yet: start a worker.");
        const alive = workers.filter((w) => w.status === "connected");
        const rows = wf
          .slice()
          .sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id) : a.kind === "agent" ? -1 : 1))
          .map((w) => {
            const serving = alive.filter((x) => x.workflows.includes(w.id));
            return h(
              "tr",
              { dataset: { workflow: w.id } },
              h("td", null, h("a", { href: `#/executions?workflow=${encodeURIComponent(w.id)}`, class: "wf", title: "Show its executions" }, w.id)),
              h("td", null, pill(w.kind, w.kind === "agent" ? "agent" : "muted")),
              h("td", { class: "desc", title: w.description || "" }, w.description ? compact(w.description, 120) : h("span", { class: "muted" }, "—")),
              h("td", null, optionsSummary(w.options)),
              h("td", null, serving.length ? h("span", { title: serving.map((x) => x.name).join(", ") }, pill(`${serving.length} worker${serving.length === 1 ? "" : "s"}`, "ok"), " ", h("span", { class: "muted small" }, compact(serving.map((x) => x.name).join(", "), 40))) : pill("no worker", "bad", "No connected worker serves it: new executions wait in the queue")),
              h("td", null, timeCell(w.last_seen_at)),
            );
          });
        return grid(["Id", "Kind", "Description", "Options", "Served by", "Last registered"], rows, "workflows");
      },
    );
  },
};

export const workers = {
  mount(root) {
    return livePage(
      root,
      pageHeader("Workers", "Processes that run workflows. A worker that stops heartbeating is gone; its work is re-queued."),
      async () => (await api("/workers")).items,
      (items) => {
        if (!items.length) return empty("No worker has connected yet.");
        const now = Date.now();
        const rows = items
          .slice()
          .sort((a, b) => (a.status === b.status ? b.last_heartbeat_at - a.last_heartbeat_at : a.status === "connected" ? -1 : 1))
          .map((w) => {
            const load = w.max_concurrent ? Math.min(1, w.running / w.max_concurrent) : 0;
            return h(
              "tr",
              { class: w.status === "connected" ? "" : "dim", dataset: { worker: w.id } },
              h("td", null, h("div", { class: "strong" }, w.name), h("div", { class: "muted mono small" }, w.id)),
              h("td", null, pill(w.status === "connected" ? "alive" : "gone", w.status === "connected" ? "ok" : "muted")),
              h("td", null, h("div", { class: "load", title: `${w.running} running of at most ${w.max_concurrent}` }, h("div", { class: "load-bar" }, h("div", { class: "load-fill", style: { width: `${(load * 100).toFixed(1)}%` } })), h("span", { class: "mono small" }, `${w.running}/${w.max_concurrent}`))),
              h("td", { class: "mono small" }, `${w.hostname} · pid ${w.pid}`),
              h("td", null, h("span", { title: w.workflows.join(", ") }, compact(w.workflows.join(", "), 60))),
              h("td", { title: fmtTime(w.last_heartbeat_at) }, fmtRel(w.last_heartbeat_at, now)),
              h("td", null, h("span", { title: fmtTime(w.connected_at) }, w.status === "connected" ? `up ${fmtDur(now - w.connected_at)}` : fmtTime(w.connected_at))),
            );
          });
        const alive = items.filter((w) => w.status === "connected");
        const running = alive.reduce((n, w) => n + w.running, 0);
        const capacity = alive.reduce((n, w) => n + w.max_concurrent, 0);
        return h(
          "div",
          null,
          h("div", { class: "stats" }, h("div", { class: "stat" }, h("div", { class: "stat-v" }, String(alive.length)), h("div", { class: "stat-l" }, "alive")), h("div", { class: "stat" }, h("div", { class: "stat-v" }, String(items.length - alive.length)), h("div", { class: "stat-l" }, "gone")), h("div", { class: "stat" }, h("div", { class: "stat-v" }, `${running}/${capacity}`), h("div", { class: "stat-l" }, "running / capacity"))),
          grid(["Worker", "Status", "Load", "Host", "Workflows", "Last heartbeat", "Connected"], rows, "workers"),
        );
      },
      2000,
    );
  },
};

export const queues = {
  mount(root) {
    return livePage(
      root,
      pageHeader("Queues", "Concurrency and rate limits, enforced across every worker. Waiting executions hold no slot."),
      async () => api("/queues"),
      (data) => {
        const out = h("div");
        if (!data.items.length) out.appendChild(empty("No queue yet: workflows declare them with queue=Queue(...)."));
        else {
          const rows = [];
          for (const q of data.items) {
            const limit = q.concurrency_limit;
            rows.push(
              h(
                "tr",
                { dataset: { queue: q.name } },
                h("td", { class: "strong mono" }, q.name),
                h("td", null, limit ? h("div", { class: "load" }, h("div", { class: "load-bar" }, h("div", { class: "load-fill", style: { width: `${Math.min(100, (q.running / limit) * 100).toFixed(1)}%` } })), h("span", { class: "mono small" }, `${q.running}/${limit}`)) : h("span", { class: "mono small" }, `${q.running} / ∞`)),
                h("td", { class: "num" }, fmtNum(q.queued)),
                h("td", { class: "num" }, fmtNum(q.delayed)),
                h("td", { class: "num" }, fmtNum(q.waiting)),
                h("td", null, q.per_key_limit ? `${q.per_key_limit} per key` : "—"),
                h("td", null, [q.rate_limit, q.per_key_rate_limit && `${q.per_key_rate_limit} per key`].filter(Boolean).join(", ") || "—", q.rate_blocked_until ? h("div", null, pill(`blocked until ${fmtTime(q.rate_blocked_until)}`, "warn")) : null),
                h("td", null, q.keys.length ? h("details", null, h("summary", null, `${q.keys.length} key${q.keys.length === 1 ? "" : "s"}`), h("table", { class: "grid mini" }, h("tbody", null, q.keys.map((k) => h("tr", null, h("td", { class: "mono" }, k.key), h("td", { class: "num" }, `${k.running} running`), h("td", { class: "num" }, `${k.queued} queued`)))))) : "—"),
              ),
            );
          }
          out.appendChild(grid(["Queue", "Running / limit", { label: "Queued", cls: "num" }, { label: "Delayed", cls: "num" }, { label: "Waiting", cls: "num" }, "Per key", "Rate limit", "Keys"], rows, "queues"));
        }
        if (data.rate_limits.length) {
          out.appendChild(h("h2", null, "Rate limits"));
          out.appendChild(
            grid(
              ["Name", "Limit", "Used in the window", "Keys"],
              data.rate_limits.map((r) => h("tr", null, h("td", { class: "mono" }, r.name), h("td", null, `${fmtNum(r.limit)} per ${fmtDur(r.period_ms)}`), h("td", null, h("div", { class: "load" }, h("div", { class: "load-bar" }, h("div", { class: "load-fill", style: { width: `${Math.min(100, (r.used / r.limit) * 100).toFixed(1)}%` } })), h("span", { class: "mono small" }, `${fmtNum(r.used)}/${fmtNum(r.limit)}`))), h("td", { class: "num" }, String(r.keys)))),
              "rate-limits",
            ),
          );
        }
        return out;
      },
      2000,
    );
  },
};

export const schedules = {
  mount(root) {
    const act = async (s, action, refresh) => {
      try {
        const body = action === "trigger" ? {} : undefined;
        const r = await api(`/schedules/${encodeURIComponent(s.id)}/${action}`, { method: "POST", body });
        if (action === "trigger") toast(`Started ${r.execution_id}`, "ok");
        else toast(`Schedule ${action === "pause" ? "paused" : "resumed"}`, "ok");
        refresh();
      } catch (e) {
        showError(e);
      }
    };
    return livePage(
      root,
      pageHeader("Schedules", "Cron schedules of workflows, evaluated in their time zone."),
      async () => {
        const items = [];
        let cursor = null;
        do {
          const page = await api("/schedules", { params: { limit: 1000, cursor } });
          items.push(...page.items);
          cursor = page.next_cursor;
        } while (cursor && items.length < 5000);
        return items;
      },
      (items, refresh) => {
        if (!items.length) return empty("No schedule yet: declare one with @workflow(schedule=...) or create one with `polos schedules create`.");
        const rows = items.map((s) =>
          h(
            "tr",
            { dataset: { schedule: s.id } },
            h("td", null, h("a", { href: `#/executions?workflow=${encodeURIComponent(s.workflow_id)}`, class: "wf" }, s.workflow_id), s.key !== "global" ? h("div", { class: "muted small" }, `key ${s.key}`) : null),
            h("td", { class: "mono" }, s.cron, h("div", { class: "muted small" }, s.timezone)),
            h("td", null, pill(s.status, s.status === "active" ? "ok" : "warn")),
            h("td", null, s.next_at ? h("span", { title: fmtTime(s.next_at) }, fmtRel(s.next_at), h("div", { class: "muted small" }, fmtTime(s.next_at))) : "—"),
            h("td", null, s.last_execution_id ? h("a", { href: `#/executions/${encodeURIComponent(s.last_execution_id)}` }, s.last_slot_at ? fmtRel(s.last_slot_at) : "last run") : "never"),
            h("td", { class: "small" }, `catch-up ${s.catchup}, overlap ${s.overlap}`, h("div", { class: "muted" }, s.source)),
            h(
              "td",
              { class: "row-actions" },
              s.status === "active" ? h("button", { class: "btn small", onclick: () => act(s, "pause", refresh) }, "Pause") : h("button", { class: "btn small primary", onclick: () => act(s, "resume", refresh) }, "Resume"),
              h("button", { class: "btn small", onclick: () => act(s, "trigger", refresh), title: "Start one run now" }, "Run now"),
            ),
          ),
        );
        return grid(["Workflow", "Cron", "Status", "Next run", "Last run", "Policies", ""], rows, "schedules");
      },
    );
  },
};

