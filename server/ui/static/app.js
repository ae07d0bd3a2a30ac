// Chat page of the Agentic Platform: Agent Protocol runs streamed over SSE (fetch + ReadableStream,
// since EventSource cannot POST), the conversation's hosted apps (ids from the thread's state, status
// and signed links from /v1/apps), and the workspace's files / versions / diffs from the /v1 REST API.
"use strict";

const ASSISTANT = "agent";
const STREAM_MODES = ["values", "messages-tuple", "custom"];
const $ = (id) => document.getElementById(id);

const ui = {
  threadId: null,
  runId: null,
  workspaceId: localStorage.getItem("agentic.workspace") || null,
  apiKey: localStorage.getItem("agentic.apiKey") || "",
  abort: null,
  bubbles: new Map(), // message id -> element receiving streamed tokens
  appIds: [], // hosted apps of this conversation (the graph state's app_ids)
};

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (ui.apiKey) h["X-API-Key"] = ui.apiKey;
  return h;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { askKey(); throw new Error("an API key is required"); }
  if (!res.ok) {
    let message = res.statusText;
    try { const err = await res.json(); message = (err.error && err.error.message) || JSON.stringify(err); } catch (_) { /* keep */ }
    throw new Error(`${method} ${path}: ${message}`);
  }
  return res.status === 204 ? null : res.json();
}

function askKey() {
  const key = window.prompt("API key for this server (stored in this browser):", ui.apiKey);
  if (key !== null) { ui.apiKey = key.trim(); localStorage.setItem("agentic.apiKey", ui.apiKey); }
}

function setStatus(text) { $("status").textContent = text; }

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
}

// ---------- rendering ----------

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Links in replies (http(s) addresses and the signed links of hosted apps) become clickable.
const LINK = /(https?:\/\/[^\s<>"']+|\/apps\/[A-Za-z0-9]+\/\?agentic_link=[^\s<>"']+)/g;

function linkify(escaped) {
  return escaped.replace(LINK, (url) => `<a href="${url}" target="_blank" rel="noopener">${url}</a>`);
}

// Text with ``` fenced blocks rendered as code; everything else stays plain text (links clickable).
function renderText(el, text) {
  const parts = text.split(/```/);
  el.innerHTML = parts.map((part, i) => {
    if (i % 2 === 0) return linkify(escapeHtml(part));
    const nl = part.indexOf("\n");
    const code = nl >= 0 ? part.slice(nl + 1) : part;
    return `<pre><code>${escapeHtml(code.replace(/\n$/, ""))}</code></pre>`;
  }).join("");
  el.dataset.text = text;
}

function scrollDown() { const m = $("messages"); m.scrollTop = m.scrollHeight; }

function addElement(cls, html) {
  const hint = $("empty-hint");
  if (hint) hint.remove();
  const el = document.createElement("div");
  el.className = cls;
  if (html !== undefined) el.innerHTML = html;
  $("messages").appendChild(el);
  scrollDown();
  return el;
}

function addMessage(role, text) {
  const el = addElement(`msg ${role}`);
  renderText(el, text);
  return el;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((b) => (typeof b === "string" ? b : b.text || "")).join("");
  return "";
}

function isAi(msg) { return msg && (msg.type === "ai" || msg.type === "AIMessageChunk"); }

// Nodes whose model output is a routing decision (JSON), not prose for the user; their final
// answers reach the page through the "values" events instead.
const HIDDEN_NODES = new Set(["task_agent"]);

function onMessageChunk([chunk, meta]) {
  if (!isAi(chunk)) return;
  if (meta && HIDDEN_NODES.has(meta.langgraph_node)) return;
  const piece = textOf(chunk.content);
  if (!piece) return;
  let el = ui.bubbles.get(chunk.id);
  if (!el) { el = addMessage("ai streaming", ""); ui.bubbles.set(chunk.id, el); el.dataset.text = ""; }
  renderText(el, (el.dataset.text || "") + piece);
  scrollDown();
}

function onValues(values) {
  const msgs = Array.isArray(values.messages) ? values.messages : [];
  for (const msg of msgs) {
    if (!isAi(msg) || !msg.id) continue;
    const text = textOf(msg.content);
    let el = ui.bubbles.get(msg.id);
    if (!el && ui.seen.has(msg.id)) continue; // from an earlier turn
    if (!el && text) { el = addMessage("ai", text); ui.bubbles.set(msg.id, el); }
    if (el && text) renderText(el, text);
  }
  for (const msg of msgs) if (msg.id) ui.seen.add(msg.id);
  if (Array.isArray(values.app_ids)) ui.appIds = values.app_ids;
  if (Array.isArray(values.__interrupt__) && values.__interrupt__.length) showApproval(values.__interrupt__[0]);
}

// The Code Agent's attempt events (attempt number, error class, pass / fail); other custom events as text.
function onCustom(data) {
  if (data && typeof data === "object" && "attempt" in data) {
    const passed = data.passed === true || data.status === "pass" || data.ok === true || data.outcome === "pass";
    const failed = data.passed === false || data.status === "fail" || data.ok === false || data.outcome === "fail";
    const badge = passed ? '<span class="badge pass">pass</span>'
      : failed ? '<span class="badge fail">fail</span>' : '<span class="badge info">running</span>';
    const err = data.error_class || data.error || "";
    const path = data.path ? ` · ${escapeHtml(String(data.path))}` : "";
    const took = typeof data.duration_s === "number" ? ` · ${data.duration_s.toFixed(2)} s` : "";
    const check = data.check ? ` · browser check ${escapeHtml(String(data.check))}` : "";
    addElement("event attempt", `${badge}<span>Attempt ${escapeHtml(String(data.attempt))}${path}` +
      `${check}${err ? " · " + escapeHtml(String(err)) : ""}${took}</span>`);
  } else {
    const text = typeof data === "string" ? data : JSON.stringify(data);
    addElement("event", `<span class="badge info">event</span><span>${escapeHtml(text.slice(0, 200))}</span>`);
  }
}

function showApproval(interrupt) {
  const value = interrupt.value;
  const el = addElement("approval");
  let title = "Approval needed";
  let text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  if (value && typeof value === "object" && typeof value.code === "string") {
    title = `Run ${value.path || "the code"} (attempt ${value.attempt || 1})?`;
    text = value.code;
  }
  el.innerHTML = `<strong>${escapeHtml(title)}</strong><pre>${escapeHtml(text)}</pre>` +
    '<div class="actions"><button type="button" data-ok="1">Approve</button>' +
    '<button type="button" class="ghost" data-ok="0">Reject</button></div>';
  el.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    el.querySelectorAll("button").forEach((x) => { x.disabled = true; });
    const resume = b.dataset.ok === "1" ? { action: "approve" } : { action: "reject", reason: "rejected in the web UI" };
    stream({ command: { resume } });
  }));
}

// ---------- runs ----------

async function* sseEvents(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let idx;
    while ((idx = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, idx);
      buf = buf.slice(idx + (buf[idx] === "\r" ? 4 : 2));
      let event = "message"; const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function ensureThread() {
  if (ui.threadId) return ui.threadId;
  const thread = await api("POST", "/threads", { metadata: { source: "web-ui", workspace_id: ui.workspaceId } });
  ui.threadId = thread.thread_id;
  return ui.threadId;
}

async function stream(payload) {
  setBusy(true);
  setStatus("Running…");
  ui.abort = new AbortController();
  let failed = false;
  try {
    const threadId = await ensureThread();
    const body = {
      assistant_id: ASSISTANT, stream_mode: STREAM_MODES, on_disconnect: "cancel",
      multitask_strategy: "reject", ...payload,
    };
    const res = await fetch(`/threads/${threadId}/runs/stream`, {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: ui.abort.signal,
    });
    if (!res.ok) throw new Error(`run refused (${res.status}): ${await res.text()}`);
    for await (const { event, data } of sseEvents(res)) {
      if (event === "metadata") ui.runId = data.run_id;
      else if (event === "messages") onMessageChunk(data);
      else if (event === "values") onValues(data);
      else if (event === "custom") onCustom(data);
      else if (event === "notice") setStatus("Catching up…");
      else if (event === "error") { failed = true; addMessage("error", `${data.error}: ${data.message}`); }
    }
  } catch (err) {
    if (err.name !== "AbortError") { failed = true; addMessage("error", String(err.message || err)); }
  } finally {
    document.querySelectorAll(".msg.streaming").forEach((el) => el.classList.remove("streaming"));
    setBusy(false);
    setStatus(failed ? "Failed" : "Done");
    ui.runId = null;
    ui.abort = null;
    loadFiles();
    loadApps();
  }
}

async function stop() {
  if (ui.threadId && ui.runId) {
    try { await api("POST", `/threads/${ui.threadId}/runs/${ui.runId}/cancel?wait=0&action=interrupt`); } catch (_) { /* ended */ }
  }
  if (ui.abort) ui.abort.abort();
  setStatus("Stopped");
}

// ---------- hosted apps ----------

function appState(app) {
  if (app.stopped) return ["stopped", "stopped"];
  return app.running ? ["running", "running"] : ["idle", "idle (starts when opened)"];
}

function appExpiry(app) {
  if (app.permanent || !app.expires_at) return "permanent";
  return `expires ${new Date(app.expires_at * 1000).toLocaleString()}`;
}

// The conversation's apps: ids from the thread's state, status and expiry from /v1/apps, and a
// fresh signed link for each (it opens the app in this browser without the API key).
async function loadApps() {
  const ul = $("apps");
  let ids = ui.appIds;
  if (ui.threadId) {
    try {
      const state = await api("GET", `/threads/${ui.threadId}/state`);
      ids = (state.values && state.values.app_ids) || ids;
    } catch (_) { /* keep what the stream said */ }
  }
  ui.appIds = ids;
  if (!ids.length) { ul.innerHTML = '<li class="none">No apps in this conversation</li>'; return; }
  const items = await Promise.all(ids.map(async (id) => {
    try {
      const app = await api("GET", `/v1/apps/${encodeURIComponent(id)}`);
      const link = await api("POST", `/v1/apps/${encodeURIComponent(id)}/links`);
      return { id, app, link };
    } catch (_) { return { id, app: null, link: null }; }
  }));
  ul.innerHTML = "";
  for (const { id, app, link } of items) {
    const li = document.createElement("li");
    li.dataset.appId = id;
    if (!app) {
      li.innerHTML = `<span>${escapeHtml(id)}</span><span class="meta"><span class="state gone">expired or deleted</span></span>`;
    } else {
      const [cls, label] = appState(app);
      li.innerHTML = `<a href="${escapeHtml(link.url)}" target="_blank" rel="noopener">${escapeHtml(app.name)}</a>` +
        `<span class="meta"><span class="state ${cls}">${escapeHtml(label)}</span> · ${escapeHtml(appExpiry(app))}</span>`;
    }
    ul.appendChild(li);
  }
}

// ---------- workspace files ----------

async function loadWorkspaces() {
  const select = $("workspace-select");
  let list = [];
  try { list = await api("GET", "/v1/workspaces"); } catch (err) { setStatus(String(err.message)); }
  if (!list.length) {
    try { list = [await api("POST", "/v1/workspaces", { name: "default" })]; } catch (_) { /* shown above */ }
  }
  select.innerHTML = list.map((w) => `<option value="${escapeHtml(w.id)}">${escapeHtml(w.name)}</option>`).join("");
  if (!list.some((w) => w.id === ui.workspaceId)) ui.workspaceId = list.length ? list[0].id : null;
  if (ui.workspaceId) select.value = ui.workspaceId;
  loadFiles();
}

async function loadFiles() {
  const ul = $("files");
  if (!ui.workspaceId) { ul.innerHTML = ""; return; }
  let files = [];
  try { files = await api("GET", `/v1/workspaces/${ui.workspaceId}/files`); } catch (err) { setStatus(String(err.message)); }
  if (!files.length) { ul.innerHTML = '<li class="none">No files yet</li>'; return; }
  ul.innerHTML = "";
  for (const f of files) {
    const li = document.createElement("li");
    li.dataset.path = f.path;
    li.innerHTML = `<span>${escapeHtml(f.path)}</span><span class="ver">v${f.number}</span>`;
    li.addEventListener("click", () => openFile(f.path, li));
    ul.appendChild(li);
  }
}

function renderDiff(text) {
  const pre = $("diff");
  pre.innerHTML = text.split("\n").map((line) => {
    const cls = line.startsWith("+++") || line.startsWith("---") ? "meta"
      : line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "";
    return `<span class="${cls}">${escapeHtml(line) || " "}</span>`;
  }).join("");
}

async function showVersion(path, versions, number) {
  document.querySelectorAll("#versions button").forEach((b) => b.classList.toggle("ghost", Number(b.dataset.n) !== number));
  const base = `/v1/workspaces/${ui.workspaceId}`;
  const enc = path.split("/").map(encodeURIComponent).join("/");
  if (number > 1) {
    const d = await api("GET", `${base}/diff/${enc}?from=${number - 1}&to=${number}`);
    renderDiff(d.diff || "(no changes)");
  } else {
    const v = await api("GET", `${base}/versions/${number}/${enc}`);
    renderDiff(v.content.split("\n").map((l) => "+" + l).join("\n"));
  }
}

async function openFile(path, li) {
  document.querySelectorAll("#files li").forEach((x) => x.classList.toggle("active", x === li));
  const enc = path.split("/").map(encodeURIComponent).join("/");
  const versions = await api("GET", `/v1/workspaces/${ui.workspaceId}/history/${enc}`);
  $("file-view").hidden = false;
  $("file-title").textContent = path;
  $("versions").innerHTML = versions.map((v) =>
    `<button type="button" class="ghost" data-n="${v.number}" title="${escapeHtml(v.message || v.author)}">v${v.number}</button>`).join("");
  $("versions").querySelectorAll("button").forEach((b) =>
    b.addEventListener("click", () => showVersion(path, versions, Number(b.dataset.n))));
  if (versions.length) await showVersion(path, versions, versions[versions.length - 1].number);
}

// ---------- wiring ----------

function init() {
  ui.seen = new Set();
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const task = $("task").value.trim();
    if (!task || $("send").disabled) return;
    $("task").value = "";
    addMessage("user", task);
    const input = { messages: [{ role: "user", content: task }] };
    if (ui.workspaceId) input.workspace_id = ui.workspaceId;
    stream({ input });
  });
  $("task").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", stop);
  $("refresh-files").addEventListener("click", loadFiles);
  $("refresh-apps").addEventListener("click", loadApps);
  $("api-key").addEventListener("click", () => { askKey(); loadWorkspaces(); });
  $("new-thread").addEventListener("click", () => {
    ui.threadId = null; ui.bubbles.clear(); ui.seen.clear(); ui.appIds = [];
    $("messages").innerHTML = ""; setStatus("New conversation"); loadApps();
  });
  $("new-workspace").addEventListener("click", async () => {
    const name = window.prompt("Name of the new workspace:", "project");
    if (!name) return;
    const ws = await api("POST", "/v1/workspaces", { name });
    ui.workspaceId = ws.id; localStorage.setItem("agentic.workspace", ws.id);
    ui.threadId = null;
    loadWorkspaces();
  });
  $("workspace-select").addEventListener("change", (e) => {
    ui.workspaceId = e.target.value; localStorage.setItem("agentic.workspace", ui.workspaceId);
    ui.threadId = null; ui.appIds = []; $("file-view").hidden = true; loadFiles(); loadApps();
  });
  loadWorkspaces();
}

document.addEventListener("DOMContentLoaded", init);
