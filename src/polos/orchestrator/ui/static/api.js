// The JSON API (same origin, /api/v1). The chosen project travels in X-Polos-Project.

import { h } from "./dom.js";

export const API = "/api/v1";
const PROJECT_KEY = "polos.project";
const USER_KEY = "polos.user";

export function project() {
  return localStorage.getItem(PROJECT_KEY) || "";
}

export function setProject(value) {
  const v = (value || "").trim();
  if (v) localStorage.setItem(PROJECT_KEY, v);
  else localStorage.removeItem(PROJECT_KEY);
}

/** Who the UI acts as (recorded by resume and cancel). */
export function user() {
  return localStorage.getItem(USER_KEY) || "ui";
}

export function setUser(value) {
  const v = (value || "").trim();
  if (v) localStorage.setItem(USER_KEY, v);
  else localStorage.removeItem(USER_KEY);
}

// The session: the orchestrator keeps it in an HttpOnly cookie; the page keeps only the
// CSRF token that state-changing requests must carry (in memory, fetched at start).
let csrfToken = null;
let onUnauthorized = null;

/** Who is signed in (GET /ui/session); null when a sign-in is needed. */
export async function loadSession() {
  const response = await fetch("/ui/session", { headers: { Accept: "application/json" } });
  if (response.status === 401) return null;
  const info = await response.json();
  csrfToken = info.csrf_token || null;
  return info;
}

/** Sign in with an API key: the orchestrator sets the session cookie. */
export async function signIn(apiKey) {
  const response = await fetch("/ui/session", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ api_key: apiKey }),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, (data && data.code) || "http_error", (data && data.message) || "sign-in failed");
  csrfToken = data.csrf_token || null;
  return data;
}

export async function signOut() {
  csrfToken = null;
  await fetch("/ui/session", { method: "DELETE", headers: { "X-CSRF-Token": "" } });
}

/** Called when the API answers 401 (the shell shows the sign-in form). */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

export function headers(extra, method = "GET") {
  const out = { Accept: "application/json", ...(extra || {}) };
  const p = project();
  if (p) out["X-Polos-Project"] = p;
  if (csrfToken && method !== "GET" && method !== "HEAD") out["X-CSRF-Token"] = csrfToken;
  return out;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Query string from an object; arrays repeat the parameter; empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "" || v === false) continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** Call the API; resolves to the parsed JSON body, rejects with ApiError (its message is the API's). */
export async function api(path, { method = "GET", body, params, signal } = {}) {
  const init = { method, headers: headers(undefined, method), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(API + path + query(params), init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", "the orchestrator does not answer");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (response.status === 401 && onUnauthorized) onUnauthorized((data && data.message) || "sign in");
  if (!response.ok) {
    const message = (data && data.message) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, (data && data.code) || "http_error", message);
  }
  return data;
}

// ------------------------------------------------------------------ toasts

export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts" });
    document.body.appendChild(box);
  }
  const el = h("div", { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : "status" }, message);
  box.appendChild(el);
  setTimeout(() => el.classList.add("fade"), kind === "error" ? 6000 : 3000);
  setTimeout(() => el.remove(), kind === "error" ? 6600 : 3600);
}

export function showError(e) {
  if (e && e.name === "AbortError") return;
  toast(e && e.message ? e.message : String(e), "error");
}

/** Run fn every `ms` while the page is shown; returns a stop function. Skips a tick while one runs. */
export function every(ms, fn) {
  let busy = false;
  let stopped = false;
  const tick = async () => {
    if (busy || stopped || document.hidden) return;
    busy = true;
    try {
      await fn();
    } catch (e) {
      /* the next tick tries again; the page shows its own errors */
    } finally {
      busy = false;
    }
  };
  const id = setInterval(tick, ms);
  return () => {
    stopped = true;
    clearInterval(id);
  };
}
