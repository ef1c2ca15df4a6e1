// The HTTP API client: the credential from sessionStorage, problem documents as errors, one
// prompt shared by every request that got 401. The page says how the API is guarded: by
// floworch's bearer tokens, or (on a Function App) by a function key, which the Functions host
// checks in the x-functions-key header before floworch sees the request.

const TOKEN_KEY = 'floworch.token';
const FUNCTION_KEY = 'floworch.functionKey';

/** 'function-key' when a Function App serves the page, else 'bearer'. */
export const authKind =
  document.querySelector('meta[name="floworch-auth"]')?.content === 'function-key' ? 'function-key' : 'bearer';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

let prompt = null;
let pendingPrompt = null;

/** Sets the function asked for a credential on 401: (detail) => Promise<boolean> (false: gave up). */
export function onUnauthorized(fn) {
  prompt = fn;
}

const storageKey = () => (authKind === 'function-key' ? FUNCTION_KEY : TOKEN_KEY);

/** The bearer token, or the function key on a Function App. */
export function getToken() {
  return sessionStorage.getItem(storageKey());
}

export function setToken(token) {
  if (token) sessionStorage.setItem(storageKey(), token);
  else sessionStorage.removeItem(storageKey());
}

export function authHeaders() {
  const token = getToken();
  if (!token) return {};
  return authKind === 'function-key' ? {'x-functions-key': token} : {Authorization: `Bearer ${token}`};
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

function keyRefused() {
  return getToken()
    ? 'The Function App refused this function key.'
    : 'This Function App needs a function key for its API.';
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
      const ours = (res.headers.get('Content-Type') || '').startsWith('application/problem+json');
      const problem = await problemOf(res);
      // On a Function App only the host's refusal (no problem document of ours) is about the
      // function key; floworch's own 401 there (no App Service principal) is not.
      if (authKind === 'function-key' && ours) throw new ApiError(401, problem);
      if (await askForToken(authKind === 'function-key' ? keyRefused() : problem.detail)) continue;
      throw new ApiError(401, problem);
    }
    if (!res.ok) throw new ApiError(res.status, await problemOf(res));
    if (res.status === 204) return null;
    return res.json();
  }
}

/** Encodes one path segment. */
export const seg = encodeURIComponent;
