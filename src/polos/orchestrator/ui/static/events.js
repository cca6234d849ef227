// Events: pick a topic, tail it live (server-sent events), publish a test event.

import { API, api, headers, project, query, showError, toast } from "./api.js";
import { compact, fill, fmtClock, fmtTime, h, jsonView, pageHeader, shortId } from "./dom.js";
import { replaceQuery } from "./route.js";

const RECENT_KEY = "polos.topics";
const MAX_SHOWN = 500;

function recentTopics() {
  try {
    const v = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  } catch (e) {
    return [];
  }
}

function remember(topic) {
  const list = [topic, ...recentTopics().filter((t) => t !== topic)].slice(0, 20);
  localStorage.setItem(RECENT_KEY, JSON.stringify(list));
}

/**
 * Follow a topic's stream. EventSource when the default project is used (it cannot send
 * headers); otherwise fetch with X-Polos-Project, reconnecting with Last-Event-ID.
 * Returns a close function.
 */
function follow(topic, after, { onEvent, onState }) {
  const params = { topic, after: after === null ? null : after };
  if (!project()) {
    const source = new EventSource(`${API}/events/stream${query(params)}`);
    source.onopen = () => onState("live");
    source.onerror = () => onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    source.addEventListener("event", (ev) => {
      try {
        onEvent(JSON.parse(ev.data));
      } catch (e) {
        /* not JSON: ignore */
      }
    });
    return () => source.close();
  }
  const controller = new AbortController();
  let lastId = null;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        const hdrs = headers({ Accept: "text/event-stream" });
        if (lastId !== null) hdrs["Last-Event-ID"] = lastId;
        const response = await fetch(`${API}/events/stream${query(params)}`, { headers: hdrs, signal: controller.signal });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          throw new Error(body.message || `${response.status}`);
        }
        onState("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let data = "";
            let type = "message";
            for (const line of block.split("\n")) {
              if (line.startsWith("id:")) lastId = line.slice(3).trim();
              else if (line.startsWith("event:")) type = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (type === "event" && data) {
              try {
                onEvent(JSON.parse(data));
              } catch (e) {
                /* not JSON: ignore */
              }
            }
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
        onState(`reconnecting (${e.message})`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return () => controller.abort();
}

export function mount(root, { query: q }) {
  let close = null;
  let count = 0;
  const topics = h("datalist", { id: "topic-list" });
  const topicInput = h("input", { id: "topic", list: "topic-list", placeholder: "topic, e.g. order/new", value: q.get("topic") || recentTopics()[0] || "", autocomplete: "off" });
  const afterInput = h("input", { id: "after", type: "number", min: "0", placeholder: "only new", title: "Replay from after this seq (0: the whole log); empty: only new events", class: "narrow" });
  const stateLabel = h("span", { class: "stream-state", id: "stream-state" }, "not connected");
  const tailBtn = h("button", { class: "btn primary", id: "tail-btn", type: "submit" }, "Tail");
  const stopBtn = h("button", { class: "btn", id: "stop-btn", type: "button", disabled: true, onclick: stop }, "Stop");
  const rows = h("tbody", { id: "event-rows" });
  const table = h("table", { class: "grid events" }, h("thead", null, h("tr", null, h("th", { class: "num", style: { width: "60px" } }, "seq"), h("th", { style: { width: "110px" } }, "received"), h("th", { style: { width: "160px" } }, "topic"), h("th", null, "data"), h("th", { style: { width: "120px" } }, "from"))), rows);
  const listHolder = h("div", { class: "card flush" }, table, h("div", { class: "empty", id: "events-empty" }, "Choose a topic and press Tail: events published from now on appear here live."));

  // ------------------------------------------------------------------ publish form
  const pubTopic = h("input", { id: "pub-topic", list: "topic-list", placeholder: "topic", value: topicInput.value });
  const pubData = h("textarea", { id: "pub-data", rows: 6, class: "mono", spellcheck: "false" }, '{\n  "hello": "world"\n}');
  const pubKey = h("input", { id: "pub-key", placeholder: "optional: publishing twice with one key publishes once" });
  const pubResult = h("div", { class: "pub-result", id: "pub-result" });
  const publishForm = h(
    "form",
    {
      class: "card publish",
      onsubmit: async (ev) => {
        ev.preventDefault();
        let data;
        try {
          data = pubData.value.trim() ? JSON.parse(pubData.value) : null;
        } catch (e) {
          fill(pubResult, h("span", { class: "form-error" }, `The data is not valid JSON: ${e.message}`));
          return;
        }
        const topic = pubTopic.value.trim();
        if (!topic) {
          fill(pubResult, h("span", { class: "form-error" }, "A topic is required."));
          return;
        }
        try {
          const r = await api("/events", { method: "POST", body: { topic, data, idempotency_key: pubKey.value.trim() || null } });
          remember(topic);
          fill(pubResult, 
            h("span", null, r.created ? "Published " : "Already published (same key) ", h("strong", null, `seq ${r.seq}`), " on ", h("span", { class: "mono" }, r.topic), "."),
            r.triggered.length ? h("span", null, " Started: ", r.triggered.map((id, i) => [i ? ", " : "", h("a", { href: `#/executions/${encodeURIComponent(id)}`, class: "mono" }, shortId(id))])) : null,
          );
        } catch (e) {
          fill(pubResult, h("span", { class: "form-error" }, e.message));
        }
      },
    },
    h("div", { class: "card-title" }, "Publish a test event"),
    h("label", { class: "form-row" }, h("span", null, "Topic"), pubTopic),
    h("label", { class: "form-row" }, h("span", null, "Data (JSON)"), pubData),
    h("label", { class: "form-row" }, h("span", null, "Idempotency key"), pubKey),
    h("div", { class: "buttons" }, h("button", { class: "btn primary", id: "publish-btn", type: "submit" }, "Publish")),
    pubResult,
  );

  const tailForm = h(
    "form",
    {
      class: "tail-bar",
      onsubmit: (ev) => {
        ev.preventDefault();
        start();
      },
    },
    h("label", null, "Topic ", topicInput),
    h("label", null, "after seq ", afterInput),
    tailBtn,
    stopBtn,
    stateLabel,
  );

  root.append(
    pageHeader("Events", "Durable, ordered topics. Tail one live, or publish a test event."),
    topics,
    h("div", { class: "events-layout" }, h("div", null, tailForm, listHolder), publishForm),
  );

  function setState(text) {
    stateLabel.textContent = text;
    stateLabel.classList.toggle("on", text === "live");
  }

  function addEvent(e) {
    document.getElementById("events-empty")?.remove();
    count += 1;
    const tr = h(
      "tr",
      { class: "new", dataset: { seq: String(e.seq) } },
      h("td", { class: "num mono" }, String(e.seq)),
      h("td", { title: fmtTime(e.created_at) }, fmtClock(e.created_at)),
      h("td", { class: "mono" }, e.topic),
      h("td", null, h("details", null, h("summary", { class: "mono" }, compact(e.data, 140)), jsonView(e.data, { class: "compact" }))),
      h("td", null, e.source_execution_id ? h("a", { href: `#/executions/${encodeURIComponent(e.source_execution_id)}`, class: "mono" }, shortId(e.source_execution_id)) : h("span", { class: "muted" }, "api")),
    );
    rows.prepend(tr);
    setTimeout(() => tr.classList.remove("new"), 1500);
    while (rows.children.length > MAX_SHOWN) rows.lastChild.remove();
  }

  function start() {
    const topic = topicInput.value.trim();
    if (!topic) {
      toast("Choose a topic first", "error");
      return;
    }
    stop();
    remember(topic);
    replaceQuery({ topic });
    rows.replaceChildren();
    count = 0;
    const hint = document.getElementById("events-empty") || listHolder.appendChild(h("div", { class: "empty", id: "events-empty" }));
    hint.textContent = `Listening on ${topic}: events published from now on appear here.`;
    if (!pubTopic.value.trim() || pubTopic.value === pubTopic.dataset.auto) {
      pubTopic.value = topic;
      pubTopic.dataset.auto = topic;
    }
    const after = afterInput.value === "" ? null : Math.max(0, Number(afterInput.value) || 0);
    setState("connecting…");
    close = follow(topic, after, { onEvent: addEvent, onState: setState });
    stopBtn.disabled = false;
  }

  function stop() {
    if (close) close();
    close = null;
    stopBtn.disabled = true;
    setState("not connected");
  }

  (async () => {
    const names = new Set(recentTopics());
    try {
      const wf = await api("/workflows");
      for (const w of wf.items) if (w.options && w.options.trigger_on_event) names.add(w.options.trigger_on_event);
    } catch (e) {
      showError(e);
    }
    fill(topics, ...[...names].sort().map((t) => h("option", { value: t })));
    if (!topicInput.value && names.size) topicInput.value = [...names].sort()[0];
    if (q.get("topic")) start();
  })();

  return () => stop();
}

