// The shell: navigation, project and user pickers, hash routing.

import { api, every, project, setProject, setUser, user } from "./api.js";
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

shell();
window.addEventListener("hashchange", () => route());
route();
refreshApprovalsCount();
every(5000, refreshApprovalsCount);
document.addEventListener("polos:approvals-changed", refreshApprovalsCount);
