// The one door to the server: the public /v1 REST API, with the API key of this tab.
// The key lives in sessionStorage (this tab only, gone when it closes) and is sent as
// "Authorization: Bearer <key>", the header the API reads. No key: keyless loopback mode.

const KEY = "engram.apiKey";
const USERS = "engram.users";
const PAGE = 1000; // the most records GET /v1/records returns at once

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  const clean = key.trim();
  if (clean === getKey()) return;
  if (clean) sessionStorage.setItem(KEY, clean);
  else sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USERS); // users remembered for one key are not shown for another
}

export function rememberedUsers() {
  try {
    const users = JSON.parse(sessionStorage.getItem(USERS) || "[]");
    return Array.isArray(users) ? users.filter((u) => typeof u === "string") : [];
  } catch {
    return [];
  }
}

export function rememberUser(user) {
  const users = [user, ...rememberedUsers().filter((u) => u !== user)].slice(0, 50);
  sessionStorage.setItem(USERS, JSON.stringify(users));
}

function url(path, query) {
  const target = new URL(`../v1${path}`, document.baseURI); // relative: works under a proxy prefix
  for (const [name, value] of Object.entries(query || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v !== undefined && v !== null && v !== "") target.searchParams.append(name, String(v));
    }
  }
  return target;
}

/** One request; the parsed JSON answer, or an ApiError with the server's own message. */
export async function api(method, path, { query, body } = {}) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, query), {
      method, headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    throw new ApiError(0, "NetworkError", `the server cannot be reached (${exc.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status, error.type || "HTTPError",
      error.message || `the server answered ${response.status} ${response.statusText}`,
    );
  }
  return data;
}

/** Every record GET /v1/records lists for these filters, page after page by its cursors. */
export async function listAll(query, most = 20 * PAGE) {
  const records = [];
  let cursor = null;
  while (records.length < most) {
    const page = await api("GET", "/records", { query: { ...query, limit: PAGE, cursor } });
    records.push(...page.records);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return records;
}

export const DERIVED_KINDS = ["round", "window", "sentence", "fact", "summary"];
