// statekeel inspector: a small hash-routed page over the JSON API of statekeel.ui.server.
// No framework, no network beyond this server; every value is inserted as text, never as HTML.
"use strict";

const state = { overview: null, refresh: null, lastJson: "", cursors: {}, events: null, eventsFor: null };
const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(name, params) {
  const qs = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
  const res = await fetch(`/api/${name}${qs.toString() ? "?" + qs : ""}`, { credentials: "same-origin" });
  const body = await res.json();
  if (!res.ok) throw new ApiError(res.status, body.error || res.statusText);
  return body;
}

async function act(name, body) {
  const res = await fetch(`/api/action/${name}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Statekeel-Write": "1" },
    body: JSON.stringify({ ...body, confirm: true }),
  });
  const out = await res.json();
  if (!res.ok) throw new ApiError(res.status, out.error || res.statusText);
  return out;
}

// -- small renderers -------------------------------------------------------------------
const time = (iso) => iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "never";
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const link = (href, text) => h("a", { href }, text);
const enc = encodeURIComponent;

function json(value) {
  const flat = typeof value === "string" ? value : JSON.stringify(value);
  const text = flat === undefined || flat.length <= 100 ? flat : JSON.stringify(value, null, 2);
  if (text === undefined) return h("pre", {}, "null");
  if (text.length < 600) return h("pre", {}, text);
  return h("details", {}, h("summary", {}, `${text.slice(0, 80)}… (${text.length} chars)`), h("pre", {}, text));
}

function table(columns, rows, label) {
  return h("div", { class: "scroll" }, h("table", { "aria-label": label },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.wide ? "wide" : null }, c.name || c)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((cell, i) =>
      h("td", { class: columns[i].wide ? "wide" : (i === 0 ? "id" : null) }, cell)))) :
      h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "nothing here")))));
}

function cards(pairs) {
  return h("div", { class: "cards" }, pairs.map(([k, v]) =>
    h("div", { class: "card" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v))));
}

function view(title, ...children) {
  const main = $("#view");
  main.replaceChildren(h("h1", {}, title), ...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · statekeel`;
}

function showError(err) {
  const locked = err.status === 423;
  view(locked ? "Locked" : "Error", h("div", { class: "panel", role: "alert" },
    h("p", { class: locked ? null : "error" }, err.message)));
}

// -- write actions with a confirmation step -------------------------------------------
function actionButton(label, make) {
  const writes = state.overview && state.overview.writes;
  return h("button", {
    type: "button", class: "danger", "aria-disabled": writes ? null : "true",
    title: writes ? null : "read-only: start `statekeel ui --allow-writes` to enable",
    onclick: () => writes ? confirmAction(make()) : flash("This inspector is read-only: start it with --allow-writes."),
  }, label);
}

function flash(text) {
  const b = $("#banner");
  b.textContent = text; b.hidden = false;
  setTimeout(() => { b.hidden = true; }, 6000);
}

function confirmAction(spec) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = spec.title;
  $("#confirm-text").textContent = spec.text;
  $("#confirm-error").textContent = "";
  const fields = (spec.fields || []).map((f) => h("label", {}, f.label,
    h(f.multiline ? "textarea" : "input", { name: f.name, value: f.value || "", required: true, rows: 3 })));
  fields.forEach((l, i) => { if (spec.fields[i].multiline) l.lastChild.value = spec.fields[i].value || ""; });
  $("#confirm-fields").replaceChildren(...fields);
  const ok = $("#confirm-ok");
  ok.onclick = async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries([...dlg.querySelectorAll("[name]")].map((el) => [el.name, el.value]));
    try {
      const body = spec.body(values);
      const out = await act(spec.action, body);
      dlg.close();
      flash(`${spec.action}: done`);
      if (spec.after) spec.after(out); else rerender();
    } catch (err) {
      $("#confirm-error").textContent = err.message;
    }
  };
  dlg.showModal();
  (dlg.querySelector("[name]") || $("#confirm-cancel")).focus();
}

function parseJson(text) {
  try { return JSON.parse(text); } catch (e) { return text; }
}

// -- pages -------------------------------------------------------------------------------
async function overviewPage() {
  const o = state.overview = await api("overview");
  const size = o.size ? `${(o.size.bytes / 1048576).toFixed(2)} MiB` : "n/a";
  const schema = `v${o.schema.current}` + (o.schema.up_to_date ? "" : ` (needs v${o.schema.target})`);
  const countBox = h("div", { id: "counts" }, h("p", { class: "muted" }, "counting…"));
  view("Store overview",
    o.locked ? h("div", { class: "panel error", role: "alert", "data-testid": "locked" }, o.locked) : null,
    cards([["backend", o.backend], ["schema", schema], ["encryption", o.encryption], ["size on disk", size],
      ["mode", o.writes ? "writes enabled" : "read-only"]]),
    h("p", { class: "muted" }, o.url), h("h2", {}, "Counts"), countBox);
  const c = await api("counts");
  countBox.replaceChildren(cards([["sessions", c.sessions], ["runs", c.runs], ["open decisions", c.open_decisions],
    ["event streams", c.streams], ["erasures", c.erasures]]),
  h("p", { class: "muted" }, `counted at ${time(new Date(c.as_of * 1000).toISOString())} (recounted every 30 s at most)`));
  return c;
}

function filterForm(fields, params, route) {
  const form = h("form", { class: "filters", role: "search" }, fields.map((f) => h("label", {}, f.label,
    f.options ? h("select", { name: f.name }, [["", "any"], ...f.options].map((o) => Array.isArray(o) ? o : [o, o])
      .map(([v, t]) => h("option", { value: v, selected: (params.get(f.name) || "") === v }, t)))
      : h("input", { name: f.name, value: params.get(f.name) || "", placeholder: f.placeholder || "", type: "search" }))),
  h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const qs = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = `${route}${qs.toString() ? "?" + qs : ""}`;
  });
  return form;
}

function pager(route, params, next) {
  const key = `${route}?${[...params].filter(([k]) => k !== "after").map((p) => p.join("=")).join("&")}`;
  const stack = state.cursors[key] = state.cursors[key] || [];
  const go = (after) => { const p = new URLSearchParams(params); if (after) p.set("after", after); else p.delete("after");
    location.hash = `${route}${p.toString() ? "?" + p : ""}`; };
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: !params.get("after"), onclick: () => go(stack.pop() || null) }, "← Previous"),
    h("button", { type: "button", disabled: !next, "data-testid": "next-page",
      onclick: () => { stack.push(params.get("after") || ""); go(next); } }, "Next →"));
}

function withAfter(params, after) {
  const p = new URLSearchParams(params);
  p.set("after", after);
  return p.toString();
}

async function sessionsPage(params) {
  const o = state.overview || await api("overview");
  const data = await api("sessions", Object.fromEntries(params));
  const rows = data.items.map((s) => [link(`#/session/${enc(s.id)}`, s.id), s.user || "", badge(s.status),
    time(s.updated_at), time(s.expires_at)]);
  view("Sessions",
    filterForm([{ name: "q", label: "search id (prefix)", placeholder: "support-" },
      { name: "has", label: "id contains", placeholder: "42" },
      { name: "status", label: "status", options: o.session_statuses }, { name: "user", label: "user" },
      { name: "stale", label: "silent for (e.g. 5m)" }], params, "#/sessions"),
    table(["id", "user", "status", "updated", { name: "expires", wide: true }], rows, "sessions"),
    data.more ? h("p", { class: "muted", "data-testid": "more" }, `Searched ${data.scanned} sessions up to `,
      h("code", {}, data.next), " without filling the page: ",
      link(`#/sessions?${withAfter(params, data.next)}`, "more…")) : null,
    pager("#/sessions", params, data.next));
  return data;
}

function entryView(e, sessionId) {
  const meta = (kind, ...rest) => h("div", { class: "meta" }, badge(kind), h("time", { datetime: e.time }, time(e.time)),
    ...rest.map((r) => typeof r === "string" ? h("span", {}, r) : r));
  const li = (cls, ...c) => h("li", { class: `kind-${e.kind} ${cls || ""}`, "data-kind": e.kind,
    "data-seq": e.seq || null, "data-testid": "entry" }, ...c);
  switch (e.kind) {
    case "message": case "tool_call": case "tool_result": {
      const v = e.value, calls = v && v.tool_calls;
      const text = v && typeof v === "object" && "content" in v ? v.content : v;
      return li("", meta(e.kind === "message" ? (e.role || "message") : e.kind.replace("_", " "), `#${e.seq}`),
        text !== null && text !== undefined && text !== "" ? json(text) : null,
        calls ? calls.map((c) => [h("div", { class: "title" }, "→ ", (c.function && c.function.name) || c.name || "tool"),
          json((c.function && c.function.arguments) || c.args || c)]) : null);
    }
    case "decision":
      return li(e.incomplete ? "incomplete" : "", meta("decision", badge(e.status), e.incomplete ? h("strong", {}, "INCOMPLETE") : null),
        h("div", { class: "title" }, e.decision), e.rationale ? h("div", {}, "why: ", e.rationale) : null,
        e.action !== null ? h("div", {}, "action: ", json(e.action)) : null,
        e.incomplete ? h("div", { class: "actions" }, actionButton("Resolve…", () => ({
          action: "resolve", title: "Resolve decision", text: `Record an outcome for "${e.decision}" (${e.id}).`,
          fields: [{ name: "outcome", label: "outcome (JSON or text)", value: "" }, { name: "by", label: "resolved by", value: "inspector" }],
          body: (v) => ({ decision: e.id, outcome: parseJson(v.outcome), by: v.by || null }) }))) :
          h("div", {}, "outcome: ", json(e.error || e.outcome)));
    case "state":
      return li("", meta("state", `v${e.version}`), h("div", { class: "title" }, e.key), json(e.value));
    case "note":
      return li("", meta("note", `by ${e.author}`), json(e.value));
    case "checkpoint":
      return li("", meta("checkpoint", `#${e.id}`, e.label ? `"${e.label}"` : null, `history ≤ ${e.history_seq}`, `${e.keys} keys`),
        h("div", { class: "actions" }, link(`#/session/${enc(sessionId)}/diff?a=${e.id}`, "diff to now"),
          ...checkpointActions(sessionId, e.id, e.label)));
    default:
      return li("", meta(e.kind), json(e));
  }
}

function checkpointActions(sessionId, cpId, label) {
  const name = label ? `${cpId} ("${label}")` : `${cpId}`;
  return [
    actionButton("Restore…", () => ({ action: "restore", title: "Restore checkpoint",
      text: `Roll the state of ${sessionId} back to checkpoint ${name}. Later history is hidden, not deleted.`,
      body: () => ({ session: sessionId, checkpoint: cpId }) })),
    actionButton("Fork…", () => ({ action: "fork", title: "Fork into a new session",
      text: `Create a new session holding checkpoint ${name}'s state and history.`,
      fields: [{ name: "into", label: "new session id", value: `${sessionId}-fork` }],
      body: (v) => ({ session: sessionId, checkpoint: cpId, into: v.into }),
      after: (out) => { location.hash = `#/session/${enc(out.forked.id)}`; } })),
  ];
}

async function sessionPage(id, params) {
  if (!state.overview) state.overview = await api("overview");
  const [s, t] = await Promise.all([api("session", { id }), api("timeline", { id, before: params.get("before") })]);
  const del = state.overview.can_delete ? actionButton("Delete session…", () => ({ action: "delete", title: "Delete session",
    text: `Delete ${id} with its history, state, decisions, notes and checkpoints. This cannot be undone.`,
    body: () => ({ session: id }), after: () => { location.hash = "#/sessions"; } })) : null;
  const older = t.older ? link(`#/session/${enc(id)}?before=${t.older}`, "← older entries") : null;
  const newest = t.newest ? null : link(`#/session/${enc(id)}`, "newest entries →");
  view(`Session ${id}`,
    cards([["status", badge(s.status)], ["user", s.user || "—"], ["messages", s.messages],
      ["updated", time(s.updated_at)], ["expires", time(s.expires_at)]]),
    h("div", { class: "actions" }, del, link(`#/memories?id=${enc(id)}`, "memories & working set")),
    h("h2", {}, "Timeline"), h("div", { class: "pager" }, older, newest),
    h("ol", { class: "timeline", "aria-label": "timeline" }, t.entries.map((e) => entryView(e, id))),
    h("div", { class: "pager" }, older, newest),
    h("h2", {}, "Checkpoints"),
    table(["id", "label", "time", "history", "keys", "", ""], s.checkpoints.map((c) => [String(c.id), c.label || "",
      time(c.created_at), String(c.history_seq), String(c.keys),
      link(`#/session/${enc(id)}/diff?a=${c.id}`, "diff to now"), h("span", { class: "actions" }, ...checkpointActions(id, c.id, c.label))]),
    "checkpoints"));
  return { s, t };
}

function pathText(path) { return path.map((p) => typeof p === "number" ? `[${p}]` : `.${p}`).join("").replace(/^\./, ""); }

async function diffPage(id, params) {
  const [d, s] = await Promise.all([api("diff", { id, a: params.get("a"), b: params.get("b") }), api("session", { id })]);
  const shown = (v) => json(JSON.stringify(v));  // JSON, so "1" and 1 differ
  const rows = d.changes.map((c) => h("tr", { class: c.op }, h("td", {}, c.op), h("td", { class: "id" }, pathText(c.path)),
    h("td", {}, "from" in c ? shown(c.from) : ""), h("td", {}, "to" in c ? shown(c.to) : "")));
  const choice = (name, label, withNow) => h("label", {}, label, h("select", { name },
    [...(withNow ? [["", "now"]] : []), ...s.checkpoints.map((c) => [String(c.id), `${c.id}${c.label ? ` (${c.label})` : ""}`])]
      .map(([v, t]) => h("option", { value: v, selected: (params.get(name) || "") === v ||
        s.checkpoints.some((c) => c.label && c.label === params.get(name) && String(c.id) === v) }, t))));
  const form = h("form", { class: "filters" }, choice("a", "from checkpoint", false), choice("b", "to", true),
    h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const qs = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = `#/session/${enc(id)}/diff?${qs}`;
  });
  view(`Diff of ${id}: ${d.a} → ${d.b || "now"}`,
    h("p", {}, link(`#/session/${enc(id)}`, "← session"), ` · history seq ${d.history_from} → ${d.history_to}`),
    form,
    h("div", { class: "scroll diff" }, h("table", { "aria-label": "diff" },
      h("thead", {}, h("tr", {}, ["change", "field", "from", "to"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "no state changes"))))));
  return d;
}

async function decisionsPage(params) {
  if (!state.overview) state.overview = await api("overview");
  const data = await api("decisions", Object.fromEntries(params));
  const resolve = (d) => actionButton("Resolve…", () => ({
    action: "resolve", title: "Resolve decision", text: `Record an outcome for "${d.decision}" (${d.id}).`,
    fields: [{ name: "outcome", label: "outcome (JSON or text)", value: "" }, { name: "by", label: "resolved by", value: "inspector" }],
    body: (v) => ({ decision: d.id, outcome: parseJson(v.outcome), by: v.by || null }) }));
  view("Decisions", filterForm([{ name: "incomplete", label: "show", options: [["1", "incomplete only"]] },
    { name: "session", label: "session id" }], params, "#/decisions"),
  h("p", { class: "muted" }, "Incomplete: decided, never finished (the process died inside the block) — what recovery looks at."),
  table(["decision", "session", "status", "decided", "action", "outcome / error", ""], data.items.map((d) => [
    d.decision, link(`#/session/${enc(d.session)}`, d.session), badge(d.status), time(d.created_at), json(d.action),
    d.incomplete ? h("strong", {}, "INCOMPLETE") : json(d.error || d.outcome), d.incomplete ? resolve(d) : ""]), "decisions"),
  pager("#/decisions", params, data.next));
  return data;
}

async function runsPage(params) {
  const o = state.overview || await api("overview");
  const data = await api("runs", Object.fromEntries(params));
  view("Runs", filterForm([{ name: "status", label: "status", options: o.run_statuses }], params, "#/runs"),
    table(["id", "status", "steps done", "last step", "updated", "waiting for / error"], data.items.map((r) => [
      link(`#/run/${enc(r.id)}`, r.id), badge(r.status), String(r.steps_completed), r.last_step || "",
      time(r.updated_at), r.waiting_for ? `${r.waiting_for}: ${r.prompt || ""}` : (r.error || "")]), "runs"),
    pager("#/runs", params, data.next));
  return data;
}

const secs = (v) => v === null || v === undefined ? "" : v < 0.001 ? `${Math.round(v * 1e6)} µs`
  : v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;

async function runPage(id) {
  if (!state.overview) state.overview = await api("overview");
  const r = await api("run", { id });
  const resume = r.status === "waiting" ? h("div", { class: "panel" }, h("strong", {}, `Waiting for ${r.waiting_for}`),
    r.prompt ? h("p", {}, r.prompt) : null, actionButton("Resume…", () => ({ action: "resume", title: "Resume run",
      text: `Supply the input ${r.id} waits for at "${r.waiting_for}".`,
      fields: [{ name: "value", label: "value (JSON or text)", value: "", multiline: true }],
      body: (v) => ({ run: r.id, step: r.waiting_for, value: parseJson(v.value) }) }))) : null;
  view(`Run ${id}`, cards([["status", badge(r.status)], ["steps done", r.steps_completed], ["created", time(r.created_at)],
    ["updated", time(r.updated_at)]]), r.error ? h("p", { class: "error" }, r.error) : null, resume,
  h("h2", {}, "Steps"), table(["step", "kind", "status", "attempts", "started", "took", "result / error"],
    r.steps.map((s) => [s.name, s.kind, badge(s.status), String(s.attempts), time(s.started_at), secs(s.duration),
      s.status === "completed" ? json(s.result) : (s.error || s.prompt || "")]), "steps"),
  h("h2", {}, "Attempts"), table(["step", "started", "took", "error"], r.steps.flatMap((s) => s.history.map((a) =>
    [s.name, a.started_at ? time(new Date(a.started_at * 1000).toISOString()) : "", secs(a.duration), a.error || ""])), "attempts"),
  Object.keys(r.inputs).length ? [h("h2", {}, "Inputs supplied"), table(["wait", "value"],
    Object.entries(r.inputs).map(([k, v]) => [k, json(v)]), "inputs")] : null);
  return r;
}

async function streamsPage(params) {
  const data = await api("streams", Object.fromEntries(params));
  view("Event streams", table(["stream", "events", "consumers"], data.items.map((s) =>
    [link(`#/events/${enc(s.name)}`, s.name), String(s.last_seq), String(s.consumers)]), "streams"),
  pager("#/events", params, data.next));
  return data;
}

async function streamPage(name, params) {
  const d = await api("stream", { name, before: params.get("before") });
  const p = d.projection;
  view(`Stream ${name}`, cards([["events", d.last_seq], ["consumers", d.consumers.length]]),
    h("h2", {}, "Consumers"), table(["consumer", "position", "lag"], d.consumers.map((c) =>
      [c.name, String(c.position), c.lag ? h("strong", {}, String(c.lag)) : "0"]), "consumers"),
    h("h2", {}, "Projection preview"), h("p", { class: "muted" },
      p.folded ? `counts and latest payload by type, folded over events ${p.from_seq}–${p.to_seq}` : "no events yet"),
    table(["type", "count", "latest"], p.by_type.map((t) => [t.type, String(t.count), json(t.latest.data)]), "projection"),
    h("h2", {}, "Events (newest first)"),
    table(["seq", "time", "type", "agent", "data"], d.events.map((e) => [String(e.seq), time(e.time), e.type, e.agent || "", json(e.data)]), "events"),
    d.older ? h("p", {}, link(`#/events/${enc(name)}?before=${d.older}`, "older events →")) : null);
  return d;
}

async function erasuresPage(params) {
  const data = await api("erasures", Object.fromEntries(params));
  view("Erasure log", h("p", { class: "muted" }, "Who was erased is never kept: only when, how much, and a keyed digest."),
    table(["id", "when", "partitions", "keys destroyed", "subject digest"], data.items.map((e) => [e.id,
      time(new Date(e.at * 1000).toISOString()), String(e.partitions), e.crypto_shredded ? "yes" : "no", e.subject_digest || ""]), "erasures"),
    pager("#/erasures", params, data.next));
  return data;
}

async function memoriesPage(params) {
  const m = await api("memories", Object.fromEntries(params));
  const nsLink = (ns) => link(`#/memories?${new URLSearchParams({ ns: JSON.stringify(ns), ...(m.working_set ? { id: m.working_set.session } : {}) })}`, ns.join(" / "));
  const search = m.ns ? filterForm([{ name: "q", label: "search (full text)" }, { name: "ns", label: "namespace (JSON)" }],
    params, "#/memories") : null;
  view("Memories and working set",
    h("h2", {}, "Namespaces"),
    m.namespaces.length ? h("ul", { "aria-label": "namespaces" }, m.namespaces.map((ns) => h("li", {}, nsLink(ns))))
      : h("p", { class: "muted" }, "no memories in this store"),
    m.ns ? [h("h2", {}, `Memories in ${m.ns.join(" / ")}`), search,
      table(["key", "text", "value", m.q ? "score" : "updated"], m.items.map((i) => [i.key, i.text, json(i.value),
        m.q ? String(i.score) : time(i.updated_at)]), "memories")] : null,
    m.working_set ? [h("h2", {}, `Working set of ${m.working_set.session} (${m.working_set.budget} tokens)`),
      h("pre", { "data-testid": "working-set" }, m.working_set.text)] : null);
  return m;
}

// -- routing and live updates --------------------------------------------------------------
function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const nav = { "": "overview", session: "sessions", run: "runs" }[parts[0] || ""] || parts[0];
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (!parts.length) return () => overviewPage();
  if (parts[0] === "sessions") return () => sessionsPage(params);
  if (parts[0] === "session" && parts[2] === "diff") return () => diffPage(parts[1], params);
  if (parts[0] === "session") return () => sessionPage(parts[1], params);
  if (parts[0] === "runs") return () => runsPage(params);
  if (parts[0] === "decisions") return () => decisionsPage(params);
  if (parts[0] === "run") return () => runPage(parts[1]);
  if (parts[0] === "events" && parts[1]) return () => streamPage(parts[1], params);
  if (parts[0] === "events") return () => streamsPage(params);
  if (parts[0] === "erasures") return () => erasuresPage(params);
  if (parts[0] === "memories") return () => memoriesPage(params);
  return async () => view("Not found", h("p", {}, "No such page. ", link("#/", "Go to the overview")));
}

// Renders never overlap: a poll renders into a hidden twin of #view and swaps it in, so a
// re-render running meanwhile would write into the twin, which the poll then discards (the page
// kept showing what it showed before a write). One chain runs them one after another.
let renders = Promise.resolve();
function exclusive(fn) {
  const run = renders.then(fn, fn);
  renders = run.catch(() => {});
  return run;
}

const rerender = (focus) => exclusive(() => rerenderNow(focus));

async function rerenderNow(focus) {
  const render = state.refresh = route();
  try {
    state.lastJson = JSON.stringify(await render());
  } catch (err) { showError(err); }
  if (focus) $("#view").focus({ preventScroll: true });
  $("#view").dataset.ready = "1";
  listen();
}

const FOCUSABLE = "a, button, input, select, textarea, summary";

// A session page listens to /api/events (server-sent events) and re-renders when told; every other
// page, and a session page whose stream failed, polls every 2 s instead.
function sessionOfRoute() {
  const parts = (location.hash.slice(1) || "/").split("?")[0].split("/").filter(Boolean).map(decodeURIComponent);
  return parts[0] === "session" && parts.length === 2 ? parts[1] : null;
}

function listen() {
  const id = sessionOfRoute();
  if (state.eventsFor === id && (state.events || id === null)) return;
  if (state.events) state.events.close();
  state.events = null; state.eventsFor = id; document.body.dataset.live = "poll";
  if (id === null || typeof EventSource !== "function") return;
  const es = state.events = new EventSource(`/api/events?session=${enc(id)}`);
  es.addEventListener("ready", () => { if (state.events === es) document.body.dataset.live = "sse"; });
  es.addEventListener("change", () => poll("sse"));
  es.addEventListener("gone", () => { es.close(); poll("sse"); });
  es.onerror = () => {  // fall back to polling for this page; a new page tries SSE again
    es.close();
    if (state.events === es) { state.events = null; document.body.dataset.live = "poll"; }
  };
}

const streaming = () => state.events !== null && state.events.readyState === EventSource.OPEN;

const poll = (source) => exclusive(() => pollNow(source));

async function pollNow(source) {
  if (source !== "sse" && streaming() && !state.missed) return;
  const active = document.activeElement;
  if (!$("#live").checked || document.hidden || $("#confirm").open || !state.refresh ||
      (active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName))) {
    state.missed = state.missed || source === "sse";  // a pushed change waits for the next tick
    return;
  }
  state.missed = false;
  const render = state.refresh, view = $("#view"), y = window.scrollY;
  const focusAt = [...view.querySelectorAll(FOCUSABLE)].indexOf(active);
  // render into a hidden twin; only a change replaces what the reader sees
  const twin = h("main", { tabindex: "-1", "aria-live": "polite", hidden: true });
  view.id = "view-old"; twin.id = "view"; view.after(twin);
  let out = null;
  try { out = JSON.stringify(await render()); } catch (err) { out = null; }
  if (out !== null && render === state.refresh && out !== state.lastJson) {
    view.remove(); twin.hidden = false; twin.dataset.ready = "1"; state.lastJson = out;
    document.body.dataset.updatedBy = source === "sse" ? "sse" : "poll";
    window.scrollTo(0, y);
    const again = twin.querySelectorAll(FOCUSABLE)[focusAt];
    if (focusAt >= 0 && again) again.focus({ preventScroll: true });
  } else { twin.remove(); view.id = "view"; }
}

async function start() {
  try { state.overview = await api("overview"); } catch (err) { /* shown by the page itself */ }
  const o = state.overview;
  if (o) {
    $("#mode").textContent = o.locked ? "locked" : (o.writes ? "writes enabled" : "read-only");
    $("#mode").classList.toggle("writes", !!o.writes);
  }
  if (location.search.includes("token=")) history.replaceState(null, "", "/" + location.hash);
  window.addEventListener("hashchange", () => rerender(true));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "/" && !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) {
      const search = $("input[type=search]");
      if (search) { ev.preventDefault(); search.focus(); }
    }
  });
  await rerender(false);
  setInterval(() => poll("timer"), 2000);
}

start();
