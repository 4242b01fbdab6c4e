// The pages of users, sessions and search. Each render function fills <main> from the API.

import { api, listAll, rememberUser, rememberedUsers } from "./api.js";
import {
  busy, confirmAction, day, h, highlight, link, queryWords, route, table, when,
} from "./dom.js";

export function notice() {
  return h("p", { id: "notice", class: "notice", role: "status" });
}

function say(text) {
  const status = document.getElementById("notice");
  if (status) status.textContent = text;
}

function userForm(action, user, label = "Open") {
  const input = h("input", {
    id: "user-id", name: "user", required: true, value: user || "", list: "known-users",
    autocomplete: "off", spellcheck: "false",
  });
  const known = h("datalist", { id: "known-users" },
    rememberedUsers().map((u) => h("option", { value: u })));
  return h("form", {
    class: "inline", onsubmit: (event) => {
      event.preventDefault();
      action(input.value.trim());
    },
  }, h("label", { for: "user-id" }, "User id"), input, known, h("button", { type: "submit" }, label));
}

// -- #/users ------------------------------------------------------------------------------------

const USER_PAGE = 50; // user ids per GET /v1/users call

export async function renderUsers(main, _parts, params) {
  const limit = Math.min(1000, Math.max(1, Number(params.get("limit")) || USER_PAGE));
  const list = h("ul", { class: "users", id: "user-list", "aria-labelledby": "users-title" });
  const more = h("button", { type: "button", id: "more-users", hidden: true }, "More users");
  const empty = h("p", { class: "muted", id: "no-users", hidden: true }, "No users yet.");
  let after = null;
  const next = async () => {
    const page = await api("GET", "/users", { query: { limit, after } });
    list.append(...page.users.map((u) => h("li", {}, link(u, "user", u))));
    after = page.next;
    more.hidden = !after;
    empty.hidden = list.childElementCount > 0;
  };
  more.addEventListener("click", () => busy(next));
  await next();
  main.append(
    h("h1", {}, "Users"),
    h("p", {}, "The users that have memories, in order of their ids (with an API key: only ",
      "its own tenant's users that it may act for). Open one, or open a user by id."),
    userForm((user) => { location.hash = route("user", user); }),
    h("h2", { id: "users-title" }, "All users"),
    list, empty, h("p", { class: "actions" }, more),
  );
}

// -- #/user/<user> ------------------------------------------------------------------------------

function byDay(sessions) {
  const days = new Map();
  for (const session of [...sessions].sort((a, b) => a.first_at.localeCompare(b.first_at))) {
    const key = day(session.first_at);
    if (!days.has(key)) days.set(key, []);
    days.get(key).push(session);
  }
  return days;
}

function timeline(user, sessions) {
  if (!sessions.length) return h("p", { class: "muted", id: "no-sessions" }, "No sessions.");
  const items = [];
  for (const [date, list] of byDay(sessions)) {
    items.push(h("li", { class: "day" },
      h("h3", {}, h("time", { datetime: date }, date)),
      h("ul", {}, list.map((session) => h("li", { class: "session", "data-session": session.session_id },
        link(`Session ${session.session_id}`, "session", user, session.session_id), " ",
        h("span", { class: "count" }, `${session.turns} turn${session.turns === 1 ? "" : "s"}`), " ",
        h("span", { class: "muted" }, when(session.first_at), " – ", when(session.last_at)),
        session.agent_ids.length ? h("span", { class: "muted" }, ` · agent ${session.agent_ids.join(", ")}`) : null,
      ))),
    ));
  }
  return h("ol", { class: "timeline", id: "timeline" }, items);
}

export async function renderUser(main, [user]) {
  rememberUser(user);
  const { sessions } = await api("GET", "/sessions", { query: { user_id: user } });
  const total = sessions.reduce((n, s) => n + s.turns, 0);
  const section = h("section", { "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title" }, `Timeline: ${sessions.length} sessions, ${total} turns`),
    timeline(user, sessions));
  const forget = async () => {
    const ok = await confirmAction(`Forget user ${user}?`,
      "Every record, key and history entry of this user is deleted for good.", "Forget user");
    if (!ok) return;
    await busy(async () => {
      const { forgotten } = await api("POST", "/forget", { body: { user_id: user } });
      say(`Forgot ${forgotten} records of ${user}.`);
      const fresh = await api("GET", "/sessions", { query: { user_id: user } });
      section.replaceChildren(h("h2", { id: "timeline-title" }, "Timeline"), timeline(user, fresh.sessions));
    });
  };
  main.append(
    h("h1", {}, `User ${user}`),
    h("p", { class: "actions" },
      h("a", { href: `#/search?user=${encodeURIComponent(user)}`, class: "button" }, "Search this user"),
      h("a", { href: route("stats", user), class: "button" }, "Stats"),
      h("button", { type: "button", class: "danger", id: "forget-user", onclick: forget }, "Forget this user…")),
    notice(),
    section,
  );
}

// -- #/session/<user>/<session>[/<turn id>] ---------------------------------------------------

function turnView(user, turn, focused) {
  return h("li", { class: focused ? "turn focused" : "turn", id: `turn-${turn.id}`, tabindex: focused ? "-1" : null, "data-id": turn.id },
    h("p", { class: "meta" },
      h("span", { class: `role role-${turn.role}` }, turn.role), " ",
      turn.name ? h("strong", { class: "speaker" }, turn.name) : null, " ",
      when(turn.timestamp), " ",
      link("Open record", "record", user, turn.id)),
    h("p", { class: "text" }, turn.text),
  );
}

export async function renderSession(main, [user, session, focus]) {
  rememberUser(user);
  const turns = await listAll({ user_id: user, session_id: session });
  const list = h("ol", { class: "turns", id: "turns" }, turns.map((t) => turnView(user, t, t.id === focus)));
  const forget = async () => {
    const ok = await confirmAction(`Forget session ${session}?`,
      `Every record of session ${session} of ${user} is deleted for good.`, "Forget session");
    if (!ok) return;
    await busy(async () => {
      const { forgotten } = await api("POST", "/forget", { body: { user_id: user, session_id: session } });
      say(`Forgot ${forgotten} records of session ${session}.`);
      const left = await listAll({ user_id: user, session_id: session });
      list.replaceChildren(...left.map((t) => turnView(user, t, false)));
    });
  };
  main.append(
    h("p", { class: "crumbs" }, link(`User ${user}`, "user", user)),
    h("h1", {}, `Session ${session}`),
    h("p", {}, `${turns.length} turn${turns.length === 1 ? "" : "s"}, in order.`),
    h("p", { class: "actions" },
      h("a", { class: "button", href: `#/search?user=${encodeURIComponent(user)}&session=${encodeURIComponent(session)}` }, "Search this session"),
      h("button", { type: "button", class: "danger", id: "forget-session", onclick: forget }, "Forget this session…")),
    notice(),
    list,
  );
  const target = focus && document.getElementById(`turn-${focus}`);
  if (target) {
    target.scrollIntoView({ block: "center" });
    target.focus();
  }
}

// -- #/search?user=&q=&config=&date=&session=&agent=&limit= ------------------------------------

function field(id, label, input) {
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

function searchForm(p) {
  const input = (id, name, attrs = {}) => h("input", { id, name, value: p.get(name) || "", ...attrs });
  const preset = h("select", { id: "s-config", name: "config" },
    ["hybrid", "lexical", "semantic"].map((v) => h("option", { value: v, selected: (p.get("config") || "hybrid") === v }, v)));
  const form = h("form", { class: "search", id: "search-form", role: "search" },
    field("s-user", "User id", input("s-user", "user", { required: true, list: "known-users", spellcheck: "false" })),
    h("datalist", { id: "known-users" }, rememberedUsers().map((u) => h("option", { value: u }))),
    field("s-query", "Query", input("s-query", "q", { required: true, type: "search" })),
    field("s-config", "Preset", preset),
    field("s-date", "Question date", input("s-date", "date", { type: "date" })),
    field("s-session", "Session (scope)", input("s-session", "session", { spellcheck: "false" })),
    field("s-agent", "Agent (scope)", input("s-agent", "agent", { spellcheck: "false" })),
    field("s-limit", "Hits", input("s-limit", "limit", { type: "number", min: "1", max: "100", value: p.get("limit") || "10" })),
    h("div", { class: "field submit" }, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (String(value).trim()) next.set(name, String(value).trim());
    location.hash = `#/search?${next}`;
  });
  return form;
}

function explanation(hit) {
  const rows = Object.entries(hit.found_by).map(([retriever, found]) => [
    retriever, String(found.rank), found.score.toFixed(4)]);
  return table("Found by", ["retriever", "rank", "score"], rows);
}

function hitView(user, hit, words, n) {
  const r = hit.record;
  return h("li", { class: "hit", "data-id": r.id },
    h("p", { class: "meta" },
      h("span", { class: "score" }, `#${n} score ${hit.score.toFixed(4)}`), " ",
      h("span", { class: `role role-${r.role}` }, r.role), " ",
      r.name ? h("strong", { class: "speaker" }, r.name) : null, " ",
      when(r.timestamp)),
    h("p", { class: "text" }, highlight(r.text, words)),
    h("p", { class: "actions" },
      h("a", { href: route("session", user, r.session_id, r.id), class: "open-hit" }, `In session ${r.session_id}`),
      link("Record", "record", user, r.id)),
    h("details", {},
      h("summary", {}, "Why this hit"),
      explanation(hit),
      h("p", {}, "Matched keys: "),
      h("ul", { class: "keys" }, hit.matched_keys.map((k) => h("li", {}, link(k, "record", user, k))))),
  );
}

export async function renderSearch(main, _parts, params) {
  main.append(h("h1", {}, "Search"), searchForm(params));
  const user = params.get("user");
  const query = params.get("q");
  if (!user || !query) return;
  rememberUser(user);
  const body = {
    user_id: user, query, config: params.get("config") || "hybrid",
    limit: Number(params.get("limit") || 10),
    session_id: params.get("session") || undefined, agent_id: params.get("agent") || undefined,
    question_date: params.get("date") ? `${params.get("date")}T12:00:00Z` : undefined,
  };
  const { hits } = await api("POST", "/search", { body });
  const words = queryWords(query);
  main.append(
    h("h2", { id: "hits-title" }, `${hits.length} hit${hits.length === 1 ? "" : "s"}`),
    hits.length
      ? h("ol", { class: "hits", id: "hits", "aria-labelledby": "hits-title" }, hits.map((hit, i) => hitView(user, hit, words, i + 1)))
      : h("p", { class: "muted", id: "no-hits" }, "Nothing found."),
  );
}
