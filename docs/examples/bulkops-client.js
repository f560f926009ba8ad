// A bulkops client for any frontend, with no framework: queries and mutations over HTTP,
// subscriptions over graphql-ws, a bulk mutation's answer, and a job followed to its end.
import { createClient } from 'graphql-ws';

export const TERMINAL = ['SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED'];
export const JOB_FIELDS =
  'id operation status version total processed succeeded failed skipped itemsPerSecond etaSeconds';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `url` is the API's origin (https://bulkops.example.com); `token` an API token or a JWT. */
export function createBulkopsClient({ url, token }) {
  const ws = createClient({
    url: url.replace(/^http/, 'ws') + '/graphql',
    connectionParams: { authorization: `Bearer ${token}` },
  });

  async function request(query, variables = {}) {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(url + '/graphql', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ query, variables }),
      });
      // Rate limited: nothing was done, so wait as told and send it again.
      if (response.status === 429 && attempt < 5) {
        await sleep(Number(response.headers.get('Retry-After') || 1) * 1000);
        continue;
      }
      const body = await response.json();
      if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
      return body.data;
    }
  }

  return { request, ws, dispose: () => ws.dispose() };
}

/**
 * A bulk mutation answers one of three things: the operation's summary (it ran inline),
 * `JobQueued` (it runs in the background: follow the job), or `Rejected` (nothing changed).
 * Select `__typename` on the result to tell them apart.
 */
export function readBulkResult(result) {
  if (result.__typename === 'JobQueued') return { kind: 'job', job: result.job };
  if (result.__typename === 'Rejected') {
    return { kind: 'rejected', code: result.code, message: result.message, field: result.field };
  }
  return { kind: 'done', summary: result };
}

/**
 * Follow job `id`: `onState(job)` with its current state, then every newer one. `done`
 * resolves with the terminal state (the server then completes the subscription); `stop()`
 * stops early. A rate-limited close (4429) is retried after a pause that doubles: the
 * subscription starts with the current state, so nothing is lost.
 */
export function watchJob(client, id, onState) {
  let stopped = false;
  let unsubscribe = () => {};
  let timer = null;
  const done = new Promise((resolve, reject) => {
    let last = null;
    let wait = 1000;
    const start = () => {
      unsubscribe = client.ws.subscribe(
        { query: `subscription($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`, variables: { id } },
        {
          next: ({ data, errors }) => {
            if (errors) return reject(new Error(errors[0].message));
            if (last && data.job.version < last.version) return;
            last = data.job;
            wait = 1000;
            onState(last);
          },
          error: (error) => {
            if (stopped) return;
            if (error && error.code === 4429) {
              timer = setTimeout(start, wait);
              wait = Math.min(wait * 2, 60000);
            } else {
              const reason = Array.isArray(error) ? error[0].message : (error && error.reason) || 'no connection';
              reject(error instanceof Error ? error : new Error(`Subscription ended: ${reason}`));
            }
          },
          complete: () => resolve(last),
        }
      );
    };
    start();
  });
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    unsubscribe();
  };
  return { done, stop };
}
