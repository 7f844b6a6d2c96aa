// notifyq status and task pages: kept live through /events (server-sent events).
// Data goes into the page with textContent only, never as HTML (helpers in common.js).
"use strict";

const initial = JSON.parse(document.getElementById("initial").textContent);
const live = document.getElementById("live");
// The statuses, in the server's order, as the status page's template wrote them.
const STATUSES = (document.getElementById("queues")?.dataset.statuses || "").split(" ").filter(Boolean);
let serverSkewMs = 0; // server clock minus ours, from /stats "now"

function ageSeconds(iso) {
  return (Date.now() + serverSkewMs - Date.parse(iso)) / 1000;
}

function ms(value) {
  return value === null || value === undefined ? "–" : value.toFixed(1) + " ms";
}

// --- the status page -------------------------------------------------------------

function renderStats(stats, queueLimits) {
  serverSkewMs = Date.parse(stats.now) - Date.now();
  for (const status of STATUSES) {
    const node = document.querySelector('[data-count="' + status + '"]');
    if (node) node.textContent = String(stats.counts_by_status[status] || 0);
  }
  document.getElementById("throughput").textContent = stats.throughput_per_s.toFixed(2);
  document.getElementById("p50").textContent = ms(stats.pickup_latency.p50_ms);
  document.getElementById("p95").textContent = ms(stats.pickup_latency.p95_ms);
  const lag = document.getElementById("replica-lag");
  if (lag && stats.reads.lag_s !== null) lag.textContent = stats.reads.lag_s.toFixed(1) + " s";
  const limits = queueLimits || {};
  const names = [...new Set([...Object.keys(stats.counts_by_queue), ...Object.keys(limits)])].sort();
  const queues = names.map((queue) => {
    const by = stats.counts_by_queue[queue] || {};
    return row([queue, ...STATUSES.map((status) => by[status] || 0), limits[queue] || ""]);
  });
  fillTable("queues", queues, "no tasks yet", STATUSES.length + 2);
  drawChart(stats.last_hour);
}

function drawChart(points) {
  const svg = document.getElementById("chart");
  if (!svg) return;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const width = 600, height = 120, slot = width / Math.max(points.length, 1);
  const maxEnded = Math.max(1, ...points.map((p) => p.ended));
  const latencies = points.map((p) => p.pickup_p50_ms).filter((v) => v !== null);
  const maxLatency = Math.max(1, ...latencies);
  points.forEach((p, i) => {
    const h = (p.ended / maxEnded) * (height - 10);
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", String(i * slot + 1));
    bar.setAttribute("y", String(height - h));
    bar.setAttribute("width", String(Math.max(1, slot - 2)));
    bar.setAttribute("height", String(h));
    bar.setAttribute("class", p.errors ? "bar has-errors" : "bar");
    const title = document.createElementNS(ns, "title");
    const when = new Date(p.minute * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    title.textContent = when + ": " + p.ended + " ended, " + p.errors + " errors, p50 " + ms(p.pickup_p50_ms);
    bar.appendChild(title);
    svg.appendChild(bar);
  });
  const path = [];
  points.forEach((p, i) => {
    if (p.pickup_p50_ms === null) return;
    const x = i * slot + slot / 2;
    const y = height - (p.pickup_p50_ms / maxLatency) * (height - 10);
    path.push((path.length ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1));
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x.toFixed(1));
    dot.setAttribute("cy", y.toFixed(1));
    dot.setAttribute("r", "2.5");
    dot.setAttribute("class", "latency-point");
    svg.appendChild(dot);
  });
  if (path.length) {
    const line = document.createElementNS(ns, "path");
    line.setAttribute("d", path.join(" "));
    line.setAttribute("class", "latency");
    svg.appendChild(line);
  }
}

function renderRunning(tasks) {
  fillTable(
    "running",
    tasks.map((t) => row([link(t.id), t.queue, t.kind, t.attempts + "/" + t.max_attempts,
      t.started_at ? ageSeconds(t.started_at).toFixed(1) + " s" : "", t.locked_by])),
    "nothing running", 6
  );
}

function renderWorkers(workers) {
  fillTable(
    "workers",
    // A process that stopped heart-beating (killed) is shown as gone, not as busy.
    workers.map((w) => row([w.id, w.queues.join(", "),
      w.state === "gone" ? "gone" : w.in_flight + "/" + w.concurrency,
      Math.round(ageSeconds(w.last_seen)) + " s ago"])),
    "no worker processes", 4
  );
}

function renderSchedules(schedules) {
  fillTable(
    "schedules",
    schedules.map((s) => row([s.name + (s.paused ? " (paused)" : ""),
      s.cron ? "cron " + s.cron + " (" + s.tz + ")" : "every " + s.every_s + " s",
      s.kind, s.queue, utcTime(s.last_run_at), s.paused ? "–" : utcTime(s.next_run_at)])),
    "no schedules", 6
  );
}

function renderFailures(tasks) {
  fillTable(
    "failures",
    tasks.map((t) => {
      const r = row([link(t.id), t.kind, t.error]);
      r.lastChild.className = "error";
      return r;
    }),
    "no failures", 3
  );
}

function renderBatches(batches) {
  fillTable(
    "batches",
    batches.map((b) => row([b.id, b.total, b.done, b.failed, b.remaining,
      b.callback_id === null ? "–" : link(b.callback_id)])),
    "no batch running", 6
  );
}

async function refreshStatus() {
  const data = await getJSON("/ui/summary");
  renderStats(data.stats, data.queue_limits);
  renderRunning(data.running);
  renderFailures(data.failures);
  renderWorkers(data.workers);
  renderSchedules(data.schedules);
  renderBatches(data.batches);
}

function logEvent(name, data) {
  const list = document.getElementById("events");
  if (!list) return;
  if (list.firstElementChild && list.firstElementChild.classList.contains("muted")) list.replaceChildren();
  const item = el("li");
  item.appendChild(el("time", new Date().toLocaleTimeString()));
  if (name === "task") {
    item.appendChild(document.createTextNode(" task "));
    item.appendChild(link(data.id));
    item.appendChild(document.createTextNode(" " + data.kind + " on " + data.queue + " → "));
    item.appendChild(el("span", data.status, "badge s-" + data.status));
  } else if (name === "queued") {
    item.appendChild(document.createTextNode(" new tasks on queue " + data.queue));
  } else {
    item.appendChild(document.createTextNode(" cancel requested for task " + data.id));
  }
  list.prepend(item);
  while (list.children.length > 30) list.lastElementChild.remove();
}

// --- the task page ---------------------------------------------------------------

async function refreshTask(id) {
  const [task, history] = await Promise.all([
    getJSON("/tasks/" + id),
    getJSON("/tasks/" + id + "/history"),
  ]);
  const status = document.getElementById("task-status");
  status.textContent = task.status.replace("_", " ");
  status.className = "badge s-" + task.status;
  document.getElementById("task-attempts").textContent = task.attempts + "/" + task.max_attempts;
  document.getElementById("task-priority").textContent = String(task.priority);
  document.getElementById("task-run-at").textContent = task.run_at;
  document.getElementById("task-started").textContent = task.started_at || "–";
  document.getElementById("task-finished").textContent = task.finished_at || "–";
  document.getElementById("task-worker").textContent = task.locked_by || "–";
  document.getElementById("task-error").textContent = task.error || "–";
  showPreview("task-result", task, "result");
  fillTable(
    "history",
    history.events.map((e) => row([e.at.replace("T", " ").slice(0, 23), e.event, e.attempt, e.worker,
      e.error, e.detail, e.actor])),
    "no events", 7
  );
  fillTable("parents", (task.parents || []).map((p) => row([link(p.id), p.kind, badge(p.status)])),
    task.after_batch === null ? "none" : "waits for batch " + task.after_batch, 3);
  fillTable("children", (task.children || []).map((c) => row([link(c.id), c.kind, badge(c.status), c.via])),
    "none", 4);
  document.dispatchEvent(new CustomEvent("notifyq:task", { detail: task }));
  const batch = document.getElementById("task-batch");
  if (batch && task.batch) {
    const b = task.batch;
    batch.textContent = "batch " + b.id + ": " + b.done + " done, " + b.failed + " failed, " +
      b.remaining + " remaining of " + b.total;
  }
}

// --- wiring ----------------------------------------------------------------------

const taskId = document.getElementById("task") ? initial.id : null;
const onStatusPage = !!document.getElementById("chart");
let timer = null;
let lastRefresh = 0;

// Many events in a burst cause one refresh, at most one a second, and never sooner than
// 250 ms after the event (the server's counts may be a tenth of a second old).
function scheduleRefresh() {
  if (timer !== null) return;
  const wait = Math.max(250, 1000 - (Date.now() - lastRefresh));
  timer = setTimeout(async () => {
    timer = null;
    lastRefresh = Date.now();
    try {
      if (onStatusPage) await refreshStatus();
      else if (taskId !== null) await refreshTask(taskId);
    } catch (err) {
      live.textContent = "update failed";
      live.className = "live off";
    }
  }, wait);
}

function connect() {
  const source = new EventSource("/events");
  // "ready" comes once the server listens for task ends: from then on nothing is missed.
  source.addEventListener("ready", () => {
    live.textContent = "live";
    live.className = "live on";
    scheduleRefresh(); // catch up on anything missed while disconnected
  });
  source.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };
  for (const name of ["task", "queued", "cancel_requested"]) {
    source.addEventListener(name, (message) => {
      const data = JSON.parse(message.data);
      if (onStatusPage) {
        logEvent(name, data);
        scheduleRefresh();
      } else if (taskId !== null && String(data.id) === String(taskId)) {
        scheduleRefresh();
      }
    });
  }
  source.addEventListener("resync", () => scheduleRefresh());
}

// An action of the console (console.js) changed something: look again now.
document.addEventListener("notifyq:changed", () => scheduleRefresh());

if (onStatusPage) {
  renderStats(initial.stats, initial.queue_limits);
  renderRunning(initial.running);
  renderWorkers(initial.workers);
  // Running ages and worker heartbeats move without events: redraw those every few seconds.
  setInterval(scheduleRefresh, 5000);
  const form = document.getElementById("goto");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = form.elements.id.value.trim();
    if (/^[0-9]+$/.test(id)) window.location.href = "/ui/tasks/" + id;
  });
} else if (taskId !== null) {
  // A running task changes without an event (heartbeats, attempts): look again now and then.
  setInterval(scheduleRefresh, 5000);
}
connect();
