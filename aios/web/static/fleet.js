// The Fleet page: every device of the fleet as the `fleet` op reads it from the shared
// database (state, heartbeat, tags, version, load, running jobs, the leases it holds),
// and start / stop / restart of a job on any device: this one directly, another one
// through the `route` op. On a device with a store of its own the op answers that fleet
// mode needs PostgreSQL: the menu entry stays hidden and the page says so.
//
// Live: this daemon's events that change what the op shows (its leases, the published
// jobs, its runs, a routed operation) read it again at once. Nothing this daemon
// announces covers another device's heartbeat, load or runs, so while the page is open
// the op is also read every ttl/3 seconds, the heartbeat period. Between reads each
// heartbeat's age grows with the clock: a device shows as down as soon as its age
// reaches the lease ttl, without waiting for the next read.

import { ApiError, change, read } from "./api.js";
import { $, badge, duration, el, now, say } from "./dom.js";
import { jobs, on } from "./state.js";

const NOT_A_FLEET = "Fleet mode needs PostgreSQL"; // how the fleet op begins its refusal
const FLEET_EVENTS = new Set(["lease_acquired", "lease_lost", "fleet_converged", "fleet_published", "routed",
  "job_started", "job_exited", "job_adopted", "run_lost", "config_applied", "triggers_reclaimed"]);
const OPS = ["start", "stop", "restart"];
const SOON_MS = 150; // one read for a burst of events

let visible = false;
let view = null; // the fleet op's last answer
let readAt = 0; // when it arrived, on the server's clock
let refusal = null; // why this device is not in a fleet, once the op said so
let reading = false;
let readAgain = false;
let periodic = null;
let soon = null;
const rows = new Map(); // device id -> <tr>

export function setUp() {
  on("snapshot", (data) => { if (data.daemon) load(); });
  on("event", (event) => { if (visible && FLEET_EVENTS.has(event.name)) loadSoon(); });
  on("tick", () => { if (visible && view) refreshAges(); });
}

export function show() {
  visible = true;
  render();
  load();
}

export function hide() {
  visible = false;
  clearTimeout(periodic);
  periodic = null;
}

function loadSoon() {
  clearTimeout(soon);
  soon = setTimeout(load, SOON_MS);
}

// One read at a time; a read asked for meanwhile follows it.
async function load() {
  if (reading) {
    readAgain = true;
    return;
  }
  reading = true;
  try {
    view = await read("fleet");
    readAt = now();
    refusal = null;
  } catch (error) {
    if (error instanceof ApiError && error.message.startsWith(NOT_A_FLEET)) {
      view = null;
      refusal = error.message;
    } else if (visible) {
      say(`fleet: ${error.message}`, true); // the last known view stays, dimmed while cut off
    }
  } finally {
    reading = false;
  }
  $("nav-fleet").hidden = refusal !== null;
  if (visible) {
    render();
    clearTimeout(periodic);
    periodic = setTimeout(load, heartbeatPeriod() * 1000);
  }
  if (readAgain) {
    readAgain = false;
    load();
  }
}

function heartbeatPeriod() {
  return Math.max(1, (view ? view.ttl : 10) / 3);
}

function render() {
  $("fleet-table").hidden = view === null;
  if (view === null) {
    $("fleet-note").textContent = refusal ? `Not a fleet. ${refusal}` : "Reading the fleet…";
    return;
  }
  const shown = new Set(view.devices.map((device) => device.id));
  for (const [id, row] of rows) {
    if (!shown.has(id)) {
      row.remove();
      rows.delete(id);
    }
  }
  $("fleet-body").replaceChildren(...view.devices.map(renderDevice));
  renderJobNames();
  refreshAges();
}

function renderDevice(device) {
  let row = rows.get(device.id);
  if (!row) {
    row = el("tr", { "data-device": device.id }, actionsCell(device.id)); // kept: a job being typed stays
    rows.set(device.id, row);
  }
  const held = view.leases.filter((lease) => lease.device === device.id);
  const cells = [
    cell("Device", "name", el("span", {}, el("strong", {}, device.id),
      device.id === view.device ? el("span", { class: "muted" }, " (this)") : null)),
    cell("State", "state"),
    cell("Heartbeat", "heartbeat"),
    cell("Tags", "tags", chips(device.tags, (tag) => tag, "device-tag")),
    cell("Version", "version", device.version || "–"),
    cell("Load", "load", device.load.toFixed(2)),
    cell("Running", "running", chips(device.running, (job) => job, "job")),
    cell("Leases", "leases", chips(held, (lease) => `${lease.job} #${lease.epoch}`, "lease")),
  ];
  const actions = row.lastElementChild;
  row.replaceChildren(...cells, actions);
  return row;
}

function cell(label, name, ...content) {
  return el("td", { "data-label": label, class: name }, ...content);
}

function chips(items, text, kind) {
  return items.length ? el("span", {}, items.map((item) => el("span", { class: `tag ${kind}` }, text(item)))) : "–";
}

function actionsCell(device) {
  const input = el("input", { type: "text", class: "fleet-job", list: "fleet-jobs", placeholder: "job",
    "aria-label": `job to act on, on ${device}`, spellcheck: "false" });
  const buttons = OPS.map((op) => {
    const button = el("button", { type: "button", class: `op op-${op}`, "data-op": op }, op);
    button.addEventListener("click", () => act(device, op, input, button));
    return button;
  });
  return cell("Actions", "ops", el("span", { class: "actions" }, input, ...buttons));
}

// This device's own operations go to its daemon; another device's through the database.
async function act(device, op, input, button) {
  const job = input.value.trim();
  if (!job) {
    say(`${op} on ${device}: name a job first`, true);
    input.focus();
    return;
  }
  button.disabled = true;
  try {
    if (view && device === view.device) await change(op, { job });
    else await change("route", { device, request: { op, job } });
    say(`${op}: ${job} on ${device}`);
    loadSoon();
  } catch (error) {
    say(`${op} ${job} on ${device}: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

// The names the job field offers: this device's jobs, and what any device runs or leases.
function renderJobNames() {
  const names = new Set(jobs.keys());
  for (const device of view.devices) device.running.forEach((job) => names.add(job));
  for (const lease of view.leases) names.add(lease.job);
  $("fleet-jobs").replaceChildren(...[...names].sort().map((name) => el("option", { value: name })));
}

// Heartbeat ages as of now, and up or down from them (the age grows between reads).
function refreshAges() {
  const since = Math.max(0, now() - readAt);
  for (const device of view.devices) {
    const row = rows.get(device.id);
    if (!row) continue;
    const age = device.age === null ? null : device.age + since;
    const up = age !== null && age < view.ttl;
    const state = up ? "up" : "down";
    const shown = row.querySelector("td.state");
    if (shown.textContent !== state) shown.replaceChildren(badge("device", state));
    row.dataset.state = state;
    row.querySelector("td.heartbeat").textContent = age === null ? "never" : `${duration(age)} ago`;
  }
  $("fleet-note").textContent = `${view.devices.length} device(s); fleet jobs version ${view.version}; `
    + `lease ttl ${view.ttl} s; read ${duration(since)} ago`;
}
