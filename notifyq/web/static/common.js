// What every notifyq page shares: DOM helpers, JSON reads, and actions sent with the API
// token. Data goes into the page with textContent only, never as HTML.
"use strict";

const TOKEN_KEY = "notifyq.api-token"; // sessionStorage: this tab only, never in a URL
const READ_ONLY = document.body.dataset.readOnly === "true";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function link(id) {
  const a = el("a", id);
  a.href = "/ui/tasks/" + encodeURIComponent(id);
  return a;
}

function badge(status) {
  return el("span", status.replace("_", " "), "badge s-" + status);
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell);
    else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

function fillTable(id, rows, emptyText, width) {
  const body = document.querySelector("#" + id + " tbody");
  if (!body) return;
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = el("tr", null, "empty");
    const td = el("td", emptyText);
    td.colSpan = width;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const r of rows) body.appendChild(r);
  // A "stack" table turns into one block per row on a phone: each cell names its column.
  const table = body.closest("table");
  if (table.classList.contains("stack")) {
    const heads = Array.from(table.querySelectorAll("thead th"), (th) => th.textContent);
    for (const tr of body.rows) {
      Array.from(tr.cells).forEach((td, i) => {
        if (td.colSpan === 1) td.dataset.label = heads[i] || "";
      });
    }
  }
}

function utcTime(iso) {
  return iso ? new Date(iso).toISOString().slice(0, 19).replace("T", " ") + "Z" : "–";
}

function count(n) {
  return Number(n).toLocaleString("en-US");
}

// An API answer that is not 2xx: its JSON error's message, status and code.
class ApiFailure extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function answer(response, url) {
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiFailure(response.status, error.message || url + ": HTTP " + response.status, error.code);
  }
  return data;
}

async function getJSON(url) {
  return answer(await fetch(url, { headers: { Accept: "application/json" } }), url);
}

// The token dialog (base.html): resolves with the token typed, or null when dismissed.
function askToken(reason) {
  const dialog = document.getElementById("token-dialog");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input");
  dialog.querySelector(".reason").textContent = reason;
  input.value = "";
  return new Promise((resolve) => {
    const done = (event) => {
      dialog.removeEventListener("close", done);
      const given = dialog.returnValue === "save" ? input.value.trim() : "";
      resolve(given || null);
    };
    dialog.addEventListener("close", done);
    form.onsubmit = (event) => {
      event.preventDefault();
      dialog.close(event.submitter && event.submitter.value === "cancel" ? "cancel" : "save");
    };
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

// POST a change. A 401 asks for the token (once per tab: it stays in sessionStorage) and
// sends again; a wrong token is forgotten and asked for again.
async function act(url, body) {
  if (READ_ONLY) throw new ApiFailure(403, "this server is read-only (HTTP_READ_ONLY): actions are off", "read_only");
  for (let tries = 0; ; tries++) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: "POST", headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401 && tries < 3) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      const given = await askToken(token ? "The token was refused; try again." : "This server needs its API token for changes.");
      if (given === null) throw new ApiFailure(401, "no API token given: nothing was changed", "unauthorized");
      sessionStorage.setItem(TOKEN_KEY, given);
      continue;
    }
    return answer(response, url);
  }
}

// A line in an aria-live region: what an action did, or why it failed.
function say(id, text, isError) {
  const node = document.getElementById(id);
  if (!node) return;
  node.textContent = text;
  node.classList.toggle("error", !!isError);
}

// Actions are off on a read-only server: their controls say so instead of failing later.
function markReadOnly(root) {
  if (!READ_ONLY) return;
  for (const control of (root || document).querySelectorAll(".action")) {
    control.disabled = true;
    control.title = "read-only server (HTTP_READ_ONLY)";
  }
}

// A payload's or result's preview: the API's bounded one when it sends it, else cut here,
// so a megabyte of JSON never lands in the page. The whole value is a download away.
const PREVIEW_CHARS = 4096;

function showPreview(id, task, field) {
  const node = document.getElementById(id);
  if (!node) return;
  const preview = task[field + "_preview"];
  let text, cut;
  if (typeof preview === "string" && task[field + "_truncated"]) {
    text = preview; // the server's cut: the value itself did not come
    cut = true;
  } else {
    text = JSON.stringify(task[field], null, 2);
    if (text === undefined) text = "null";
    cut = text.length > PREVIEW_CHARS;
    if (cut) text = text.slice(0, PREVIEW_CHARS);
  }
  node.textContent = text + (cut ? "\n…" : "");
  const more = document.getElementById(id + "-cut");
  if (more) more.hidden = !cut;
}
