// The buttons of a job (start, stop, restart, trigger, run, enable, disable) and the
// trigger form. A click sends one POST; the new state arrives through the event stream.

import { change } from "./api.js";
import { $, el, say } from "./dom.js";

const SCHEDULED = new Set(["daily", "interval", "random_daily", "idle"]);
const LABELS = { run: "run now" };

function opsFor(job) {
  const s = job.status;
  const usable = job.enabled && s !== "ineligible";
  const ops = [];
  if (usable && ["stopped", "failed", "backoff"].includes(s)) ops.push("start");
  if (["running", "waiting", "backoff", "failed"].includes(s)) ops.push("stop");
  if (usable && (job.type === "always" || s === "running")) ops.push("restart");
  if (usable && job.type === "trigger") ops.push("trigger");
  if (usable && SCHEDULED.has(job.type) && !["running", "stopping"].includes(s)) ops.push("run");
  ops.push(job.enabled ? "disable" : "enable");
  return ops;
}

export function actionButtons(job) {
  return opsFor(job).map((op) => {
    const button = el("button", { type: "button", class: `op op-${op}`, "data-op": op }, LABELS[op] || op);
    button.addEventListener("click", () => act(op, job.name, button));
    return button;
  });
}

async function act(op, name, button) {
  if (op === "trigger") return openTrigger(name);
  button.disabled = true;
  try {
    await change(op, { job: name });
    say(`${op}: ${name}`);
  } catch (error) {
    say(`${op} ${name}: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
}

function openTrigger(name) {
  const dialog = $("trigger-dialog");
  dialog.dataset.job = name;
  $("trigger-job").textContent = name;
  $("trigger-error").textContent = "";
  dialog.showModal();
  $("trigger-args").focus();
}

// Arguments one per line (empty lines skipped); keyword arguments as key=value lines.
// Values are strings, as with `aios trigger JOB ARG --kw key=value`.
function parseArguments(argsText, kwargsText) {
  const args = argsText.split("\n").map((line) => line.replace(/\r$/, "")).filter((line) => line !== "");
  const kwargs = {};
  kwargsText.split("\n").forEach((line, index) => {
    line = line.replace(/\r$/, "");
    if (line.trim() === "") return;
    const at = line.indexOf("=");
    if (at <= 0 || line.slice(0, at).trim() === "") {
      throw new Error(`keyword line ${index + 1}: use key=value`);
    }
    kwargs[line.slice(0, at).trim()] = line.slice(at + 1);
  });
  return { args, kwargs };
}

export function setUpTriggerForm() {
  const dialog = $("trigger-dialog");
  $("trigger-cancel").addEventListener("click", () => dialog.close());
  $("trigger-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = dialog.dataset.job;
    try {
      const { args, kwargs } = parseArguments($("trigger-args").value, $("trigger-kwargs").value);
      $("trigger-submit").disabled = true;
      const id = await change("trigger", { job: name, args, kwargs });
      dialog.close();
      $("trigger-args").value = $("trigger-kwargs").value = "";
      say(`trigger ${id} queued for ${name}`);
    } catch (error) {
      $("trigger-error").textContent = error.message;
    } finally {
      $("trigger-submit").disabled = false;
    }
  });
}
