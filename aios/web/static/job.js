// A job's page: its status and spec, a 24-hour strip of its runs, its run history and a
// live tail of its log. History is read again when the stream says a run began or ended.

import { actionButtons } from "./actions.js";
import { read } from "./api.js";
import { $, badge, clock, definitions, duration, el, now, shortClock } from "./dom.js";
import { lastRun, logTail, timeText } from "./jobs.js";
import { jobs, on } from "./state.js";

const DAY = 86400;
const LOG_KEEP = 2000;
const STDERR_LINE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} err /; // as the server shows a stamped stderr line
const RUN_EVENTS = new Set(["job_started", "job_exited", "trigger_done", "spawn_failed", "run_lost", "job_adopted"]);
let current = null; // the name of the job shown
let runs = [];
let drawnAt = 0;
let historyTimer = null;
let logSource = null;

export function setUp() {
  on("job", (job) => { if (job.name === current) renderStatus(); });
  on("snapshot", () => { if (current) { renderStatus(); loadSpec(); loadHistory(); } });
  on("event", (event) => {
    if (current && event.job === current && RUN_EVENTS.has(event.name)) loadHistorySoon();
  });
  on("tick", () => {
    if (!current) return;
    const when = $("job-when");
    if (when && jobs.has(current)) when.textContent = timeText(jobs.get(current));
    if (now() - drawnAt > 60) drawTimeline();
  });
}

export function show(name) {
  current = name;
  runs = [];
  $("job-name").textContent = name;
  $("job-spec").textContent = "";
  $("job-log-path").textContent = "";
  $("runs-body").replaceChildren();
  drawTimeline();
  renderStatus();
  loadSpec();
  loadHistory();
  followLog(name);
}

export function hide() {
  current = null;
  if (logSource) logSource.close();
  logSource = null;
}

function renderStatus() {
  const job = jobs.get(current);
  if (!job) {
    $("job-state").replaceChildren();
    $("job-actions").replaceChildren();
    $("job-why").textContent = "No such job on this device.";
    $("job-log-tail").hidden = true;
    return;
  }
  const tail = logTail(job);
  $("job-log-tail").hidden = !tail;
  $("job-log-tail").textContent = tail ? tail.text : "";
  $("job-log-tail").title = tail ? tail.title : "";
  $("job-state").replaceChildren(badge("state", job.status));
  $("job-actions").replaceChildren(...actionButtons(job));
  $("job-why").textContent = job.why || "";
  definitions($("job-status"), [
    ["type", job.type],
    ["since", clock(job.since)],
    ["pid", job.pids.length ? job.pids.join(" ") : "–"],
    ["uptime / next", el("span", { id: "job-when" }, timeText(job))],
    ["last run", lastRun(job.last_run)],
    ["restarts", String(job.restarts)],
    ["attempts", String(job.attempts)],
    ["queued triggers", String(job.queued)],
    ["enabled", job.enabled ? "yes" : "no"],
    ["stopped on request", job.held ? "yes" : "no"],
    ["tags", job.tags.length ? job.tags.join(", ") : "–"],
  ]);
}

async function loadSpec() {
  const name = current;
  try {
    const detail = await read("job", { job: name });
    if (name !== current) return;
    const lines = Object.entries(detail.spec).map(([key, value]) => `${key} = ${JSON.stringify(value)}`);
    $("job-spec").textContent = `[jobs.${name}]\n${lines.join("\n")}`;
    $("job-log-path").textContent = `log: ${detail.log}`;
  } catch (error) {
    if (name === current) $("job-spec").textContent = error.message;
  }
}

function loadHistorySoon() {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(loadHistory, 100); // one read for a burst of events
}

async function loadHistory() {
  const name = current;
  try {
    const found = await read("history", { job: name, limit: 1000 });
    if (name !== current) return;
    runs = found;
    drawTimeline();
    $("runs-body").replaceChildren(...runs.slice(0, 50).map(runRow));
  } catch (error) {
    if (name === current) $("runs-body").replaceChildren(el("tr", {}, el("td", { colspan: 8 }, error.message)));
  }
}

function runRow(run) {
  const outcome = run.outcome || "running";
  const exit = run.signal ? `signal ${run.signal}` : run.exit_code ?? "–";
  return el("tr", { "data-run": run.id },
    el("td", {}, String(run.id)), el("td", { title: clock(run.started) }, shortClock(run.started)),
    el("td", {}, duration((run.ended || now()) - run.started)), el("td", {}, badge("outcome", outcome)),
    el("td", {}, String(exit)), el("td", {}, String(run.attempt)),
    el("td", {}, run.trigger_id ?? "–"), el("td", {}, run.pid ?? "–"));
}

function drawTimeline() {
  const end = now();
  const start = end - DAY;
  drawnAt = end;
  const marks = runs.filter((run) => (run.ended || end) >= start).map((run) => {
    const outcome = run.outcome || "running";
    const took = (run.ended || end) - run.started;
    const mark = el("span", {
      class: `mark outcome-${outcome}`,
      title: `run ${run.id}: ${outcome}, started ${clock(run.started)}, took ${duration(took)}`,
    });
    const from = Math.max(run.started, start);
    mark.style.left = `min(${((from - start) / DAY) * 100}%, calc(100% - 3px))`; // a short run now stays in view
    mark.style.width = `${(((run.ended || end) - from) / DAY) * 100}%`;
    return mark;
  });
  $("timeline").replaceChildren(...marks);
}

function followLog(name) {
  const log = $("log");
  log.replaceChildren();
  let fresh = true;
  logSource = new EventSource(`/api/log?job=${encodeURIComponent(name)}&lines=200`);
  logSource.addEventListener("open", () => {
    fresh = true; // a reconnected stream starts again with the last lines
    $("log-state").textContent = "live";
  });
  logSource.addEventListener("error", () => { $("log-state").textContent = "reconnecting…"; });
  logSource.addEventListener("lines", (message) => {
    const lines = JSON.parse(message.data);
    if (fresh) log.replaceChildren();
    fresh = false;
    appendLines(log, lines);
  });
}

function appendLines(log, lines) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
  log.append(...lines.map((line) => el("div", { class: STDERR_LINE.test(line) ? "line err" : "line" }, line)));
  while (log.childElementCount > LOG_KEEP) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}
