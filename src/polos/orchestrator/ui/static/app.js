// The shell: navigation, project and user pickers, hash routing.

import { api, every, loadSession, project, setProject, setUser, showError, signIn, signOut, user, whenUnauthorized } from "./api.js";
import { fill, h } from "./dom.js";
import { currentRoute } from "./route.js";
import * as approvals from "./approvals.js";
import * as events from "./events.js";
import * as execution from "./execution.js";
import * as executions from "./executions.js";
import * as system from "./system.js";

const ROUTES = [
  { re: /^\/?$/, page: executions, nav: "executions" },
  { re: /^\/executions$/, page: executions, nav: "executions" },
  { re: /^\/executions\/([^/]+)$/, page: execution, nav: "executions", keys: ["id"] },
  { re: /^\/approvals$/, page: approvals, nav: "approvals" },
  { re: /^\/workflows$/, page: system.workflows, nav: "workflows" },
  { re: /^\/workers$/, page: system.workers, nav: "workers" },
  { re: /^\/queues$/, page: system.queues, nav: "queues" },
  { re: /^\/schedules$/, page: system.schedules, nav: "schedules" },
  { re: /^\/events$/, page: events, nav: "events" },
];

const NAV = [
  ["executions", "Executions", "▤"],
  ["approvals", "Approvals", "✓"],
  ["workflows", "Workflows & agents", "⚙"],
  ["workers", "Workers", "▣"],
  ["queues", "Queues", "≡"],
  ["schedules", "Schedules", "◷"],
  ["events", "Events", "⚡"],
];

const navLinks = {};
let approvalsCount;
let main;
let cleanup = null;

function shell() {
  approvalsCount = h("span", { class: "nav-count", hidden: true });
  const nav = h(
    "nav",
    { class: "nav" },
    NAV.map(([key, label, icon]) => {
      const a = h("a", { href: `#/${key}`, dataset: { nav: key } }, h("span", { class: "nav-icon", "aria-hidden": "true" }, icon), h("span", null, label));
      if (key === "approvals") a.appendChild(approvalsCount);
      navLinks[key] = a;
      return a;
    }),
  );
  const projectInput = h("input", {
    id: "project",
    value: project(),
    placeholder: "default",
    title: "Project id (X-Polos-Project); empty: the default project",
    onchange: (ev) => {
      setProject(ev.target.value);
      route();
    },
  });
  const userInput = h("input", {
    id: "user",
    value: user(),
    placeholder: "ui",
    title: "Your name: recorded as who approved, rejected or cancelled",
    onchange: (ev) => setUser(ev.target.value),
  });
  const sidebar = h(
    "aside",
    { class: "sidebar" },
    h("a", { class: "brand", href: "#/executions" }, h("span", { class: "logo" }, "◆"), "Polos"),
    nav,
    h(
      "div",
      { class: "side-bottom" },
      h("label", { class: "side-field" }, h("span", null, "Project"), projectInput),
      h("label", { class: "side-field" }, h("span", null, "You"), userInput),
      h("a", { href: "/docs", class: "side-link", target: "_blank", rel: "noopener" }, "API reference ↗"),
      h("a", { href: "#", class: "side-link", id: "sign-out", onclick: (ev) => { ev.preventDefault(); document.dispatchEvent(new Event("polos:sign-out")); } }, "Sign out"),
    ),
  );
  main = h("main", { id: "main" });
  fill(document.body, h("div", { class: "layout" }, sidebar, main));
}

async function refreshApprovalsCount() {
  try {
    const page = await api("/waits", { params: { kind: "suspend", limit: 100 } });
    const n = page.items.length;
    approvalsCount.hidden = n === 0;
    approvalsCount.textContent = n >= 100 && page.next_cursor ? "99+" : String(n);
  } catch (e) {
    approvalsCount.hidden = true;
  }
}

// Filters change the hash's query with history.replaceState, which fires no hashchange:
// every hashchange is a navigation.
function route() {
  const { path, query } = currentRoute();
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      /* a page's cleanup must not stop the next page */
    }
    cleanup = null;
  }
  let match = null;
  let found = ROUTES[0];
  for (const r of ROUTES) {
    match = path.match(r.re);
    if (match) {
      found = r;
      break;
    }
  }
  for (const [key, a] of Object.entries(navLinks)) a.classList.toggle("active", key === found.nav);
  const params = {};
  (found.keys || []).forEach((k, i) => (params[k] = decodeURIComponent(match[i + 1])));
  main.replaceChildren();
  window.scrollTo(0, 0);
  if (!match) {
    main.appendChild(h("div", { class: "empty" }, "No such page: ", path));
    return;
  }
  cleanup = found.page.mount(main, { params, query }) || null;
}

// Signing in: the orchestrator asks for an API key unless it runs in local mode. The key
// goes to POST /ui/session once; the session then lives in an HttpOnly cookie.
let signingIn = false;

function showSignIn(message) {
  if (signingIn) return;
  signingIn = true;
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      /* ignore */
    }
    cleanup = null;
  }
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off", placeholder: "polos_…", required: true });
  const error = h("p", { class: "muted" }, message || "");
  const form = h(
    "form",
    {
      class: "card signin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await signIn(key.value.trim());
          signingIn = false;
          route();
          refreshApprovalsCount();
        } catch (e) {
          error.textContent = e.message;
        }
      },
    },
    h("h1", null, "Sign in"),
    h("p", null, "This orchestrator needs an API key (polos-server keys create). It is sent once; the session is kept in a secure cookie."),
    h("label", { class: "side-field" }, h("span", null, "API key"), key),
    error,
    h("button", { type: "submit", class: "btn primary", id: "sign-in" }, "Sign in"),
  );
  main.replaceChildren(form);
  key.focus();
}

async function start() {
  shell();
  whenUnauthorized(showSignIn);
  let session = null;
  try {
    session = await loadSession();
  } catch (e) {
    showError(e);
  }
  window.addEventListener("hashchange", () => {
    if (!signingIn) route();
  });
  if (session === null) {
    showSignIn("");
  } else {
    route();
  }
  refreshApprovalsCount();
  every(5000, () => (signingIn ? null : refreshApprovalsCount()));
  document.addEventListener("polos:approvals-changed", refreshApprovalsCount);
  document.addEventListener("polos:sign-out", async () => {
    await signOut();
    showSignIn("Signed out.");
  });
}

start();
