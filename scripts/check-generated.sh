#!/usr/bin/env bash
# Fails when the committed gqlgen output differs from what `make generate`
# produces from schema.graphqls and gqlgen.yml, or the dashboard bundle from
# what scripts/web-dashboard.sh builds from web/dashboard. It regenerates into a copy
# of the tree, so the working tree is never touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
tar --exclude=./e2e/node_modules --exclude=./bin --exclude=./.git --exclude=./data -cf - . | tar -xf - -C "$tmp"
(cd "$tmp" && go tool gqlgen generate)
status=0
for f in graph/generated.go graph/model/models_gen.go graph/schema.resolvers.go; do
  if ! diff -q "$root/$f" "$tmp/$f" >/dev/null; then
    echo "stale generated code: $f differs from 'make generate' output" >&2
    diff -u "$root/$f" "$tmp/$f" | head -20 >&2 || true
    status=1
  fi
done
# The dashboard bundle, built from web/dashboard into the copy.
"$root/scripts/web-dashboard.sh" "$tmp/dashboard-dist"
if ! diff -r "$root/internal/dashboard/dist" "$tmp/dashboard-dist" >/dev/null; then
  echo "stale dashboard bundle: internal/dashboard/dist differs from 'make web-dashboard' output" >&2
  diff -rq "$root/internal/dashboard/dist" "$tmp/dashboard-dist" >&2 || true
  status=1
fi
[ $status -eq 0 ] && echo "generated code is current"
exit $status
