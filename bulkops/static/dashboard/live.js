// Subscriptions over graphql-transport-ws with the vendored graphql-ws client (the UMD
// build's global `graphqlWs`, loaded before this module).

import { Unauthenticated } from './api.js';

const RATE_LIMITED = 4429;
const REFUSED = 4403;
const LONGEST_WAIT_MS = 60000;

/**
 * One websocket for the page. `onState` hears
 * 'connecting', 'live', 'offline' and ('rate-limited', seconds); `onRefused` that the token
 * no longer works. A dropped connection is retried by graphql-ws itself; a rate-limited
 * close (4429), which it treats as final, is retried here after a pause that doubles while
 * it repeats.
 */
export function createLive(token, { onState, onRefused, onReconnect }) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = graphqlWs.createClient({
    url: scheme + '//' + window.location.host + '/graphql',
    connectionParams: { authorization: 'Bearer ' + token },
    // Open for as long as the page is: the page is live even between subscriptions (a
    // finished job's ends), and the header's state says so truthfully.
    lazy: false,
    onNonLazyError: () => {
      /* each subscription hears of it, and reports or retries */
    },
    retryAttempts: 20,
    shouldRetry: (event) => !(event && event.code === REFUSED),
    keepAlive: 20000,
    on: {
      connecting: () => onState('connecting'),
      connected: (socket, payload, wasRetry) => {
        onState('live');
        if (wasRetry && onReconnect) onReconnect();
      },
      closed: () => onState('offline'),
    },
  });

  /**
   * Follow `query`; `next(data)` for each result. Returns a function that stops it. After a
   * rate-limited close it starts again by itself (`restarted()` is called, as results may
   * have been missed meanwhile).
   */
  function subscribe(query, variables, { next, complete, error, restarted }) {
    let stop = null;
    let timer = null;
    let stopped = false;
    let wait = 1000;
    let started = false;

    function start() {
      if (started && restarted) restarted();
      started = true;
      stop = client.subscribe(
        { query, variables },
        {
          next: (result) => {
            wait = 1000;
            if (result.data) next(result.data);
            else if (error) error(new Error(result.errors.map((e) => e.message).join('; ')));
          },
          error: (failure) => {
            if (stopped) return;
            if (failure && failure.code === RATE_LIMITED) {
              onState('rate-limited', Math.round(wait / 1000));
              timer = setTimeout(start, wait);
              wait = Math.min(wait * 2, LONGEST_WAIT_MS);
            } else if (failure && failure.code === REFUSED) {
              onRefused(new Unauthenticated('The token was refused.'));
            } else if (error) {
              error(Array.isArray(failure) ? new Error(failure[0].message) : failure);
            }
          },
          complete: () => {
            if (!stopped && complete) complete();
          },
        }
      );
    }

    start();
    return () => {
      stopped = true;
      clearTimeout(timer);
      if (stop) stop();
    };
  }

  return { subscribe, dispose: () => client.dispose() };
}
