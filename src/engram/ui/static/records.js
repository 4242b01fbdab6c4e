// The record view: every field, the keys built from the record, its sources and its audit
// history; edit and delete behind a confirmation, the page redrawn from the server's answer.

import { api, DERIVED_KINDS, listAll } from "./api.js";
import { busy, confirmAction, fields, h, link, route, table, when } from "./dom.js";
import { notice } from "./pages.js";

function validity(record) {
  if (!record.valid_from && !record.valid_to) return null;
  return h("span", { class: "validity" }, when(record.valid_from), " – ",
    record.valid_to ? when(record.valid_to) : h("span", { class: "muted" }, "still valid"));
}

function recordFields(user, record) {
  return fields([
    ["Kind", record.kind],
    ["Role", record.role],
    ["Speaker", record.name],
    ["User", link(record.user_id, "user", user)],
    ["Session", record.session_id === null ? null : link(record.session_id, "session", user, record.session_id, record.id)],
    ["Agent", record.agent_id],
    ["Position (seq)", record.seq === null ? null : String(record.seq)],
    ["Said at", when(record.timestamp)],
    ["Recorded at", when(record.created_at)],
    ["Valid", validity(record)],
    ["Message ids", record.message_ids.length ? record.message_ids.join(", ") : null],
    ["Record id", h("code", {}, record.id)],
  ]);
}

function recordList(user, records, empty) {
  if (!records.length) return h("p", { class: "muted" }, empty);
  return h("ul", { class: "records" }, records.map((r) => h("li", { "data-id": r.id },
    h("span", { class: "kind" }, r.kind), " ", link(r.text.length > 160 ? `${r.text.slice(0, 160)}…` : r.text, "record", user, r.id),
    r.valid_from || r.valid_to ? [" ", validity(r)] : null)));
}

async function sources(user, record) {
  const found = [];
  for (const id of record.provenance.slice(0, 50)) {
    try {
      found.push(await api("GET", `/records/${encodeURIComponent(id)}`, { query: { user_id: user } }));
    } catch (error) {
      if (error.status !== 404) throw error;
      found.push({ id, kind: "gone", text: `${id} (deleted)`, valid_from: null, valid_to: null });
    }
  }
  return found;
}

async function derived(user, record) {
  if (record.session_id === null) return [];
  const records = await listAll({ user_id: user, session_id: record.session_id, kind: DERIVED_KINDS });
  return records.filter((r) => r.id !== record.id && r.provenance.includes(record.id));
}

function historyTable(events) {
  if (!events.length) return h("p", { class: "muted" }, "No events.");
  return table(null, ["when", "event", "old text", "new text"], events.map((e) => [
    when(e.at), e.event, e.old_text ?? "", e.new_text ?? ""]));
}

async function details(user, record) {
  const [built, from, history] = await Promise.all([
    derived(user, record), sources(user, record),
    api("GET", `/records/${encodeURIComponent(record.id)}/history`, { query: { user_id: user } }),
  ]);
  return [
    h("section", { "aria-labelledby": "keys-title", id: "keys" },
      h("h2", { id: "keys-title" }, "Keys and facts built from it"),
      recordList(user, built, "None.")),
    h("section", { "aria-labelledby": "sources-title", id: "sources" },
      h("h2", { id: "sources-title" }, "Built from (source records)"),
      recordList(user, from, "None: it is what was said.")),
    h("section", { "aria-labelledby": "history-title", id: "history" },
      h("h2", { id: "history-title" }, "History"), historyTable(history.events)),
  ];
}

function editForm(user, record, redraw) {
  const text = h("textarea", { id: "edit-text", name: "text", rows: "4" });
  text.value = record.text;
  const form = h("form", { id: "edit-form", class: "edit" },
    h("label", { for: "edit-text" }, "Text"), text,
    h("p", { class: "actions" },
      h("button", { type: "submit", id: "save" }, "Save…"),
      h("button", { type: "button", class: "danger", id: "delete", onclick: () => remove(user, record) }, "Delete…")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await confirmAction("Save the new text?",
      "The keys built from this record are rebuilt; the old text stays in its history.", "Save");
    if (!ok) return;
    await busy(async () => {
      const updated = await api("PATCH", `/records/${encodeURIComponent(record.id)}`, {
        body: { user_id: user, text: text.value },
      });
      await redraw(updated, "Saved.");
    });
  });
  return form;
}

async function remove(user, record) {
  const ok = await confirmAction("Delete this record?",
    "The record and the keys built from it are deleted for good; no text of it is kept.", "Delete");
  if (!ok) return;
  await busy(async () => {
    const { deleted } = await api("DELETE", `/records/${encodeURIComponent(record.id)}`, { query: { user_id: user } });
    const main = document.getElementById("main");
    main.replaceChildren(
      h("h1", {}, "Record deleted"),
      h("p", { role: "status", id: "notice", class: "notice" }, `Deleted ${deleted.length} records.`),
      h("ul", { id: "deleted" }, deleted.map((id) => h("li", {}, h("code", {}, id)))),
      record.session_id === null ? null
        : h("p", {}, link(`Back to session ${record.session_id}`, "session", user, record.session_id)));
  });
}

export async function renderRecord(main, [user, id]) {
  const record = await api("GET", `/records/${encodeURIComponent(id)}`, { query: { user_id: user } });
  const body = h("div", { id: "record" });
  const redraw = async (current, message) => {
    const parts = await details(user, current);
    body.replaceChildren(
      h("section", { "aria-labelledby": "text-title" },
        h("h2", { id: "text-title" }, "Text"), h("p", { class: "text", id: "record-text" }, current.text)),
      recordFields(user, current),
      h("section", { "aria-labelledby": "meta-title" },
        h("h2", { id: "meta-title" }, "Metadata"),
        h("pre", { class: "json", id: "metadata" }, JSON.stringify(current.metadata, null, 2))),
      ...parts,
      h("section", { "aria-labelledby": "edit-title" },
        h("h2", { id: "edit-title" }, "Edit or delete"), editForm(user, current, redraw)),
    );
    if (message) document.getElementById("notice").textContent = message;
  };
  main.append(
    h("p", { class: "crumbs" }, link(`User ${user}`, "user", user),
      record.session_id === null ? null : [" › ", h("a", { href: route("session", user, record.session_id, record.id) }, `Session ${record.session_id}`)]),
    h("h1", {}, `Record (${record.kind})`),
    notice(),
    body,
  );
  await redraw(record, null);
}
