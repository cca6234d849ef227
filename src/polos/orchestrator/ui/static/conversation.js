// An agent run as a conversation: messages, reasoning, tool calls with their results,
// guardrail decisions, token usage per model call and in total, and a cost estimate.

import { errorBox, fmtDur, fmtNum, h, jsonView, pill } from "./dom.js";

// List prices in USD per million tokens [input, output, cached input]. An estimate only:
// prices change, and discounts, batch pricing or long-context tiers are not applied.
export const PRICES = {
  "gpt-5": [1.25, 10, 0.125],
  "gpt-5-mini": [0.25, 2, 0.025],
  "gpt-5-nano": [0.05, 0.4, 0.005],
  "gpt-4.1": [2, 8, 0.5],
  "gpt-4.1-mini": [0.4, 1.6, 0.1],
  "gpt-4.1-nano": [0.1, 0.4, 0.025],
  "gpt-4o": [2.5, 10, 1.25],
  "gpt-4o-mini": [0.15, 0.6, 0.075],
  o1: [15, 60, 7.5],
  o3: [2, 8, 0.5],
  "o3-mini": [1.1, 4.4, 0.55],
  "o4-mini": [1.1, 4.4, 0.275],
  "claude-opus-4": [15, 75, 1.5],
  "claude-sonnet-4": [3, 15, 0.3],
  "claude-3-7-sonnet": [3, 15, 0.3],
  "claude-3-5-sonnet": [3, 15, 0.3],
  "claude-haiku-4": [1, 5, 0.1],
  "claude-3-5-haiku": [0.8, 4, 0.08],
  "gemini-2.5-pro": [1.25, 10, 0.31],
  "gemini-2.5-flash": [0.3, 2.5, 0.075],
};

/** The price row of a model: the longest known prefix of its name ("gpt-4o-mini-2024-07-18"). */
export function priceOf(model) {
  const name = String(model || "").toLowerCase().replace(/^.*\//, "");
  let best = null;
  for (const key of Object.keys(PRICES)) {
    if (name.startsWith(key) && (!best || key.length > best.length)) best = key;
  }
  return best ? PRICES[best] : null;
}

/** Estimated cost in USD of one call's usage, or null when the model's price is unknown. */
export function costOf(model, usage) {
  const p = priceOf(model);
  if (!p || !usage) return null;
  const cached = usage.cache_read_tokens || 0;
  const fresh = Math.max(0, (usage.input_tokens || 0) - cached);
  return (fresh * p[0] + cached * p[2] + (usage.output_tokens || 0) * p[1]) / 1e6;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "—";
  if (usd === 0) return "$0";
  if (usd < 0.000001) return "< $0.000001";
  if (usd < 0.01) return `$${Number(usd.toPrecision(2))}`;
  return `$${usd.toFixed(4)}`;
}

/** Whether an execution is an agent run: its workflow is an agent, or it has llm/tool steps. */
export function isAgentRun(kind, steps) {
  return kind === "agent" || steps.some((s) => s.kind === "llm" || s.kind === "tool");
}

function parseMaybeJson(value) {
  if (typeof value !== "string") return value;
  const t = value.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return value;
  try {
    return JSON.parse(t);
  } catch (e) {
    return value;
  }
}

function textBlock(text, cls) {
  return h("div", { class: ["msg-text", cls] }, text);
}

function valueBlock(value) {
  const v = parseMaybeJson(value);
  return typeof v === "string" ? textBlock(v) : jsonView(v, { class: "compact" });
}

function usageLine(model, usage, ms) {
  const parts = [];
  if (model) parts.push(h("span", { class: "mono" }, model));
  if (ms !== null && ms !== undefined) parts.push(h("span", null, fmtDur(ms)));
  if (usage) {
    parts.push(h("span", { title: "input / output tokens" }, `${fmtNum(usage.input_tokens || 0)} in · ${fmtNum(usage.output_tokens || 0)} out`));
    if (usage.cache_read_tokens) parts.push(h("span", null, `${fmtNum(usage.cache_read_tokens)} cached`));
    if (usage.reasoning_tokens) parts.push(h("span", null, `${fmtNum(usage.reasoning_tokens)} reasoning`));
    const cost = costOf(model, usage);
    parts.push(h("span", { class: "cost", title: "estimate from list prices" }, cost === null ? "cost: no price" : `≈ ${fmtCost(cost)}`));
  }
  return h("div", { class: "msg-meta" }, parts);
}

function message(role, title, ...body) {
  return h("div", { class: ["msg", `msg-${role}`] }, h("div", { class: "msg-role" }, title), h("div", { class: "msg-body" }, body));
}

function reasoningBlock(text) {
  if (!text) return null;
  return h("details", { class: "reasoning", open: true }, h("summary", null, "Reasoning"), textBlock(text, "reasoning-text"));
}

function toolCallBlock(call, resultStep, resultFallback, approval) {
  let result = null;
  if (resultStep) {
    if (resultStep.error) result = errorBox(resultStep.error);
    else if (!resultStep.completed_at) result = h("div", { class: "muted" }, "running…");
    else result = valueBlock(resultStep.output);
  } else if (resultFallback) {
    result = valueBlock(resultFallback.output);
  }
  const failed = (resultFallback && resultFallback.error) || (resultStep && resultStep.error);
  let approvalLine = null;
  if (approval) {
    const out = approval.output && typeof approval.output === "object" ? approval.output : {};
    const data = out.data && typeof out.data === "object" ? out.data : out;
    const ok = data.approved === true;
    approvalLine = h("div", { class: "tool-approval" }, pill(ok ? "approved" : approval.completed_at ? "rejected" : "awaiting approval", ok ? "ok" : "warn"), out.resumed_by ? ` by ${out.resumed_by}` : "", data.feedback ? ` — ${data.feedback}` : "");
  }
  return h(
    "div",
    { class: ["tool-call", failed && "failed"], dataset: { call: call.id } },
    h("div", { class: "tool-head" }, h("span", { class: "kind k-tool" }, "tool"), h("strong", { class: "mono" }, call.name), h("span", { class: "muted mono" }, call.id), resultStep && resultStep.completed_at && resultStep.started_at ? h("span", { class: "muted" }, fmtDur(resultStep.completed_at - resultStep.started_at)) : null),
    h("div", { class: "tool-grid" }, h("div", { class: "tool-label" }, "arguments"), jsonView(call.arguments || {}, { class: "compact" }), h("div", { class: "tool-label" }, "result"), result || h("div", { class: "muted" }, "no result recorded")),
    approvalLine,
  );
}

function guardrailBlock(step) {
  const out = step.output && typeof step.output === "object" ? step.output : {};
  const parts = step.key.split(":");
  const where = parts[1] === "input" ? "input" : `answer of turn ${parts[1]}`;
  const passed = out.passed === true;
  return h(
    "div",
    { class: ["guardrail", passed ? "passed" : "refused"], dataset: { key: step.key } },
    h("span", { class: "kind k-guardrail" }, "guardrail"),
    h("span", { class: "mono" }, step.key),
    pill(step.error ? "error" : passed ? "passed" : "refused", passed ? "ok" : "bad"),
    h("span", { class: "muted" }, `checks the ${where}`),
    out.reason ? h("span", null, "— ", out.reason) : null,
    out.modified_text ? h("div", { class: "guardrail-mod" }, "replaced the text with: ", h("q", null, out.modified_text)) : null,
    step.error ? errorBox(step.error) : null,
  );
}

function inputMessages(payload) {
  const out = [];
  const input = payload && typeof payload === "object" ? payload.input : payload;
  if (typeof input === "string") out.push(message("user", "User", textBlock(input)));
  else if (Array.isArray(input)) for (const m of input) out.push(plainMessage(m));
  return out;
}

function plainMessage(m, toolResults) {
  const role = m.role || "user";
  const body = [];
  if (m.reasoning) body.push(reasoningBlock(m.reasoning));
  if (m.content) body.push(role === "tool" ? valueBlock(m.content) : textBlock(m.content));
  for (const call of m.tool_calls || []) body.push(toolCallBlock(call, null, toolResults && toolResults.get(call.id), null));
  const title = role === "tool" ? `Tool result${m.name ? ` · ${m.name}` : ""}` : role[0].toUpperCase() + role.slice(1);
  return message(role, title, body);
}

/** The Conversation tab. */
export function conversation(x, steps) {
  const result = x.result && typeof x.result === "object" ? x.result : {};
  const llmSteps = steps.filter((s) => s.kind === "llm");
  const toolSteps = new Map();
  const approvals = new Map();
  for (const s of steps) {
    const parts = s.key.split("#")[0].split(":");
    if (s.kind === "tool" && parts[0] === "tool") toolSteps.set(parts.slice(2).join(":"), s);
    if (s.kind === "suspend" && parts[0] === "approve") approvals.set(parts.slice(2).join(":"), s);
  }
  const resultTools = new Map();
  for (const st of result.steps || []) for (const r of st.tool_results || []) resultTools.set(r.call_id, r);

  // Totals over every model call (refused answers and repairs cost too).
  const perModel = new Map();
  const total = { input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, reasoning_tokens: 0 };
  let cost = 0;
  let unpriced = false;
  for (const s of llmSteps) {
    const out = s.output || {};
    const u = out.usage || {};
    for (const k of Object.keys(total)) total[k] += u[k] || 0;
    const c = costOf(out.model, u);
    if (c === null) unpriced = true;
    else cost += c;
    const m = out.model || "?";
    const row = perModel.get(m) || { calls: 0, input: 0, output: 0, cost: 0, priced: c !== null };
    row.calls += 1;
    row.input += u.input_tokens || 0;
    row.output += u.output_tokens || 0;
    row.cost += c || 0;
    perModel.set(m, row);
  }
  if (!llmSteps.length && result.usage) Object.assign(total, result.usage);

  const summary = h(
    "div",
    { class: "conv-summary" },
    h("div", { class: "stat" }, h("div", { class: "stat-v" }, String(llmSteps.length)), h("div", { class: "stat-l" }, "model calls")),
    h("div", { class: "stat" }, h("div", { class: "stat-v" }, String(steps.filter((s) => s.kind === "tool").length)), h("div", { class: "stat-l" }, "tool calls")),
    h("div", { class: "stat" }, h("div", { class: "stat-v", id: "tokens-in" }, fmtNum(total.input_tokens)), h("div", { class: "stat-l" }, "input tokens")),
    h("div", { class: "stat" }, h("div", { class: "stat-v", id: "tokens-out" }, fmtNum(total.output_tokens)), h("div", { class: "stat-l" }, "output tokens")),
    h("div", { class: "stat" }, h("div", { class: "stat-v", id: "cost" }, llmSteps.length && !unpriced ? fmtCost(cost) : llmSteps.length ? `${fmtCost(cost)}+` : "—"), h("div", { class: "stat-l" }, "cost ", h("span", { class: "estimate", title: "From list prices in the UI's own table; no discounts. Models without a price count as $0." }, "estimate"))),
    result.stop_reason ? h("div", { class: "stat" }, h("div", { class: "stat-v small" }, result.stop_reason), h("div", { class: "stat-l" }, "stop reason")) : null,
  );
  const models = perModel.size
    ? h("table", { class: "grid mini" }, h("thead", null, h("tr", null, h("th", null, "model"), h("th", { class: "num" }, "calls"), h("th", { class: "num" }, "input"), h("th", { class: "num" }, "output"), h("th", { class: "num" }, "cost (estimate)"))), h("tbody", null, [...perModel].map(([m, r]) => h("tr", null, h("td", { class: "mono" }, m), h("td", { class: "num" }, String(r.calls)), h("td", { class: "num" }, fmtNum(r.input)), h("td", { class: "num" }, fmtNum(r.output)), h("td", { class: "num" }, r.priced ? fmtCost(r.cost) : "no price")))))
    : null;

  const thread = h("div", { class: "thread" });
  if (llmSteps.length) {
    thread.append(...inputMessages(x.payload));
    for (const s of steps) {
      const base = s.key.split("#")[0];
      if (s.kind === "llm") {
        const out = s.output || {};
        const body = [usageLine(out.model, out.usage, s.completed_at && s.started_at ? s.completed_at - s.started_at : null)];
        if (s.error) body.push(errorBox(s.error));
        body.push(reasoningBlock(out.reasoning));
        if (out.text) body.push(textBlock(out.text));
        for (const call of out.tool_calls || []) body.push(toolCallBlock(call, toolSteps.get(call.id), resultTools.get(call.id), approvals.get(call.id)));
        if (!s.completed_at) body.push(h("div", { class: "muted" }, "waiting for the model…"));
        thread.appendChild(h("div", { class: "msg msg-assistant", dataset: { key: s.key } }, h("div", { class: "msg-role" }, "Assistant", h("span", { class: "muted mono" }, ` ${s.key}`)), h("div", { class: "msg-body" }, body)));
      } else if (base.startsWith("guardrail:")) {
        thread.appendChild(guardrailBlock(s));
      } else if (s.kind === "run" && base.startsWith("handoff:")) {
        thread.appendChild(h("div", { class: "note" }, "handed over: ", h("span", { class: "mono" }, s.key)));
      }
    }
  } else if (Array.isArray(result.messages) && result.messages.length) {
    for (const m of result.messages) thread.appendChild(plainMessage(m, resultTools));
  } else {
    thread.append(...inputMessages(x.payload));
  }
  if (x.status === "completed" && (result.text || result.result !== undefined)) {
    const answer = result.result !== undefined && typeof result.result !== "string" ? jsonView(result.result) : textBlock(result.text || String(result.result ?? ""));
    thread.appendChild(h("div", { class: "msg msg-final" }, h("div", { class: "msg-role" }, "Final answer"), h("div", { class: "msg-body" }, answer)));
  }
  if (x.error) thread.appendChild(errorBox(x.error));
  return h("div", { class: "conversation" }, summary, models, thread);
}
