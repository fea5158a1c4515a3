#!/usr/bin/env bash
# bench/storage.sh - the storage benchmarks (part of `make bench`;
# `make bench-storage` runs them alone).
#
# Per backend (memory, sqlite, postgres):
#   - createJob over HTTP: a server on that backend, bench/httpload sending
#     createJob mutations from $INSERT_CONC clients for $HTTP_DURATION;
#   - single inserts: bench/burndown creates $JOBS jobs one Create call at a
#     time from $INSERT_CONC goroutines;
#   - burn-down: the same tool then starts a worker pool ($WORKERS workers, a
#     handler that does nothing) on those $JOBS pending jobs and times them
#     to COMPLETED.
# Type limits: per backend, $LIMIT_PAIRS alternating burn-downs of the
# same $JOBS jobs without controls and with the type limited to a
# concurrency it never reaches (10 × $WORKERS); the median ratio goes into
# the target table (the issue's target: under 10 % slower).
# River (bench/river, its own module) on the same PostgreSQL, in the same
# run: burn-down of $JOBS no-op jobs with $WORKERS workers (FetchCooldown
# 1ms) and single inserts from $INSERT_CONC goroutines; then $PAIRS more
# burn-downs of each, alternately, whose median ratio is reported too (the
# two share the machine's cores with whatever else runs). Then a table
# with the ratios the issue sets targets for. Last, the cost of metrics:
# $METRICS_PAIRS PostgreSQL burn-downs with metrics off, then on
# (bench/burndown -metrics), alternately, and the median on/off ratio.
#
# PostgreSQL: $TEST_DATABASE_URL (default the local test database); every
# measure works in a fresh schema it drops afterwards. Exit status 1 when a
# measurement failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PG=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
JOBS=${JOBS:-50000}
WORKERS=${WORKERS:-100}
INSERT_CONC=${INSERT_CONC:-16}
HTTP_DURATION=${HTTP_DURATION:-10s}
RIVER_INSERT_JOBS=${RIVER_INSERT_JOBS:-20000}
PAIRS=${PAIRS:-3} # extra alternating burn-down runs of this store and River
LIMIT_PAIRS=${LIMIT_PAIRS:-3} # alternating burn-downs per backend without and with a type limit
METRICS_PAIRS=${METRICS_PAIRS:-3} # PostgreSQL burn-downs with metrics off, then on

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jobqueue-storage.XXXXXX")
SERVER_PID=""
FAILED=0
SCHEMAS=()

stop_server() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}
cleanup() {
	stop_server
	for s in "${SCHEMAS[@]}"; do
		psql "$PG" -qAtc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '\n== %s\n' "$*" >&2; }

log "building"
go build -o bin/server ./cmd/server
go build -o "$WORK/httpload" ./bench/httpload
go build -o "$WORK/burndown" ./bench/burndown
(cd bench/river && go build -o "$WORK/river" .)

declare -A RES
# measure NAME CMD...: runs a tool, keeps its JSON line in RES[NAME].
measure() {
	local name=$1
	shift
	local out
	if out=$("$@" | grep -m1 '^{'); then
		RES[$name]=$out
	else
		echo "measurement $name FAILED" >&2
		RES[$name]=""
		FAILED=1
	fi
}
jget() {
	local v
	v=$(printf '%s\n' "$1" | sed -n 's/.*"'"$2"'":\("[^"]*"\|[^,}]*\).*/\1/p')
	printf '%s' "${v:-n/a}"
}
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/ && b ~ /^[0-9.eE+-]+$/ && b + 0 != 0) printf "%.2f", a / b; else printf "n/a" }'
}
fmtnum() { awk -v a="$1" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/) printf "%.0f", a; else printf "%s", a }'; }

# database_url BACKEND: sets URL to a fresh database of that backend (not
# through $(...): the schema it creates must reach SCHEMAS, which cleanup
# drops, and a subshell's changes to it would be lost).
database_url() {
	case $1 in
	memory) URL="memory:" ;;
	sqlite) URL="sqlite:$WORK/http-$(date +%s%N).db" ;;
	postgres)
		local s="bench_http_$(date +%s%N)"
		psql "$PG" -qAtc "CREATE SCHEMA $s" >/dev/null
		SCHEMAS+=("$s")
		local sep='?'
		[[ $PG == *\?* ]] && sep='&'
		URL="$PG${sep}search_path=$s"
		;;
	esac
}

for backend in memory sqlite postgres; do
	log "$backend: createJob over HTTP, $INSERT_CONC clients, $HTTP_DURATION"
	log_file=$WORK/server-$backend.log
	: >"$log_file"
	database_url "$backend"
	url=$URL
	env PORT=0 LOG_FORMAT=json PROCESSING_TIME=0 WORKERS=8 DATABASE_URL="$url" bin/server >"$log_file" 2>&1 &
	SERVER_PID=$!
	addr=""
	for _ in $(seq 200); do
		addr=$(sed -n 's/.*"msg":"listening".*"addr":"\([^"]*\)".*/\1/p' "$log_file" | head -n1 || true)
		[[ -n $addr ]] && break
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -n $addr ]]; then
		measure "$backend-http" "$WORK/httpload" -url "http://127.0.0.1:${addr##*:}/query" -c "$INSERT_CONC" -d "$HTTP_DURATION" -query createjob
	else
		echo "server on $backend did not start:" >&2
		tail -n 20 "$log_file" >&2
		FAILED=1
	fi
	stop_server

	log "$backend: $JOBS single inserts from $INSERT_CONC goroutines, then burn-down with $WORKERS workers"
	db=memory:
	[[ $backend == sqlite ]] && db=sqlite:
	[[ $backend == postgres ]] && db=$PG
	measure "$backend-burndown" "$WORK/burndown" -db "$db" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS"
done

log "River: burn-down of $JOBS with $WORKERS workers, then $RIVER_INSERT_JOBS single inserts from $INSERT_CONC goroutines"
measure river "$WORK/river" -database-url "$PG" -mode both -jobs "$JOBS" -insert-jobs "$RIVER_INSERT_JOBS" -concurrency "$INSERT_CONC" -workers "$WORKERS" -json

# River's burn-down rate from one of its JSON lines.
river_burn_of() { printf '%s' "$1" | sed -n 's/.*"burndown":{[^}]*"jobs_per_sec":\([0-9.eE+-]*\).*/\1/p'; }

# The burn-down target compares two systems on shared, noisy cores: the
# two are also run alternately $PAIRS more times, and the median of the
# pairs' ratios is what the target row reports.
PAIR_RATIOS=()
for i in $(seq "$PAIRS"); do
	log "burn-down pair $i of $PAIRS: this server's PostgreSQL store, then River"
	measure "pair$i-ours" "$WORK/burndown" -db "$PG" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS"
	measure "pair$i-river" "$WORK/river" -database-url "$PG" -mode burndown -jobs "$JOBS" -workers "$WORKERS" -json
	PAIR_RATIOS+=("$(ratio "$(jget "${RES[pair$i-ours]}" burndown_jobs_per_sec)" "$(river_burn_of "${RES[pair$i-river]}")")")
done
# The cost of metrics: PostgreSQL burn-downs with metrics off, then on
# (bench/burndown -metrics: the store wrapped and the pool recording, as
# the server does with METRICS=on), $METRICS_PAIRS times alternately.
METRICS_RATIOS=()
for i in $(seq "$METRICS_PAIRS"); do
	log "PostgreSQL burn-down with metrics off, then on: pair $i of $METRICS_PAIRS"
	measure "metrics$i-off" "$WORK/burndown" -db "$PG" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS"
	measure "metrics$i-on" "$WORK/burndown" -db "$PG" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS" -metrics
	METRICS_RATIOS+=("$(ratio "$(jget "${RES[metrics$i-on]}" burndown_jobs_per_sec)" "$(jget "${RES[metrics$i-off]}" burndown_jobs_per_sec)")")
done
median() { printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The cost of a type limit that is not reached, per backend.
declare -A LIMIT_MEDIAN LIMIT_RUNS
for backend in memory sqlite postgres; do
	db=memory:
	[[ $backend == sqlite ]] && db=sqlite:
	[[ $backend == postgres ]] && db=$PG
	ratios=()
	runs=""
	for i in $(seq "$LIMIT_PAIRS"); do
		log "$backend: type-limit pair $i of $LIMIT_PAIRS: burn-down without controls, then with concurrency $((10 * WORKERS))"
		measure "$backend-nolimit$i" "$WORK/burndown" -db "$db" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS"
		measure "$backend-limit$i" "$WORK/burndown" -db "$db" -jobs "$JOBS" -c "$INSERT_CONC" -workers "$WORKERS" -type-limit $((10 * WORKERS))
		free=$(jget "${RES[$backend-nolimit$i]}" burndown_jobs_per_sec)
		capped=$(jget "${RES[$backend-limit$i]}" burndown_jobs_per_sec)
		ratios+=("$(ratio "$capped" "$free")")
		runs+="$(fmtnum "$capped") vs $(fmtnum "$free"); "
	done
	LIMIT_MEDIAN[$backend]=$(median "${ratios[@]}")
	LIMIT_RUNS[$backend]="${runs%; }"
done

river_burn=$(river_burn_of "${RES[river]}")
river_insert=$(printf '%s' "${RES[river]}" | sed -n 's/.*"insert":{[^}]*"jobs_per_sec":\([0-9.eE+-]*\).*/\1/p')

echo
echo "### Storage ($JOBS jobs, $WORKERS workers, $INSERT_CONC inserting goroutines/clients; $(nproc) cores, everything on one machine)"
echo
echo "| backend | createJob over HTTP (req/s) | single inserts (jobs/s) | burn-down (jobs/s) |"
echo "|---|---|---|---|"
for backend in memory sqlite postgres; do
	echo "| $backend | $(fmtnum "$(jget "${RES[$backend-http]}" rps)") | $(fmtnum "$(jget "${RES[$backend-burndown]}" insert_jobs_per_sec)") | $(fmtnum "$(jget "${RES[$backend-burndown]}" burndown_jobs_per_sec)") |"
done
echo "| River (same PostgreSQL) | – | $(fmtnum "${river_insert:-n/a}") | $(fmtnum "${river_burn:-n/a}") |"
echo
pg_burn=$(jget "${RES[postgres-burndown]}" burndown_jobs_per_sec)
pg_insert=$(jget "${RES[postgres-burndown]}" insert_jobs_per_sec)
sqlite_burn=$(jget "${RES[sqlite-burndown]}" burndown_jobs_per_sec)
echo "| target | measured | ratio |"
echo "|---|---|---|"
echo "| PostgreSQL burn-down ≥ River's | $(fmtnum "$pg_burn") vs $(fmtnum "${river_burn:-n/a}") | $(ratio "$pg_burn" "${river_burn:-n/a}") |"
if ((PAIRS > 0)); then
	pairs=""
	for i in $(seq "$PAIRS"); do
		pairs+="$(fmtnum "$(jget "${RES[pair$i-ours]}" burndown_jobs_per_sec)") vs $(fmtnum "$(river_burn_of "${RES[pair$i-river]}")"); "
	done
	echo "| PostgreSQL burn-down ≥ River's, median of $PAIRS alternating pairs | ${pairs%; } | $(median "${PAIR_RATIOS[@]}") (pairs: ${PAIR_RATIOS[*]}) |"
fi
echo "| PostgreSQL single inserts ≥ River's ($INSERT_CONC goroutines) | $(fmtnum "$pg_insert") vs $(fmtnum "${river_insert:-n/a}") | $(ratio "$pg_insert" "${river_insert:-n/a}") |"
echo "| SQLite burn-down ≥ 5,000 jobs/s | $(fmtnum "$sqlite_burn") | $(ratio "$sqlite_burn" 5000) |"
for backend in memory sqlite postgres; do
	echo "| $backend burn-down with a type limit not reached ≥ 0.90 × without, median of $LIMIT_PAIRS pairs | ${LIMIT_RUNS[$backend]} | ${LIMIT_MEDIAN[$backend]} |"
done
if ((METRICS_PAIRS > 0)); then
	pairs=""
	for i in $(seq "$METRICS_PAIRS"); do
		pairs+="$(fmtnum "$(jget "${RES[metrics$i-on]}" burndown_jobs_per_sec)") vs $(fmtnum "$(jget "${RES[metrics$i-off]}" burndown_jobs_per_sec)"); "
	done
	echo "| PostgreSQL burn-down with metrics on ≥ 0.95 × off, median of $METRICS_PAIRS alternating pairs | ${pairs%; } | $(median "${METRICS_RATIOS[@]}") (pairs: ${METRICS_RATIOS[*]}) |"
fi
exit $FAILED
