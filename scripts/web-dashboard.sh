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

# An integrity "sha512-<base64>" as hex, and a file's SHA-512 in hex
# (coreutils only).
hex_of() { printf '%s' "${1#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n'; }
sha512_of() { sha512sum "$1" | cut -d' ' -f1; }

while read -r name version want; do
	case "$name" in '' | '#'*) continue ;; esac
	tgz=$cache/$name-$version.tgz
	want_hex=$(hex_of "$want")
	if [ ! -f "$tgz" ] || [ "$(sha512_of "$tgz")" != "$want_hex" ]; then
		rm -f "$tgz"
		(cd "$work" && npm pack --silent --pack-destination "$cache" "$name@$version" >/dev/null)
	fi
	got=$(sha512_of "$tgz")
	if [ "$got" != "$want_hex" ]; then
		echo "$name@$version: sha512 $got, want $want_hex ($want in web/dashboard/deps.txt)" >&2
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
