// The Events page: the daemon's event log (newest first), then every event as it happens.

import { read } from "./api.js";
import { $, clock, el, say, shortClock } from "./dom.js";
import { on } from "./state.js";

const KEEP = 500;
let loaded = false;

export function setUp() {
  $("events-filter").addEventListener("input", applyFilter);
  on("event", (event) => {
    if (!loaded) return; // the first load brings it
    const body = $("events-body");
    body.prepend(eventRow(event));
    while (body.childElementCount > KEEP) body.lastElementChild.remove();
  });
  on("snapshot", () => { if (loaded) load(); });
}

export async function show() {
  if (!loaded) await load();
}

async function load() {
  try {
    const events = await read("events", { limit: 200 });
    $("events-body").replaceChildren(...events.map(eventRow));
    loaded = true;
    applyFilter();
  } catch (error) {
    say(`events: ${error.message}`, true);
  }
}

function eventRow(event) {
  const row = el("tr", { "data-event": event.name },
    el("td", { class: "time", title: clock(event.ts) }, shortClock(event.ts)), el("td", { class: "name" }, event.name),
    el("td", {}, event.job ? el("a", { href: `#/job/${encodeURIComponent(event.job)}` }, event.job) : "–"),
    el("td", { class: "message" }, event.message || ""));
  row.hidden = !matches(row);
  return row;
}

function matches(row) {
  return row.textContent.toLowerCase().includes($("events-filter").value.trim().toLowerCase());
}

function applyFilter() {
  for (const row of $("events-body").rows) row.hidden = !matches(row);
}
