// The dashboard's entry point: log-in (the link's #token=..., else the form), the one
// event stream that keeps every page current, hash routes (#/, #/job/NAME, #/events,
// #/device, #/fleet), the theme, and how the page shows that it is cut off from the daemon.

import { setUpTriggerForm } from "./actions.js";
import { ApiError, change, read, setCsrf } from "./api.js";
import { $, setServerTime } from "./dom.js";
import * as devicePage from "./device.js";
import * as eventsPage from "./events.js";
import * as fleetPage from "./fleet.js";
import * as jobPage from "./job.js";
import * as jobsPage from "./jobs.js";
import { device, emit, putJob, replaceJobs } from "./state.js";

const PAGES = { jobs: jobsPage, job: jobPage, events: eventsPage, device: devicePage, fleet: fleetPage };
const THEMES = ["auto", "light", "dark"];
let shown = null;
let started = false;
const link = { stream: "connecting", daemon: true }; // what the page is connected to

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = name === "job" ? (rest.length ? "job" : "jobs") : (PAGES[name] ? name : "jobs");
  const arg = page === "job" ? decodeURIComponent(rest.join("/")) : null;
  if (shown && PAGES[shown].hide) PAGES[shown].hide();
  for (const key of [...Object.keys(PAGES), "login"]) $(`page-${key}`).hidden = key !== page;
  for (const item of document.querySelectorAll("nav a")) {
    item.classList.toggle("current", item.dataset.page === (page === "job" ? "jobs" : page));
  }
  shown = page;
  document.title = arg ? `${arg} · AIOS` : "AIOS";
  if (PAGES[page].show) PAGES[page].show(arg);
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => showLink({ stream: "open" }));
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) return showLink({ stream: "reconnecting" });
    showLink({ stream: "offline" }); // refused (logged out?) or gone: ask again shortly
    setTimeout(() => checkSession().then((ok) => ok && connect()), 2000);
  });
  source.addEventListener("snapshot", (message) => {
    const data = JSON.parse(message.data);
    if (data.now) setServerTime(data.now);
    setCsrf(data.csrf);
    device.about = data.daemon;
    replaceJobs(data.jobs);
    $("device-name").textContent = data.daemon ? data.daemon.device : "";
    showLink({ daemon: Boolean(data.daemon) });
    emit("snapshot", data);
  });
  source.addEventListener("job", (message) => {
    const job = JSON.parse(message.data);
    putJob(job);
    emit("job", job);
  });
  source.addEventListener("event", (message) => emit("event", JSON.parse(message.data)));
}

// Live only with the stream open and the daemon behind it; otherwise the page says so
// (the header, a banner, the tables dimmed and their buttons off) and keeps the last
// known state until both are back.
function showLink(change) {
  Object.assign(link, change);
  const state = link.stream !== "open" ? link.stream : link.daemon ? "live" : "down";
  $("live").textContent = state === "down" ? "daemon down" : state;
  $("live").className = `live live-${state}`;
  document.body.classList.toggle("disconnected", state !== "live" && state !== "connecting");
  const banner = state === "down" ? "The AIOS daemon is not reachable; showing the last known state."
    : ["reconnecting", "offline"].includes(state) ? "Disconnected from the dashboard; showing the last known state while it reconnects." : "";
  $("banner").textContent = banner;
  $("banner").hidden = !banner;
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

function setUpLogin() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await logIn($("login-token").value)) {
      $("login-token").value = "";
      start();
    }
  });
  $("logout").addEventListener("click", async () => {
    try {
      await change("logout", {});
    } finally {
      location.replace("/");
    }
  });
}

async function logIn(token) {
  try {
    setCsrf((await change("login", { token })).csrf);
    return true;
  } catch (error) {
    showLogin(error.message);
    return false;
  }
}

function showLogin(message = "") {
  for (const key of [...Object.keys(PAGES), "login"]) $(`page-${key}`).hidden = key !== "login";
  $("logout").hidden = true;
  $("login-error").textContent = message;
}

// Whether this page's session is still good; if not, the login page is shown with `why`.
async function checkSession(why = "Your session has ended; log in again.") {
  try {
    setCsrf((await read("session")).csrf);
    return true;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showLogin(why);
      return false;
    }
    return true; // the server is away: the stream retries
  }
}

// The login link carries the token in its fragment (#token=...), which no request sends:
// it is taken out of the address bar before anything else happens.
function tokenInLink() {
  const found = location.hash.match(/^#token=([^&]+)$/);
  if (!found) return null;
  history.replaceState(null, "", `${location.pathname}#/`);
  return decodeURIComponent(found[1]);
}

function start() {
  if (started) return;
  started = true;
  $("logout").hidden = false;
  connect();
  window.addEventListener("hashchange", route);
  route();
  setInterval(() => emit("tick"), 1000);
}

async function boot() {
  setUpTheme();
  setUpTriggerForm();
  setUpLogin();
  for (const page of Object.values(PAGES)) page.setUp();
  const token = tokenInLink();
  if (token !== null ? await logIn(token) : await checkSession("")) start();
}

boot();
