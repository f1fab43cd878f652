// What the page knows: every job's last status and the daemon's figures, kept up to date
// by the one event stream (app.js), and the listeners the pages register.

import { now } from "./dom.js";

export const jobs = new Map(); // name -> status; `read_at` is when the server read it
export const device = { about: null };
const listeners = { job: [], event: [], snapshot: [], tick: [] };

export function on(kind, listener) {
  listeners[kind].push(listener);
}

export function emit(kind, data) {
  for (const listener of listeners[kind]) listener(data);
}

export function putJob(status) {
  jobs.set(status.name, status);
}

export function replaceJobs(list) {
  jobs.clear();
  for (const status of list) putJob(status);
}

// Uptime as of now: the daemon reported it as of read_at.
export function uptimeOf(job) {
  return job.uptime === null || job.uptime === undefined ? null : job.uptime + (now() - job.read_at);
}
