// The memory browser: hash routes, the key field, and the page frame. Pages are in pages.js,
// records.js and stats.js; every one of them reads the public /v1 REST API (api.js).

import { getKey, setKey } from "./api.js";
import { busy, h } from "./dom.js";
import { renderSearch, renderSession, renderUser, renderUsers } from "./pages.js";
import { renderRecord } from "./records.js";
import { renderStats } from "./stats.js";

const ROUTES = {
  users: { render: renderUsers, nav: "users", title: "Users" },
  user: { render: renderUser, nav: "users", title: "User" },
  session: { render: renderSession, nav: "users", title: "Session" },
  record: { render: renderRecord, nav: "users", title: "Record" },
  search: { render: renderSearch, nav: "search", title: "Search" },
  stats: { render: renderStats, nav: "stats", title: "Stats" },
};

function parse(hash) {
  const [path, query] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { name: parts[0] || "users", parts: parts.slice(1), params: new URLSearchParams(query || "") };
}

async function draw() {
  const hash = location.hash;
  if (hash && !hash.startsWith("#/")) return; // an in-page anchor
  const { name, parts, params } = parse(hash);
  const page = ROUTES[name];
  const main = document.getElementById("main");
  for (const a of document.querySelectorAll("nav a")) {
    if (page && a.dataset.nav === page.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page ? page.title : "Not found"} · Engram`;
  // the page is drawn into a container of its own: one left behind by a newer draw is detached
  const fresh = h("div", { class: "page" });
  main.replaceChildren(fresh);
  await busy(async () => {
    if (!page) {
      fresh.append(h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/users" }, "Users")));
      return;
    }
    await page.render(fresh, parts, params);
  });
  if (fresh.isConnected) main.dataset.route = hash; // drawn (the tests wait for this)
}

function keyState() {
  document.getElementById("key-state").textContent = getKey()
    ? "A key is in use (kept in this tab only)."
    : "No key: keyless loopback mode.";
}

function start() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  input.value = getKey();
  keyState();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value);
    keyState();
    draw();
  });
  document.getElementById("key-clear").addEventListener("click", () => {
    input.value = "";
    setKey("");
    keyState();
    draw();
  });
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    document.getElementById("main").focus();
  });
  window.addEventListener("hashchange", draw);
  draw();
}

start();
