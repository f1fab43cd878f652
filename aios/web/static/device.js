// The Device page: the daemon's own figures from `ping`, read when the page opens and
// again (at most once a second) when an event shows the daemon is busy.

import { read } from "./api.js";
import { $, clock, definitions, duration, now } from "./dom.js";
import { device, jobs, on } from "./state.js";

let visible = false;
let lastRead = 0;

export function setUp() {
  on("snapshot", () => { if (visible) render(device.about); });
  on("event", () => { if (visible && now() - lastRead > 1) load(); });
}

export function show() {
  visible = true;
  render(device.about);
  load();
}

export function hide() {
  visible = false;
}

async function load() {
  lastRead = now();
  try {
    device.about = await read("about");
  } catch (error) {
    device.about = null;
  }
  if (visible) render(device.about);
}

function render(about) {
  if (!about) {
    $("device-title").textContent = "Device";
    definitions($("device-info"), [["daemon", "not reachable"]]);
    return;
  }
  const running = [...jobs.values()].filter((job) => job.status === "running").length;
  $("device-title").textContent = `Device ${about.device}`;
  definitions($("device-info"), [
    ["device id", about.device],
    ["tags", about.tags.length ? about.tags.join(", ") : "–"],
    ["AIOS version", about.version],
    ["Python", about.python],
    ["daemon pid", String(about.pid)],
    ["daemon started", clock(about.started)],
    ["daemon uptime", duration(now() - about.started)],
    ["daemon memory (RSS)", about.rss_kib === null ? "–" : `${(about.rss_kib / 1024).toFixed(1)} MiB`],
    ["daemon CPU time", `${about.cpu_seconds.toFixed(2)} s`],
    ["jobs", `${about.jobs} (${running} running)`],
    ["home", about.home],
  ]);
}
