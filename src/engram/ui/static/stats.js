// The stats page: record counts per kind, sessions, database size, embedder, and a small chart
// of turns over time (from GET /v1/sessions: each session's turns at the date it began).

import { api, getKey, rememberUser, rememberedUsers } from "./api.js";
import { day, fields, h, route, s, table } from "./dom.js";

function size(bytes) {
  if (bytes === null) return h("span", { class: "muted" }, "not shown with an API key (the file is shared by tenants)");
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let n = bytes;
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit ? n.toFixed(1) : n} ${units[unit]}`;
}

function statsView(title, stats) {
  const kinds = Object.entries(stats.records).sort(([a], [b]) => a.localeCompare(b));
  return h("section", { class: "stats", "aria-label": title },
    h("h2", {}, title),
    fields([
      ["Users", String(stats.users)],
      ["Sessions", String(stats.sessions)],
      ["Database size", size(stats.size_bytes)],
      ["Embedder", stats.embedder ? `${stats.embedder} (${stats.dim} dimensions)` : "none bound yet"],
    ]),
    table("Records per kind", ["kind", "records"], kinds.map(([k, n]) => [k, String(n)])),
  );
}

function buckets(sessions) {
  const counts = new Map();
  if (!sessions.length) return counts;
  const days = sessions.map((x) => day(x.first_at)).sort();
  const span = (new Date(days[days.length - 1]) - new Date(days[0])) / 86400000;
  const cut = span > 62 ? 7 : 10; // by month when over two months, else by day
  for (const session of sessions) {
    const key = day(session.first_at).slice(0, cut);
    counts.set(key, (counts.get(key) || 0) + session.turns);
  }
  return new Map([...counts].sort(([a], [b]) => a.localeCompare(b)));
}

/** Bars drawn with SVG elements (no style attribute: the page's policy allows none). */
function chart(sessions) {
  const counts = buckets(sessions);
  if (!counts.size) return h("p", { class: "muted" }, "No turns yet.");
  const width = 640;
  const height = 200;
  const top = Math.max(...counts.values());
  const step = width / counts.size;
  const bars = [...counts].map(([label, n], i) => {
    const bar = (n / top) * (height - 30);
    return s("g", {},
      s("rect", { x: (i * step + step * 0.15).toFixed(1), y: (height - 20 - bar).toFixed(1), width: (step * 0.7).toFixed(1), height: bar.toFixed(1), class: "bar" },
        s("title", {}, `${label}: ${n} turns`)),
      s("text", { x: (i * step + step / 2).toFixed(1), y: String(height - 5), "text-anchor": "middle", class: "axis" }, counts.size <= 12 ? label : ""),
      s("text", { x: (i * step + step / 2).toFixed(1), y: (height - 24 - bar).toFixed(1), "text-anchor": "middle", class: "value" }, String(n)));
  });
  const label = `Turns over time: ${[...counts].map(([k, n]) => `${k} ${n}`).join(", ")}`;
  return h("figure", { id: "chart" },
    s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" }, bars),
    h("figcaption", {}, "Turns per session start date"),
    h("details", {}, h("summary", {}, "The numbers"),
      table(null, ["date", "turns"], [...counts].map(([k, n]) => [k, String(n)]))));
}

export async function renderStats(main, [user]) {
  const input = h("input", { id: "stats-user", name: "user", value: user || "", list: "known-users", required: !!getKey(), spellcheck: "false" });
  const form = h("form", { class: "inline", onsubmit: (event) => {
    event.preventDefault();
    location.hash = input.value.trim() ? route("stats", input.value.trim()) : "#/stats";
  } }, h("label", { for: "stats-user" }, "User id"), input,
  h("datalist", { id: "known-users" }, rememberedUsers().map((u) => h("option", { value: u }))),
  h("button", { type: "submit" }, "Show"));
  main.append(h("h1", {}, "Stats"), form);
  if (!getKey()) {
    main.append(statsView("Whole store (keyless mode)", await api("GET", "/stats")));
  }
  if (!user) {
    if (getKey()) main.append(h("p", { class: "muted" }, "With an API key, stats are per user: name one."));
    return;
  }
  rememberUser(user);
  const [stats, listed] = await Promise.all([
    api("GET", "/stats", { query: { user_id: user } }),
    api("GET", "/sessions", { query: { user_id: user } }),
  ]);
  main.append(statsView(`User ${user}`, stats),
    h("section", { "aria-labelledby": "chart-title" }, h("h2", { id: "chart-title" }, "Turns over time"), chart(listed.sessions)));
}
