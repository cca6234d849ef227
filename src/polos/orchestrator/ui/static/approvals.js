// Approvals inbox: every execution suspended for a human, its data as a readable form,
// approve/reject (or the declared form) with a comment, submitted as a resume.

import { api, every, showError, toast, user } from "./api.js";
import { empty, errorBox, fill, fmtRel, fmtTime, h, jsonView, pageHeader, shortId } from "./dom.js";

const FIELD_TYPES = new Set(["boolean", "text", "textarea", "number", "select"]);

function label(text) {
  const t = String(text).replace(/[_-]+/g, " ");
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** The declared form of the suspend data, when it is a valid one. */
function formOf(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return null;
  const form = data._form;
  if (!form || typeof form !== "object" || !Array.isArray(form.fields)) return null;
  const fields = form.fields.filter((f) => f && typeof f.name === "string" && f.name && FIELD_TYPES.has(f.type || "text"));
  return fields.length ? { title: typeof form.title === "string" ? form.title : null, fields } : null;
}

/** The data shown read-only: everything but the private (_-prefixed) keys. */
function visibleData(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return data;
  return Object.fromEntries(Object.entries(data).filter(([k]) => !k.startsWith("_")));
}

function dataTable(data) {
  if (data === null || data === undefined) return h("div", { class: "muted" }, "No data attached.");
  if (typeof data !== "object" || Array.isArray(data)) return jsonView(data, { class: "compact" });
  const entries = Object.entries(data);
  if (!entries.length) return h("div", { class: "muted" }, "No data attached.");
  return h(
    "table",
    { class: "kv" },
    h(
      "tbody",
      null,
      entries.map(([k, v]) =>
        h(
          "tr",
          null,
          h("th", null, label(k)),
          h("td", null, v !== null && typeof v === "object" ? (Array.isArray(v) && v.every((x) => typeof x !== "object") ? v.join(", ") : jsonView(v, { class: "compact" })) : v === null ? "—" : String(v)),
        ),
      ),
    ),
  );
}

function fieldInput(f, id) {
  const type = f.type || "text";
  const common = { id, name: f.name, required: !!f.required, dataset: { field: f.name, type } };
  if (type === "boolean") {
    // Yes / No as a pair of radio buttons: a required boolean must be chosen, never defaulted.
    return h(
      "div",
      { class: "yesno", role: "radiogroup", "aria-labelledby": `${id}-label`, dataset: { field: f.name, type } },
      h("label", { class: "yes" }, h("input", { type: "radio", name: id, value: "true" }), "Yes"),
      h("label", { class: "no" }, h("input", { type: "radio", name: id, value: "false" }), "No"),
    );
  }
  if (type === "textarea") return h("textarea", { ...common, rows: 3 });
  if (type === "number") return h("input", { ...common, type: "number", step: "any" });
  if (type === "select") {
    const options = Array.isArray(f.options) ? f.options : [];
    return h(
      "select",
      common,
      h("option", { value: "" }, "— choose —"),
      options.map((o) => {
        const value = o !== null && typeof o === "object" ? o.value : o;
        const text = o !== null && typeof o === "object" ? o.label ?? o.value : o;
        return h("option", { value: JSON.stringify(value) }, String(text));
      }),
    );
  }
  return h("input", { ...common, type: "text" });
}

/** The form's values, or an error message naming the first missing required field. */
function readForm(form, node) {
  const data = {};
  for (const f of form.fields) {
    const type = f.type || "text";
    const el = node.querySelector(`[data-field="${CSS.escape(f.name)}"]`);
    let value = null;
    if (type === "boolean") {
      const checked = el.querySelector("input:checked");
      value = checked ? checked.value === "true" : null;
    } else if (type === "number") {
      value = el.value === "" ? null : Number(el.value);
      if (value !== null && Number.isNaN(value)) return { error: `${f.label || label(f.name)} must be a number` };
    } else if (type === "select") {
      value = el.value === "" ? null : JSON.parse(el.value);
    } else {
      value = el.value;
      if (value === "" && !f.required) value = null;
    }
    if (f.required && (value === null || value === "")) return { error: `${f.label || label(f.name)} is required` };
    if (value !== null) data[f.name] = value;
  }
  return { data };
}

function itemKey(w) {
  return `${w.execution_id}\u0000${w.step_key}`;
}

export function mount(root) {
  const list = h("div", { class: "inbox", id: "inbox" });
  const status = h("div", { class: "list-status" });
  const cards = new Map();
  let loaded = false;
  root.append(pageHeader("Approvals", "Executions suspended for a human decision. Submitting resumes the workflow at once."), status, list);

  function card(w) {
    const form = formOf(w.data);
    const shown = visibleData(w.data);
    const cid = `a-${cards.size}-${Math.random().toString(36).slice(2, 8)}`;
    const comment = h("textarea", { class: "comment", id: `${cid}-comment`, rows: 2, placeholder: "Comment (recorded with the decision)", maxlength: 2000 });
    const message = h("div", { class: "form-error", role: "alert" });
    const node = h("article", { class: "card approval", dataset: { execution: w.execution_id, step: w.step_key } });

    async function submit(data, button) {
      message.textContent = "";
      const buttons = node.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await api(`/executions/${encodeURIComponent(w.execution_id)}/resume`, {
          method: "POST",
          body: { step_key: w.step_key, data, by: user(), comment: comment.value.trim() || null },
        });
        toast(`${w.workflow_id}: ${button} sent`, "ok");
        cards.delete(itemKey(w));
        node.classList.add("leaving");
        setTimeout(() => {
          node.remove();
          if (!cards.size) renderEmpty();
        }, 250);
        document.dispatchEvent(new Event("polos:approvals-changed"));
      } catch (e) {
        buttons.forEach((b) => (b.disabled = false));
        message.textContent = e.message;
        if (e.status === 409 || e.status === 404) {
          // Someone else answered (or it timed out): it leaves the inbox at the next refresh.
          showError(e);
        }
      }
    }

    let decision;
    if (form) {
      const formNode = h(
        "div",
        { class: "form-fields" },
        form.fields.map((f, i) => {
          const id = `${cid}-f${i}`;
          return h("div", { class: "form-row" }, h("label", { for: id, id: `${id}-label` }, f.label || label(f.name), f.required ? h("span", { class: "req", title: "required" }, " *") : null), fieldInput(f, id));
        }),
      );
      decision = h(
        "div",
        { class: "decision" },
        form.title ? h("div", { class: "form-title" }, form.title) : null,
        formNode,
        h("label", { for: comment.id, class: "comment-label" }, "Comment"),
        comment,
        message,
        h(
          "div",
          { class: "buttons" },
          h(
            "button",
            {
              class: "btn primary submit",
              onclick: () => {
                const read = readForm(form, formNode);
                if (read.error) {
                  message.textContent = read.error;
                  return;
                }
                submit(read.data, "decision");
              },
            },
            "Submit",
          ),
        ),
      );
    } else {
      const decide = (approved) => submit({ approved, comment: comment.value.trim() || null }, approved ? "approval" : "rejection");
      decision = h(
        "div",
        { class: "decision" },
        h("label", { for: comment.id, class: "comment-label" }, "Comment"),
        comment,
        message,
        h("div", { class: "buttons" }, h("button", { class: "btn approve", onclick: () => decide(true) }, "✓ Approve"), h("button", { class: "btn reject", onclick: () => decide(false) }, "✕ Reject")),
      );
    }
    const expires = w.expires_at ? h("span", { class: w.expires_at - Date.now() < 3_600_000 ? "warn-text" : "muted", title: fmtTime(w.expires_at) }, `times out ${fmtRel(w.expires_at)}`) : null;
    node.append(
      h(
        "header",
        { class: "approval-head" },
        h("div", null, h("strong", { class: "wf" }, w.workflow_id), h("span", { class: "muted" }, " at step "), h("span", { class: "mono" }, w.step_key)),
        h("div", { class: "approval-meta" }, h("span", { class: "muted", title: fmtTime(w.created_at) }, `waiting since ${fmtRel(w.created_at)}`), expires, h("a", { href: `#/executions/${encodeURIComponent(w.execution_id)}`, class: "mono", title: w.execution_id }, shortId(w.execution_id))),
      ),
      h("div", { class: "approval-body" }, h("div", { class: "approval-data" }, h("div", { class: "card-title" }, "Details"), dataTable(shown)), decision),
    );
    return node;
  }

  function renderEmpty() {
    if (!list.querySelector(".approval")) fill(list, empty("Nothing waits for a human right now."));
  }

  async function load() {
    try {
      const items = [];
      let cursor = null;
      do {
        const page = await api("/waits", { params: { kind: "suspend", limit: 200, cursor } });
        items.push(...page.items);
        cursor = page.next_cursor;
      } while (cursor && items.length < 1000);
      const keys = new Set(items.map(itemKey));
      // Keep the cards being filled in; add new ones in order; drop the answered ones.
      for (const [k, node] of cards) {
        if (!keys.has(k)) {
          node.remove();
          cards.delete(k);
        }
      }
      list.querySelector(".empty")?.remove();
      for (const w of items) {
        const k = itemKey(w);
        if (!cards.has(k)) {
          const node = card(w);
          cards.set(k, node);
          list.appendChild(node);
        }
      }
      renderEmpty();
      status.textContent = `${items.length} waiting${items.length >= 1000 ? " (first 1,000)" : ""}`;
      loaded = true;
    } catch (e) {
      status.textContent = e.message;
      if (!loaded) fill(list, errorBox({ type: "Cannot load the inbox", message: e.message }));
    }
  }

  load();
  const stop = every(3000, load);
  return stop;
}

