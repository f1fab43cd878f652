// Building the page from data. Text from jobs (names, messages, log lines, arguments)
// only ever becomes text nodes or attribute values: nothing here parses HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined).map(toNode));
  return node;
}

function toNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

export const $ = (id) => document.getElementById(id);

export function badge(kind, value) {
  return el("span", { class: `badge ${kind}-${value}` }, value);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  let minutes = Math.floor(seconds / 60);
  const secs = Math.floor(seconds % 60);
  if (minutes < 60) return `${minutes}m${String(secs).padStart(2, "0")}s`;
  let hours = Math.floor(minutes / 60);
  minutes %= 60;
  if (hours < 48) return `${hours}h${String(minutes).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

// The server's clock (epoch seconds), so times from the daemon read right on a device
// whose own clock is off.
let offset = 0;
export const now = () => Date.now() / 1000 + offset;

export function setServerTime(serverNow) {
  offset = serverNow - Date.now() / 1000;
}

export function ago(moment) {
  return moment ? `${duration(Math.max(0, now() - moment))} ago` : "–";
}

export function until(moment) {
  if (!moment) return "–";
  const left = moment - now();
  if (left > 86400) return clock(moment);
  return left <= 0 ? "now" : `in ${duration(left)}`;
}

export function clock(moment) {
  if (!moment) return "–";
  const d = new Date(moment * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// The time of day for today's moments, else the date and the minute.
export function shortClock(moment) {
  if (!moment) return "–";
  const full = clock(moment);
  return full.slice(0, 10) === clock(now()).slice(0, 10) ? full.slice(11) : full.slice(0, 16);
}

export function definitions(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

let toastTimer = null;

export function say(message, error = false) {
  const toast = $("toast");
  toast.textContent = message;
  toast.classList.toggle("error", error);
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, error ? 8000 : 3000);
}
