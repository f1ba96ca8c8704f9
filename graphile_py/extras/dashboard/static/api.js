// graphile-py dashboard: the JSON API at /api/v1, and the token it may need.

const API = "/api/v1";
const TOKEN_KEY = "graphile-py-dashboard-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

// ?token=... once, then sessionStorage; the URL is cleaned at once.
export function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token) {
    setToken(token);
    url.searchParams.delete("token");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  }
}

export async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method: options.method || "GET", headers, credentials: "same-origin" };
  if (init.method !== "GET") headers["X-Requested-With"] = "graphile-py-dashboard";
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    throw new ApiError(0, "The dashboard server cannot be reached (" + error.message + ").");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (response.status === 401) {
    onUnauthorized();
    throw new ApiError(401, "Sign in to continue.");
  }
  if (!response.ok) {
    const message = (data && data.message) || response.status + " " + response.statusText;
    throw new ApiError(response.status, message);
  }
  return data;
}
