#!/usr/bin/env bash
# Builds the dashboard served at /ui/ into internal/dashboard/dist:
# web/dashboard/src bundled and minified by esbuild (a `go tool` pinned in
# go.mod) with Preact and htm, whose files scripts/npmfetch takes from the
# npm packages pinned in web/dashboard/npm.json (version and integrity
# hash; tarballs cached). Neither Node nor npm is needed; the same sources
# and pins always give the same files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/web/dashboard
out=$root/internal/dashboard/dist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

go run ./scripts/npmfetch -manifest "$src/npm.json" -out "$work/npm"
# A node_modules for esbuild to resolve `preact`, `preact/hooks` and `htm` in.
mkdir -p "$work/node_modules/preact" "$work/node_modules/htm"
cp "$work/npm/preact.mjs" "$work/node_modules/preact/preact.mjs"
cp "$work/npm/preact-hooks.mjs" "$work/node_modules/preact/hooks.mjs"
echo '{"name":"preact","type":"module","exports":{".":"./preact.mjs","./hooks":"./hooks.mjs"}}' >"$work/node_modules/preact/package.json"
cp "$work/npm/htm.mjs" "$work/node_modules/htm/htm.mjs"
echo '{"name":"htm","type":"module","exports":{".":"./htm.mjs"}}' >"$work/node_modules/htm/package.json"

mkdir -p "$out"
rm -f "$out"/*
NODE_PATH=$work/node_modules go tool esbuild "$src/src/main.js" \
	--bundle --minify --format=esm --target=es2020 --charset=utf8 \
	--legal-comments=eof --log-level=warning --outfile="$out/app.js"
cp "$src/src/index.html" "$out/index.html"
cp "$work/npm/preact-LICENSE.txt" "$work/npm/htm-LICENSE.txt" "$out/"
