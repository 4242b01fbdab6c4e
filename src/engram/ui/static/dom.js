// DOM helpers. Server text only ever becomes text nodes (textContent, createTextNode): no HTML
// string from the server is parsed, so a stored "<script>" is shown, never run.

const SVG = "http://www.w3.org/2000/svg";

function put(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An element: h("a", {href: "#/users"}, "Users"). Strings become text nodes. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  put(node, attrs);
  return append(node, children);
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  put(node, attrs);
  return append(node, children);
}

/** A hash link to a page; the path's parts are encoded one by one (user ids may hold "/"). */
export function route(...parts) {
  return `#/${parts.map((p) => encodeURIComponent(p)).join("/")}`;
}

export function link(text, ...parts) {
  return h("a", { href: route(...parts) }, text);
}

/** A time element, shown in UTC (the server's dates carry their offset). */
export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "none");
  const date = new Date(iso);
  const shown = Number.isNaN(date.getTime())
    ? iso
    : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  return h("time", { datetime: iso }, shown);
}

export function day(iso) {
  return new Date(iso).toISOString().slice(0, 10);
}

/** Words of a query, lower-case, without the few words every question has. */
const STOP = new Set(
  ("a an and are as at be but by did do does for from had has have he her his how i in is it " +
    "its me my of on or our she so that the their them they this to was we were what when " +
    "where which who why will with you your").split(" "),
);

export function queryWords(query) {
  const words = (query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter(
    (w) => w.length > 1 && !STOP.has(w),
  );
  return [...new Set(words)];
}

function matches(word, words) {
  const low = word.toLowerCase();
  return words.some((q) => low === q || (q.length >= 4 && low.startsWith(q.slice(0, Math.max(4, q.length - 2)))));
}

/** The text with the words that match the query's words in <mark> elements (an approximation
 * of the lexical retriever's stemming: same word, or a shared stem-like prefix). */
export function highlight(text, words) {
  const out = document.createDocumentFragment();
  if (!words.length) {
    out.append(text);
    return out;
  }
  let last = 0;
  for (const found of text.matchAll(/[\p{L}\p{N}]+/gu)) {
    if (!matches(found[0], words)) continue;
    out.append(text.slice(last, found.index), h("mark", {}, found[0]));
    last = found.index + found[0].length;
  }
  out.append(text.slice(last));
  return out;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function showError(error) {
  const alert = document.getElementById("alert");
  const kind = error && error.type ? `${error.type}: ` : "";
  alert.replaceChildren(h("strong", {}, "Error. "), `${kind}${error ? error.message : error}`);
  alert.hidden = false;
}

export function clearError() {
  const alert = document.getElementById("alert");
  alert.hidden = true;
  alert.replaceChildren();
}

let busyCount = 0;

/** Run an async action with the page marked busy; an error shows the server's message. */
export async function busy(action) {
  const main = document.getElementById("main");
  busyCount += 1;
  main.setAttribute("aria-busy", "true");
  try {
    clearError();
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    busyCount -= 1;
    if (busyCount === 0) main.setAttribute("aria-busy", "false");
  }
}

/** An in-page confirmation (<dialog>): resolves true only when "Confirm" is pressed. */
export function confirmAction(title, text, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** A small table: headers and rows of cells (strings or nodes). */
export function table(caption, headers, rows) {
  return h("div", { class: "scroll" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((c) => h("td", {}, c))))),
    ),
  );
}

/** A description list from [term, value] pairs (null values are left out). */
export function fields(pairs) {
  return h("dl", { class: "fields" },
    pairs.filter(([, v]) => v !== null && v !== undefined)
      .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}
