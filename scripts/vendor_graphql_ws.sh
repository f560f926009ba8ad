#!/usr/bin/env bash
# Re-fetch the graphql-ws browser client served under /static/graphql-ws/, used by the
# GraphiQL page and the dashboard for subscriptions (graphql-transport-ws).
#
# Like scripts/vendor_graphiql.sh, this is not run by CI: it documents (and redoes) how the
# files were obtained. It needs only `npm` and the npm registry.
#
#   bash scripts/vendor_graphql_ws.sh       # then review `git diff --stat bulkops/static`
#
# The package's UMD build (`umd/graphql-ws.min.js`) sets the global `graphqlWs` and has no
# dependencies.
set -euo pipefail

GRAPHQL_WS_VERSION=6.4.2

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/bulkops/static/graphql-ws"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "graphql-ws@$GRAPHQL_WS_VERSION" >/dev/null
mkdir -p graphql-ws
tar -xzf "graphql-ws-$GRAPHQL_WS_VERSION.tgz" -C graphql-ws --strip-components=1

mkdir -p "$dest"
rm -f "$dest"/graphql-ws.min.js "$dest"/LICENSE*
cp graphql-ws/umd/graphql-ws.min.js "$dest/"
cp graphql-ws/LICENSE.md "$dest/LICENSE-graphql-ws.md"
sed -i '/^\/\/# sourceMappingURL=/d' "$dest"/graphql-ws.min.js

printf 'graphql-ws %s\n' "$GRAPHQL_WS_VERSION" >"$dest/VERSIONS"
du -sh "$dest"
