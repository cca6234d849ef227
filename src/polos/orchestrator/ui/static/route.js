// Hash routes: #/path?query. Pages keep their filters in the query.

/** The current route: path, decoded path parameters and the query of the hash. */
export function currentRoute() {
  const raw = location.hash.replace(/^#/, "");
  const [path, qs] = raw.split("?", 2);
  return { path: path || "/", query: new URLSearchParams(qs || "") };
}

/** Replace the hash's query without re-rendering (filters kept in the URL). */
export function replaceQuery(params) {
  const { path } = currentRoute();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "" || v === false) continue;
    q.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const text = q.toString();
  history.replaceState(null, "", `#${path}${text ? `?${text}` : ""}`);
}
