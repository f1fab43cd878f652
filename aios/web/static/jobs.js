// The Jobs page: one row per job, kept current by the event stream, with filters.

import { actionButtons } from "./actions.js";
import { $, ago, badge, duration, el, until } from "./dom.js";
import { jobs, on, uptimeOf } from "./state.js";

const rows = new Map(); // job name -> <tr>

export function setUp() {
  $("filter-text").addEventListener("input", applyFilter);
  $("filter-tag").addEventListener("change", applyFilter);
  on("snapshot", renderAll);
  on("job", (job) => renderJob(jobs.get(job.name)));
  on("tick", refreshTimes);
}

function renderAll() {
  for (const [name, row] of rows) {
    if (!jobs.has(name)) {
      row.remove();
      rows.delete(name);
    }
  }
  for (const job of jobs.values()) renderJob(job, false);
  $("jobs-body").replaceChildren(...[...jobs.keys()].map((name) => rows.get(name)));
  refreshTags();
  applyFilter();
}

function renderJob(job, alone = true) {
  let row = rows.get(job.name);
  if (!row) {
    row = el("tr", { "data-job": job.name });
    rows.set(job.name, row);
    if (alone) $("jobs-body").append(row);
  }
  row.replaceChildren(...cells(job));
  row.dataset.status = job.status;
  if (alone) {
    refreshTags();
    applyFilter();
  }
}

function cells(job) {
  const why = job.status !== "running" && job.why ? el("div", { class: "why" }, job.why) : null;
  const tail = logTail(job);
  const said = tail ? el("pre", { class: "log-tail", title: tail.title }, tail.text) : null;
  return [
    cell("Job", "name", el("a", { href: `#/job/${encodeURIComponent(job.name)}` }, job.name)),
    cell("Type", "type", job.type),
    cell("State", "state", badge("state", job.status), why, said),
    cell("PID", "pid", job.pids && job.pids.length ? job.pids.join(" ") : "–"),
    cell("Uptime / next", "when", timeText(job)),
    cell("Last run", "last", lastRun(job.last_run)),
    cell("Restarts", "restarts", String(job.restarts)),
    cell("Tags", "tags", job.tags.map((tag) => el("span", { class: "tag" }, tag))),
    cell("Actions", "ops", el("span", { class: "actions" }, actionButtons(job))),
  ];
}

// A failed or backing-off job's reason in its own words: the last lines it wrote to stderr.
export function logTail(job) {
  const tail = job.log_tail;
  if (!tail || !tail.lines.length || !["failed", "backoff"].includes(job.status)) return null;
  const title = tail.stream ? "the last lines it wrote to stderr" : "the last lines of its log";
  return { title, text: tail.lines.join("\n") };
}

function cell(label, name, ...content) {
  return el("td", { "data-label": label, class: name }, ...content);
}

export function timeText(job) {
  const up = uptimeOf(job);
  if (up !== null) return `up ${duration(up)}`;
  return job.next_due ? `next ${until(job.next_due)}` : "–";
}

export function lastRun(run) {
  if (!run) return "–";
  if (!run.outcome) return el("span", {}, badge("outcome", "running"), ` ${ago(run.started)}`);
  const exit = run.signal ? `signal ${run.signal}` : `exit ${run.exit_code}`;
  return el("span", { title: exit }, badge("outcome", run.outcome), ` ${ago(run.ended)}`);
}

function refreshTimes() {
  for (const [name, row] of rows) {
    const job = jobs.get(name);
    const when = row.querySelector("td.when");
    const text = timeText(job);
    if (when && when.textContent !== text) when.textContent = text;
  }
}

function refreshTags() {
  const select = $("filter-tag");
  const chosen = select.value;
  const tags = [...new Set([...jobs.values()].flatMap((job) => job.tags))].sort();
  const current = [...select.options].slice(1).map((option) => option.value);
  if (current.join("\n") === tags.join("\n")) return;
  select.replaceChildren(el("option", { value: "" }, "all tags"), ...tags.map((tag) => el("option", { value: tag }, tag)));
  select.value = tags.includes(chosen) ? chosen : "";
}

function applyFilter() {
  const text = $("filter-text").value.trim().toLowerCase();
  const tag = $("filter-tag").value;
  let shown = 0;
  for (const [name, row] of rows) {
    const job = jobs.get(name);
    const said = job.log_tail ? job.log_tail.lines.join(" ") : "";
    const haystack = [job.name, job.type, job.status, job.why || "", said, ...job.tags].join(" ").toLowerCase();
    row.hidden = !(haystack.includes(text) && (!tag || job.tags.includes(tag)));
    if (!row.hidden) shown += 1;
  }
  $("jobs-empty").hidden = shown > 0;
}
