// The console: the task browser (/ui/tasks), bulk actions over a filter, failure triage
// (/ui/failures), queues and schedules (/ui/queues), and the task page's actions. Helpers
// come from common.js; everything here sits in one block so that its names cannot clash
// with page.js, which the task page loads too.
"use strict";
(() => {
  const initial = JSON.parse(document.getElementById("initial").textContent) || {};
  const PAGING = new Set(["before", "limit"]);
  const VERBS = { retry: "Retry", cancel: "Cancel", "run-now": "Run now", priority: "Set the priority of" };
  const BULK_BATCH = 1000;

  // The filter of a query string: its non-empty keys, without the paging ones.
  function filterOf(search) {
    const filter = {};
    for (const [key, value] of new URLSearchParams(search)) {
      if (!PAGING.has(key) && value.trim() !== "") filter[key] = value.trim();
    }
    return filter;
  }

  function query(filter) {
    return new URLSearchParams(filter).toString();
  }

  function priorityValue(text) {
    const t = String(text).trim();
    return /^-?[0-9]+$/.test(t) ? Number(t) : t;
  }

  function button(text, attrs, onClick) {
    const b = el("button", text, "action");
    b.type = "button";
    for (const [key, value] of Object.entries(attrs)) b.setAttribute(key, value);
    b.addEventListener("click", onClick);
    if (READ_ONLY) {
      b.disabled = true;
      b.title = "read-only server (HTTP_READ_ONLY)";
    }
    return b;
  }

  // --- bulk: count, confirm, then batches with a progress bar --------------------------

  const bulk = document.getElementById("bulk");
  let bulkRunning = false;
  let bulkStop = false;

  function bulkPart(id, shown) {
    document.getElementById(id).hidden = !shown;
  }

  async function previewBulk(filter, action, extra, what) {
    if (bulkRunning) return;
    bulk.hidden = false;
    bulkPart("bulk-confirm-row", false);
    bulkPart("bulk-progress-row", false);
    say("bulk-result", "");
    say("bulk-question", "counting " + what + "…");
    let counted;
    try {
      counted = await getJSON("/tasks/count?" + query(filter));
    } catch (err) {
      say("bulk-question", err.message, true);
      return;
    }
    const n = counted.count;
    if (n === 0 || counted.upto === null) {
      say("bulk-question", "No task matches " + what + ": nothing to do.");
      return;
    }
    const shown = (counted.capped ? "at least " : "") + count(n);
    say("bulk-question", shown + " tasks match " + what + " (ids up to " + counted.upto +
      "; tasks added from now on are left alone).");
    const confirm = document.getElementById("bulk-confirm");
    confirm.textContent = VERBS[action] + " " + shown + " tasks";
    confirm.onclick = () => runBulk(filter, action, extra, counted);
    bulkPart("bulk-confirm-row", true);
    confirm.focus();
  }

  async function runBulk(filter, action, extra, counted) {
    if (bulkRunning) return;
    bulkRunning = true;
    bulkStop = false;
    bulkPart("bulk-stop", true);
    bulkPart("bulk-confirm-row", false);
    bulkPart("bulk-progress-row", true);
    const bar = document.getElementById("bulk-progress");
    bar.max = Math.max(counted.count, 1);
    bar.value = 0;
    let cursor = null, changed = 0, skipped = 0, busy = 0;
    const progress = () => {
      bar.value = Math.min(changed + skipped, bar.max);
      say("bulk-progress-text", count(changed + skipped) + " / " + count(counted.count));
    };
    progress();
    try {
      do {
        const reply = await act("/tasks/bulk/" + action,
          { filter, upto: counted.upto, cursor, batch: BULK_BATCH, ...extra });
        changed += reply.changed;
        skipped += reply.skipped;
        busy += reply.busy || 0;
        cursor = reply.cursor;
        progress();
      } while (cursor !== null && !bulkStop);
      if (cursor !== null) {
        say("bulk-result", "Stopped: " + count(changed) + " changed, " + count(skipped) +
          " skipped; the rest is as it was.");
        return;
      }
      say("bulk-result", "Done: " + count(changed) + " changed, " + count(skipped) +
        " skipped (their state no longer allowed it" +
        (busy ? "; " + count(busy) + " held by another transaction" : "") + ").");
    } catch (err) {
      say("bulk-result", "Stopped after " + count(changed) + " changed, " + count(skipped) +
        " skipped: " + err.message, true);
    } finally {
      bulkRunning = false;
      bulkPart("bulk-stop", false);
      document.dispatchEvent(new CustomEvent("notifyq:changed"));
    }
  }

  if (bulk) {
    document.getElementById("bulk-stop").addEventListener("click", () => { bulkStop = true; });
    document.getElementById("bulk-dismiss").addEventListener("click", () => {
      bulkPart("bulk-confirm-row", false);
      say("bulk-question", "Nothing was changed.");
    });
  }

  // --- the task browser ------------------------------------------------------------------

  async function loadTasks() {
    const params = new URLSearchParams(location.search);
    const asked = new URLSearchParams();
    for (const [key, value] of params) if (value.trim() !== "") asked.set(key, value.trim());
    let data;
    try {
      data = await getJSON("/tasks?" + asked.toString());
    } catch (err) {
      say("list-message", err.message, true);
      fillTable("tasks", [], "–", 9);
      return;
    }
    say("list-message", "");
    fillTable("tasks", data.tasks.map((t) => {
      const error = t.error && t.error.length > 160 ? t.error.slice(0, 160) + "…" : t.error;
      const r = row([link(t.id), badge(t.status), t.queue, t.kind, t.priority,
        t.attempts + "/" + t.max_attempts, utcTime(t.created_at), utcTime(t.finished_at), error]);
      r.lastChild.className = "error";
      return r;
    }), "no task matches this filter", 9);
    const older = document.getElementById("older");
    older.hidden = !data.next;
    if (data.next) {
      const next = new URLSearchParams(asked);
      next.delete("limit");
      next.set("before", String(data.tasks[data.tasks.length - 1].id));
      older.href = "/ui/tasks?" + next.toString();
    }
    const newest = document.getElementById("newest");
    newest.hidden = !asked.has("before");
    asked.delete("before");
    newest.href = "/ui/tasks" + (asked.toString() ? "?" + asked.toString() : "");
  }

  function startTaskBrowser() {
    const form = document.getElementById("filter");
    // Only the keys given go into the address, so a link reads as the filter it is.
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      for (const [key, value] of new FormData(form)) {
        if (String(value).trim() !== "") params.set(key, String(value).trim());
      }
      const text = params.toString();
      window.location.href = "/ui/tasks" + (text ? "?" + text : "");
    });
    const start = document.getElementById("bulk-start");
    const priorityField = start.querySelector(".priority-field");
    start.elements.action.addEventListener("change", () => {
      priorityField.hidden = start.elements.action.value !== "priority";
    });
    start.addEventListener("submit", (event) => {
      event.preventDefault();
      const action = start.elements.action.value;
      const extra = action === "priority" ? { priority: priorityValue(start.elements.priority.value) } : {};
      const filter = filterOf(location.search);
      const text = query(filter);
      previewBulk(filter, action, extra, text ? "the filter " + decodeURIComponent(text) : "no filter (every task)");
    });
    markReadOnly(start);
    document.addEventListener("notifyq:changed", loadTasks);
    loadTasks();
  }

  // --- failure triage --------------------------------------------------------------------

  // The failures' window as GET /failures reads it (by default: ended in error within 24 h).
  function triageFilter() {
    const filter = filterOf(location.search);
    if (!("finished_after" in filter)) filter.finished_after = "24h";
    if (!("status" in filter)) filter.status = "error";
    return filter;
  }

  // "cancel all" of a group: the tasks that failed that way and will still run again.
  function stillToRun(filter) {
    const { finished_after: _after, finished_before: _before, ...rest } = filter;
    return { ...rest, status: "waiting,pending,in_progress" };
  }

  async function loadGroups() {
    const filter = triageFilter();
    let data;
    try {
      data = await getJSON("/failures?" + query(filter));
    } catch (err) {
      say("groups-message", err.message, true);
      fillTable("groups", [], "–", 6);
      return;
    }
    say("groups-message", "");
    fillTable("groups", data.groups.map((g) => {
      const group = { ...filter, fingerprint: g.fingerprint };
      // The message is the error's first line, its class included when it had one.
      const error = g.message;
      const what = "group " + g.fingerprint + " (" + g.kind + ", " + (g.error_class || "error") + ")";
      const show = el("a", "show tasks");
      show.href = "/ui/tasks?" + query(group);
      const newest = link(g.example_id);
      newest.textContent = "newest #" + g.example_id;
      const actions = el("span", null, "row-actions");
      actions.append(show, " ", newest, " ",
        button("retry all", { "data-do": "retry", "data-group": g.fingerprint, "aria-label": "retry all of " + what },
          () => previewBulk(group, "retry", {}, what)),
        " ",
        button("cancel all", { "data-do": "cancel", "data-group": g.fingerprint, "aria-label": "cancel all of " + what },
          () => previewBulk(stillToRun(group), "cancel", {}, what + " that will run again")));
      const r = row([count(g.count), g.kind, error,
        utcTime(g.first_seen), utcTime(g.last_seen), actions]);
      r.children[2].className = "error";
      r.dataset.group = g.fingerprint;
      return r;
    }), "no failures in this window", 6);
  }

  // --- queues and schedules ----------------------------------------------------------------

  async function queueAction(url, body, done) {
    try {
      await act(url, body);
      say("queues-message", done);
    } catch (err) {
      say("queues-message", err.message, true);
    }
    await loadQueues();
  }

  async function loadQueues() {
    let data;
    try {
      data = await getJSON("/queues?limit=500");
    } catch (err) {
      say("queues-message", err.message, true);
      return;
    }
    fillTable("queue-list", data.queues.map((q) => {
      const path = "/queues/" + encodeURIComponent(q.name);
      const actions = el("span", null, "row-actions");
      actions.append(
        button(q.paused ? "resume" : "pause", { "data-queue": q.name, "data-do": q.paused ? "resume" : "pause" },
          () => queueAction(path, { paused: !q.paused }, "queue " + q.name + (q.paused ? " resumed" : " paused"))),
        " ",
        button("edit limits", { "data-queue": q.name, "data-do": "limits" }, () => editLimits(q)));
      const r = row([q.name, count(q.pending), count(q.in_progress), q.concurrency ?? "–", q.rate ?? "–",
        q.per_key_concurrency ?? "–", q.paused ? "paused" : "running", actions]);
      r.dataset.queue = q.name;
      return r;
    }), "no queues with limits or live tasks", 8);
  }

  function editLimits(q) {
    const form = document.getElementById("limits");
    form.hidden = false;
    document.getElementById("limits-title").textContent = "Limits of " + q.name;
    form.elements.name.value = q.name;
    form.elements.concurrency.value = q.concurrency ?? "";
    form.elements.rate.value = q.rate ?? "";
    form.elements.per_key_concurrency.value = q.per_key_concurrency ?? "";
    form.elements.concurrency.focus();
  }

  function startQueues() {
    const form = document.getElementById("limits");
    const number = (v) => (v.trim() === "" ? null : Number(v.trim()));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = form.elements.name.value;
      queueAction("/queues/" + encodeURIComponent(name), {
        concurrency: number(form.elements.concurrency.value),
        rate: form.elements.rate.value.trim() || null,
        per_key_concurrency: number(form.elements.per_key_concurrency.value),
      }, "limits of " + name + " saved");
    });
    document.getElementById("limits-close").addEventListener("click", () => { form.hidden = true; });
    loadQueues();
    loadSchedules();
  }

  async function scheduleAction(name, what) {
    try {
      await act("/schedules/" + encodeURIComponent(name) + "/" + what);
      say("schedules-message", { pause: "paused ", resume: "resumed ", run: "one run added now for " }[what] + name);
    } catch (err) {
      say("schedules-message", err.message, true);
    }
    await loadSchedules();
  }

  async function loadSchedules() {
    let data;
    try {
      data = await getJSON("/schedules?limit=500");
    } catch (err) {
      say("schedules-message", err.message, true);
      return;
    }
    fillTable("schedule-list", data.schedules.map((s) => {
      const actions = el("span", null, "row-actions");
      const tasks = el("a", "tasks");
      tasks.href = "/ui/tasks?" + query({ schedule: s.name });
      actions.append(tasks, " ",
        button(s.paused ? "resume" : "pause", { "data-schedule": s.name, "data-do": s.paused ? "resume" : "pause" },
          () => scheduleAction(s.name, s.paused ? "resume" : "pause")),
        " ",
        button("run once now", { "data-schedule": s.name, "data-do": "run" }, () => scheduleAction(s.name, "run")));
      const r = row([s.name + (s.paused ? " (paused)" : ""),
        s.cron ? "cron " + s.cron + " (" + s.tz + ")" : "every " + s.every_s + " s",
        s.kind, s.queue, utcTime(s.last_run_at), s.paused ? "–" : utcTime(s.next_run_at), actions]);
      r.dataset.schedule = s.name;
      return r;
    }), "no schedules", 7);
  }

  // --- the task page -------------------------------------------------------------------------

  // Which actions a status allows (the server has the last word: 409 otherwise).
  const ALLOWED = {
    cancel: ["waiting", "pending", "in_progress"],
    retry: ["error", "cancelled"],
    "run-now": ["pending"],
    priority: ["waiting", "pending"],
  };

  function showAllowed(status) {
    for (const [action, statuses] of Object.entries(ALLOWED)) {
      for (const control of document.querySelectorAll('#actions [data-do="' + action + '"]')) {
        control.disabled = READ_ONLY || !statuses.includes(status);
      }
    }
  }

  async function taskAction(id, action, body) {
    say("action-message", action + "…");
    try {
      const reply = await act("/tasks/" + id + "/" + action, body);
      say("action-message", action + ": task " + id + " is " + reply.status.replace("_", " "));
    } catch (err) {
      say("action-message", action + " refused: " + err.message, true);
    }
    document.dispatchEvent(new CustomEvent("notifyq:changed"));
  }

  async function loadAttempts(id) {
    let attempts;
    try {
      attempts = (await getJSON("/tasks/" + id + "/attempts")).attempts;
    } catch (err) {
      say("attempts-message", err.message, true);
      return;
    }
    const rows = [];
    for (const a of attempts) {
      const r = row([a.attempt, a.outcome ? badge(a.outcome) : "running", a.worker, utcTime(a.started_at),
        utcTime(a.ended_at), a.error]);
      r.lastChild.className = "error";
      rows.push(r);
      if (a.traceback) {
        const details = el("details");
        details.append(el("summary", "traceback of attempt " + a.attempt), el("pre", a.traceback, "traceback"));
        const td = el("td");
        td.colSpan = 6;
        td.appendChild(details);
        const tr = el("tr", null, "traceback-row");
        tr.appendChild(td);
        rows.push(tr);
      }
    }
    fillTable("attempts", rows, "not started yet", 6);
  }

  function startTaskPage(id) {
    const actions = document.getElementById("actions");
    for (const b of actions.querySelectorAll("button[data-do]:not([type=submit])")) {
      b.addEventListener("click", () => taskAction(id, b.dataset.do));
    }
    const form = document.getElementById("priority-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      taskAction(id, "priority", { priority: priorityValue(form.elements.priority.value) });
    });
    showAllowed(initial.status);
    document.addEventListener("notifyq:task", (event) => {
      showAllowed(event.detail.status);
      loadAttempts(id);
    });
    loadAttempts(id);
  }

  if (initial.page === "tasks") startTaskBrowser();
  else if (initial.page === "failures") loadGroups();
  else if (initial.page === "queues") startQueues();
  else if (initial.page === "task") startTaskPage(initial.id);
})();
