// Talking to the dashboard server: GET reads, POST changes with the session's CSRF token
// (handed to the page only once it is logged in).

let csrf = null;

export function setCsrf(token) {
  if (token) csrf = token;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function read(op, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) query.set(key, value);
  }
  return unpack(await fetch(`/api/${op}?${query}`, { credentials: "same-origin" }));
}

export async function change(op, fields) {
  return unpack(await fetch(`/api/${op}`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", ...(csrf ? { "X-CSRF-Token": csrf } : {}) },
    body: JSON.stringify(fields),
  }));
}

async function unpack(reply) {
  let body;
  try {
    body = await reply.json();
  } catch {
    body = { ok: false, error: `HTTP ${reply.status}` };
  }
  if (!body.ok) throw new ApiError(reply.status, body.error || `HTTP ${reply.status}`);
  return body.result;
}
