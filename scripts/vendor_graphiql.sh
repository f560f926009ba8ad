#!/usr/bin/env bash
# Re-fetch the GraphiQL assets served by GET /graphql, so the page works with no internet.
#
# Strawberry's built-in GraphiQL loads React and GraphiQL from a public CDN; bulkops serves
# bulkops/static/graphiql.html instead, which loads only these vendored files from
# /static/graphiql/. This script is not run by CI: it documents (and redoes) how the files
# were obtained. It needs only `npm` and the npm registry.
#
#   bash scripts/vendor_graphiql.sh          # then review `git diff --stat bulkops/static`
#
# Pinned versions. graphiql 3.9.x is the last line whose package ships a minified UMD
# bundle (`graphiql.min.js`, global `GraphiQL`, React/ReactDOM taken from globals; the
# 3.8.x "min" file is an unminified 3.5 MB development build). GraphiQL 3 supports
# React 16.8-18, and React 18.3 is the last React with UMD builds.
set -euo pipefail

GRAPHIQL_VERSION=3.9.0
REACT_VERSION=18.3.1

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/bulkops/static/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" \
  >/dev/null
for tarball in "graphiql-$GRAPHIQL_VERSION" "react-$REACT_VERSION" "react-dom-$REACT_VERSION"; do
  pkg="${tarball%-*}"
  mkdir -p "$pkg"
  tar -xzf "$tarball.tgz" -C "$pkg" --strip-components=1
done

mkdir -p "$dest"
# Only the vendored files are replaced; page.js (our own code) is left alone.
rm -f "$dest"/react.production.min.js "$dest"/react-dom.production.min.js \
  "$dest"/graphiql.min.js "$dest"/graphiql.min.css "$dest"/LICENSE-*
cp react/umd/react.production.min.js "$dest/"
cp react-dom/umd/react-dom.production.min.js "$dest/"
cp graphiql/graphiql.min.js graphiql/graphiql.min.css "$dest/"
cp react/LICENSE "$dest/LICENSE-react"
cp react-dom/LICENSE "$dest/LICENSE-react-dom"
cp graphiql/LICENSE "$dest/LICENSE-graphiql"

# The source maps are not shipped: drop the comments pointing at them, so that opening the
# browser's devtools does not request missing files.
sed -i '/^\/\/# sourceMappingURL=/d' "$dest"/*.js
sed -i 's#/\*\# sourceMappingURL=[^*]*\*/##' "$dest"/graphiql.min.css

# The page must reach nothing but its own server: fail if a vendored file loads anything
# from elsewhere (URLs in comments and strings are fine; stylesheet imports and url() are not).
if grep -Eq '@import|url\((["'\'']?)(https?:)?//' "$dest"/graphiql.min.css; then
  echo "graphiql.min.css loads external resources" >&2
  exit 1
fi

printf 'graphiql %s, react %s, react-dom %s\n' "$GRAPHIQL_VERSION" "$REACT_VERSION" \
  "$REACT_VERSION" >"$dest/VERSIONS"
du -sh "$dest"
