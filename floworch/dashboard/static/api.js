// The HTTP API client: bearer token from sessionStorage, problem documents as errors, one
// token prompt shared by every request that got 401.

const TOKEN_KEY = 'floworch.token';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let prompt = null;
let pendingPrompt = null;

/** Sets the function asked for a token on 401: (detail) => Promise<boolean> (false: gave up). */
export function onUnauthorized(fn) {
  prompt = fn;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? {Authorization: `Bearer ${token}`} : {};
}

async function askForToken(detail) {
  if (!prompt) return false;
  if (!pendingPrompt) {
    pendingPrompt = prompt(detail).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

async function problemOf(res) {
  try {
    const body = await res.json();
    return typeof body === 'object' && body ? body : {detail: String(body)};
  } catch {
    return {detail: `${res.status} ${res.statusText}`};
  }
}

/**
 * Calls the API: api('runs?limit=5'), api('runs/x/cancel', {method: 'POST', body: {...}}).
 * Resolves with the JSON body; rejects with ApiError (or a TypeError when offline).
 */
export async function api(path, {method = 'GET', body, signal} = {}) {
  for (;;) {
    const headers = {Accept: 'application/json', ...authHeaders()};
    if (method !== 'GET') headers['X-Floworch-Request'] = '1';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`api/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: 'same-origin',
    });
    if (res.status === 401) {
      const problem = await problemOf(res);
      if (await askForToken(problem.detail)) continue;
      throw new ApiError(401, problem);
    }
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    if (res.status === 204) return null;
    return res.json();
  }
}

/** Encodes one path segment. */
export const seg = encodeURIComponent;
