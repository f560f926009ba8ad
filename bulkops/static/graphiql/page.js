/* bulkops GraphiQL page: a fetcher for /graphql (HTTP POST, and graphql-transport-ws for
 * subscriptions) and the bearer token in the headers editor. Loaded by graphiql.html after
 * the vendored React, ReactDOM and GraphiQL UMD bundles; it loads nothing from elsewhere. */
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

  // A minimal graphql-transport-ws client: one WebSocket per subscription, authenticated in
  // connection_init with the Authorization value from the headers editor. Returns an
  // Observable, which GraphiQL subscribes to and unsubscribes from when stopped.
  function subscribeOverWebSocket(params, authorization) {
    return {
      subscribe: function (observer) {
        var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
        var socket = new WebSocket(scheme + '//' + window.location.host + ENDPOINT, 'graphql-transport-ws');
        var id = '1';
        var done = false;
        var acknowledged = false;

        function finish() {
          done = true;
          if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
            socket.close(1000, 'Normal Closure');
          }
        }

        function send(message) {
          socket.send(JSON.stringify(message));
        }

        socket.onopen = function () {
          send({ type: 'connection_init', payload: authorization ? { authorization: authorization } : {} });
        };
        socket.onmessage = function (event) {
          var message;
          try {
            message = JSON.parse(event.data);
          } catch (e) {
            return;
          }
          switch (message.type) {
            case 'connection_ack':
              acknowledged = true;
              send({
                id: id,
                type: 'subscribe',
                payload: {
                  query: params.query,
                  variables: params.variables || undefined,
                  operationName: params.operationName || undefined,
                  extensions: params.extensions || undefined,
                },
              });
              break;
            case 'ping':
              send({ type: 'pong' });
              break;
            case 'next':
              if (message.id === id) observer.next(message.payload);
              break;
            case 'error':
              if (message.id === id) {
                observer.next({ errors: message.payload });
                finish();
                observer.complete();
              }
              break;
            case 'complete':
              if (message.id === id) {
                finish();
                observer.complete();
              }
              break;
            default:
              break;
          }
        };
        socket.onerror = function () {
          /* followed by onclose, which reports it */
        };
        socket.onclose = function (event) {
          if (done) return;
          done = true;
          var reason = event.reason || (acknowledged ? 'connection closed' : 'connection refused');
          observer.error(new Error('WebSocket closed (' + event.code + '): ' + reason));
        };

        return {
          unsubscribe: function () {
            if (done) return;
            if (acknowledged && socket.readyState === WebSocket.OPEN) {
              send({ id: id, type: 'complete' });
            }
            finish();
          },
        };
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
