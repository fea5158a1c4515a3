#!/usr/bin/env bash
# Builds the dashboard served at /ui/ into internal/dashboard/dist (or the
# folder given as $1): web/dashboard/src bundled and minified by esbuild
# (a `go tool` pinned in go.mod) with the packages web/dashboard/deps.txt
# pins, fetched from the npm registry with `npm pack` and checked against
# their integrity hashes. Tarballs are cached in JOBQUEUE_NPM_CACHE
# (default ~/.cache/jobqueue/npm) and checked again on every use. Only
# this script needs npm; building and running the server do not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/internal/dashboard/dist}
cache=${JOBQUEUE_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobqueue/npm}
src=$root/web/dashboard
mkdir -p "$cache" "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

integrity() { echo "sha512-$(openssl dgst -sha512 -binary "$1" | openssl base64 -A)"; }

while read -r name version want; do
	case "$name" in '' | '#'*) continue ;; esac
	tgz=$cache/$name-$version.tgz
	if [ ! -f "$tgz" ] || [ "$(integrity "$tgz")" != "$want" ]; then
		rm -f "$tgz"
		(cd "$work" && npm pack --silent --pack-destination "$cache" "$name@$version" >/dev/null)
	fi
	got=$(integrity "$tgz")
	if [ "$got" != "$want" ]; then
		echo "$name@$version: integrity $got, want $want (web/dashboard/deps.txt)" >&2
		rm -f "$tgz"
		exit 1
	fi
	mkdir -p "$work/node_modules/$name"
	tar -xzf "$tgz" -C "$work/node_modules/$name" --strip-components=1
done <"$src/deps.txt"

rm -f "$out"/*
cd "$root"
NODE_PATH=$work/node_modules go tool esbuild "$src/src/main.js" \
	--bundle --minify --format=esm --target=es2020 --charset=utf8 \
	--legal-comments=eof --log-level=warning --outfile="$out/app.js"
cp "$src/src/index.html" "$out/index.html"
