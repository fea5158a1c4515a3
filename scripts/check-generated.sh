#!/usr/bin/env bash
# Fails when committed generated files differ from what `make generate`
# produces: the gqlgen code (from schema.graphqls and gqlgen.yml) and the
# web files (`make web`, from pinned npm packages). It regenerates into a
# copy of the tree, so the working tree is never touched, then compares the
# whole copy with the tree: every output of `make generate` is checked,
# including a file it adds or one it would remove.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
mkdir "$tmp/tree"
tar --exclude=./e2e/node_modules --exclude=./bin --exclude=./.git --exclude=./data -cf - . | tar -xf - -C "$tmp/tree"
make -s -C "$tmp/tree" generate >/dev/null
# What was left out of the copy is not compared.
diff -r -q "$root" "$tmp/tree" |
  grep -v -E "^Only in $root(/e2e)?: (bin|data|node_modules|\.git)\$" >"$tmp/diff" || true
if [ ! -s "$tmp/diff" ]; then
  echo "generated code and web files are current"
  exit 0
fi
echo "stale generated files: the tree differs from 'make generate' output (run make generate and commit):" >&2
cat "$tmp/diff" >&2
grep '^Files ' "$tmp/diff" | while read -r _ a _ b _; do
  diff -u "$a" "$b" | head -20 >&2 || true
done
exit 1
