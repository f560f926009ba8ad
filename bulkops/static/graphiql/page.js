/* bulkops GraphiQL page: a fetcher for /graphql (HTTP POST, and graphql-transport-ws through
 * the graphql-ws client for subscriptions) and the bearer token in the headers editor. Loaded
 * by graphiql.html after the vendored React, ReactDOM, GraphiQL and graphql-ws UMD bundles;
 * it loads nothing from elsewhere. */
(function () {
  'use strict';

  var ENDPOINT = '/graphql';
  var TOKEN_KEY = 'bulkops:graphiql:token';

  var DEFAULT_QUERY = [
    '# API token: Headers tab, or /graphql#token=...',
    'query Overview {',
    '  operations {',
    '    name',
    '    inlineThreshold',
    '    inlineLimit',
    '    batchSize',
    '  }',
    '  products(first: 5) {',
    '    totalCount',
    '    edges {',
    '      node {',
    '        id',
    '        sku',
    '        name',
    '        status',
    '      }',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (e) {
      /* private mode or storage disabled: the token lasts for this page only */
    }
  }

  function headersFor(token) {
    return JSON.stringify({ Authorization: 'Bearer ' + token }, null, 2);
  }

  // A token in the URL fragment (#token=...) is put in the headers editor and kept in
  // localStorage; the fragment is then removed from the address bar.
  var fragment = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  var tokenFromUrl = fragment.get('token');
  if (tokenFromUrl) {
    storageSet(TOKEN_KEY, tokenFromUrl);
    fragment.delete('token');
    var rest = fragment.toString();
    window.history.replaceState(
      null,
      '',
      window.location.pathname + window.location.search + (rest ? '#' + rest : '')
    );
  }
  var storedToken = tokenFromUrl || storageGet(TOKEN_KEY);

  function authorizationFrom(headers) {
    if (!headers) return null;
    for (var name in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, name) && name.toLowerCase() === 'authorization') {
        return String(headers[name]);
      }
    }
    return null;
  }

  // Parsed here, from the query sent: the editor's own parsed document can lag behind it.
  function isSubscription(params) {
    var graphql = GraphiQL.GraphQL;
    try {
      var operation = graphql.getOperationAST(graphql.parse(params.query), params.operationName);
      return Boolean(operation && operation.operation === 'subscription');
    } catch (e) {
      return false; /* a syntax error: the server reports it */
    }
  }

  // Subscriptions go over graphql-transport-ws with the vendored graphql-ws client: one
  // client (and socket) per Authorization value from the headers editor, authenticated in
  // connection_init. Returns an Observable, which GraphiQL subscribes to and unsubscribes
  // from when stopped.
  var wsClients = {};

  function wsClientFor(authorization) {
    var key = authorization || '';
    if (!wsClients[key]) {
      var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
      wsClients[key] = graphqlWs.createClient({
        url: scheme + '//' + window.location.host + ENDPOINT,
        connectionParams: authorization ? { authorization: authorization } : {},
        // A refused token or a rate-limited connection is reported, not retried in a loop.
        retryAttempts: 0,
      });
    }
    return wsClients[key];
  }

  function closeMessage(error) {
    if (error && typeof error.code === 'number') {
      return 'WebSocket closed (' + error.code + '): ' + (error.reason || 'connection closed');
    }
    return error instanceof Error ? error.message : String(error);
  }

  function subscribeOverWebSocket(params, authorization) {
    return {
      subscribe: function (observer) {
        var unsubscribe = wsClientFor(authorization).subscribe(
          {
            query: params.query,
            variables: params.variables || undefined,
            operationName: params.operationName || undefined,
            extensions: params.extensions || undefined,
          },
          {
            next: function (value) {
              observer.next(value);
            },
            error: function (error) {
              if (Array.isArray(error)) {
                // GraphQL errors from the server's `error` message.
                observer.next({ errors: error });
                observer.complete();
              } else {
                observer.error(new Error(closeMessage(error)));
              }
            },
            complete: function () {
              observer.complete();
            },
          }
        );
        return { unsubscribe: unsubscribe };
      },
    };
  }

  var httpFetcher = GraphiQL.createFetcher({ url: ENDPOINT });

  function fetcher(params, opts) {
    if (isSubscription(params)) {
      return subscribeOverWebSocket(params, authorizationFrom(opts && opts.headers));
    }
    return httpFetcher(params, opts);
  }

  var props = {
    fetcher: fetcher,
    defaultQuery: DEFAULT_QUERY,
    defaultHeaders: headersFor(storedToken || '<your API token>'),
    defaultEditorToolsVisibility: 'headers',
    // GraphiQL keeps the headers editor (and so the token) in localStorage across reloads.
    shouldPersistHeaders: true,
  };
  if (tokenFromUrl) {
    props.headers = headersFor(tokenFromUrl);
  }

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, props));
})();
