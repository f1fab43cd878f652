// The dashboard's entry point: log-in when a token is needed, the one event stream that
// keeps every page current, hash routes (#/, #/job/NAME, #/events, #/device), the theme.

import { setUpTriggerForm } from "./actions.js";
import { ApiError, change, read, setCsrf } from "./api.js";
import { $, setServerTime } from "./dom.js";
import * as devicePage from "./device.js";
import * as eventsPage from "./events.js";
import * as jobPage from "./job.js";
import * as jobsPage from "./jobs.js";
import { device, emit, putJob, replaceJobs } from "./state.js";

const PAGES = { jobs: jobsPage, job: jobPage, events: eventsPage, device: devicePage };
const THEMES = ["auto", "light", "dark"];
let shown = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = name === "job" ? (rest.length ? "job" : "jobs") : (PAGES[name] ? name : "jobs");
  const arg = page === "job" ? decodeURIComponent(rest.join("/")) : null;
  if (shown && PAGES[shown].hide) PAGES[shown].hide();
  for (const key of [...Object.keys(PAGES), "login"]) $(`page-${key}`).hidden = key !== page;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.dataset.page === (page === "job" ? "jobs" : page));
  }
  shown = page;
  document.title = arg ? `${arg} · AIOS` : "AIOS";
  if (PAGES[page].show) PAGES[page].show(arg);
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => setLive("live"));
  source.addEventListener("error", () => setLive(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting"));
  source.addEventListener("snapshot", (message) => {
    const data = JSON.parse(message.data);
    setServerTime(data.now);
    setCsrf(data.csrf);
    device.about = data.daemon;
    replaceJobs(data.jobs);
    showDaemon(data.daemon);
    emit("snapshot", data);
  });
  source.addEventListener("job", (message) => {
    const job = JSON.parse(message.data);
    putJob(job);
    emit("job", job);
  });
  source.addEventListener("event", (message) => emit("event", JSON.parse(message.data)));
}

function setLive(state) {
  $("live").textContent = state;
  $("live").className = `live live-${state}`;
}

function showDaemon(about) {
  $("device-name").textContent = about ? about.device : "";
  $("banner").hidden = Boolean(about);
  $("banner").textContent = about ? "" : "The AIOS daemon is not reachable; showing the last known state.";
}

function setUpTheme() {
  let theme = "auto";
  try {
    theme = localStorage.getItem("aios-theme") || "auto";
  } catch {
    // storage may be unavailable (private mode): the choice then lasts for this page only
  }
  const apply = () => {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    $("theme").textContent = `◐ ${theme}`;
  };
  $("theme").addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    try {
      localStorage.setItem("aios-theme", theme);
    } catch {
      // as above
    }
    apply();
  });
  apply();
}

function showLogin() {
  for (const key of [...Object.keys(PAGES), "login"]) $(`page-${key}`).hidden = key !== "login";
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await change("login", { token: $("login-token").value });
      $("page-login").hidden = true;
      start();
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
}

function start() {
  connect();
  window.addEventListener("hashchange", route);
  route();
  setInterval(() => emit("tick"), 1000);
}

async function boot() {
  setUpTheme();
  setUpTriggerForm();
  for (const page of Object.values(PAGES)) page.setUp();
  try {
    await read("ping");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return showLogin();
  }
  start();
}

boot();
