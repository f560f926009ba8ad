// Talking to bulkops over HTTP: the bearer token, /graphql requests, downloads, and what
// this server's schema offers.

const TOKEN_KEY = 'bulkops:dashboard:token';
const ENDPOINT = '/graphql';
const MAX_RATE_LIMITED_TRIES = 5;

/** The token was refused (HTTP 401, or a websocket closed with 4403). */
export class Unauthenticated extends Error {}

/** GraphQL errors with no data: a validation error, or a refusal such as FORBIDDEN. */
export class GraphQLErrors extends Error {
  constructor(errors) {
    super(errors.map((error) => error.message).join('; '));
    this.errors = errors;
  }
  get code() {
    const extensions = this.errors[0] && this.errors[0].extensions;
    return (extensions && extensions.code) || null;
  }
}

export function readToken() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY);
  } catch (e) {
    return null;
  }
}

export function saveToken(token) {
  try {
    window.sessionStorage.setItem(TOKEN_KEY, token);
  } catch (e) {
    /* storage disabled: the token lasts as long as the page */
  }
}

export function forgetToken() {
  try {
    window.sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    /* nothing kept */
  }
}

/**
 * A token in the URL fragment (/dashboard#token=...), as GraphiQL takes it: kept for the
 * session and removed from the address bar, so it is not left in the history.
 */
export function takeTokenFromUrl() {
  const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  const token = fragment.get('token');
  if (!token) return null;
  fragment.delete('token');
  const rest = fragment.toString();
  window.history.replaceState(
    null,
    '',
    window.location.pathname + window.location.search + (rest ? '#' + rest : '')
  );
  saveToken(token);
  return token;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Seconds the server asked to wait (Retry-After), doubling `fallback` when it did not say. */
function retryDelay(response, attempt) {
  const header = Number(response.headers.get('Retry-After'));
  return (header > 0 ? header : 2 ** attempt) * 1000;
}

/**
 * fetch() with the bearer token; a 429 is waited out (Retry-After) and sent again, since
 * nothing of a rate-limited request was done.
 */
export async function authorizedFetch(token, path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, {
      ...init,
      headers: { ...(init.headers || {}), Authorization: 'Bearer ' + token },
    });
    if (response.status === 401) throw new Unauthenticated('The token was refused.');
    if (response.status !== 429 || attempt + 1 >= MAX_RATE_LIMITED_TRIES) return response;
    await sleep(retryDelay(response, attempt));
  }
}

/** Run a query or mutation; its `data`, or GraphQLErrors when there is none. */
export async function graphql(token, query, variables = {}) {
  const response = await authorizedFetch(token, ENDPOINT, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error('The server answered ' + response.status + ' without JSON.');
  }
  if (!body.data) throw new GraphQLErrors(body.errors || [{ message: 'No data.' }]);
  return body.data;
}

/**
 * Download `path` with the bearer token (a plain link could not send it) and hand the
 * file to the browser under `filename`.
 */
export async function download(token, path, filename) {
  const response = await authorizedFetch(token, path);
  if (!response.ok) {
    let message = 'The download failed (' + response.status + ').';
    try {
      const body = await response.json();
      message = body.errors[0].message || message;
    } catch (e) {
      /* not JSON: keep the status */
    }
    throw new Error(message);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

/**
 * What the signed-in user and this server's schema offer: the operations, the viewer
 * (tenant, subject, scopes) and Job fields newer servers add. A server without `viewer`
 * answers that query with a validation error: then every action is shown, and the server
 * still refuses what the token may not do.
 */
export async function loadSession(token) {
  const meta = await graphql(
    token,
    '{ operations { name } __type(name: "Job") { fields { name } } }'
  );
  const jobFields = new Set(((meta.__type && meta.__type.fields) || []).map((f) => f.name));
  let viewer = null;
  try {
    viewer = (await graphql(token, '{ viewer { tenant subject scopes } }')).viewer;
  } catch (error) {
    if (!(error instanceof GraphQLErrors)) throw error;
  }
  const scopes = viewer ? viewer.scopes : null;
  return {
    token,
    viewer,
    operations: meta.operations.map((operation) => operation.name).sort(),
    // `viewer.scopes` lists what was granted; each scope includes the ones before it.
    canWrite: !scopes || ['write', 'admin', 'operator'].some((scope) => scopes.includes(scope)),
    hasCreatedBy: jobFields.has('createdBy'),
    hasNext: jobFields.has('next'),
    hasUsage: jobFields.has('usage'),
  };
}
