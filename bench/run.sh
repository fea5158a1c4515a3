#!/usr/bin/env bash
# bench/run.sh - the whole load benchmark in one go (the `make bench` target).
#
#  1. builds bin/server and the tools (bench/httpload, bench/fanout, bench/rawws)
#  2. HTTP: a server with PROCESSING_TIME=0 WORKERS=8, httpload `{ __typename }`
#     then createJob (64 clients, 10s each), and the createjob/typename ratio;
#     then createJob against a server with AUTH=token (a static admin token):
#     the cost of authentication, as a ratio
#  3. websocket fan-out, each measurement against a freshly started server:
#     steady (N=2000, 10 jobs/s for 10s), burst (N=5000, 100 jobs at once) and
#     idle (N=2000, server RSS per subscriber) against the product server
#     ("server"), bench/rawws ("raw": the raw gorilla/websocket ceiling) and,
#     with BASELINE_BIN set, another build of the server ("baseline", e.g.
#     the commit before a change) so before and after are measured side by
#     side in one run
#  4. the cost of metrics: the websocket burst against fresh servers with
#     METRICS=off, then METRICS=on, METRICS_PAIRS times alternately (the
#     median on/off ratio is reported)
#  5. prints markdown tables of the results.
#
# Knobs (environment): HTTP_CONC HTTP_DURATION AUTH_PAIRS (default 3) STEADY_N STEADY_RATE
# STEADY_DURATION BURST_N BURST_JOBS BURST_DEADLINE IDLE_N IMPLS (default
# "server raw", plus "baseline" when BASELINE_BIN is set) BASELINE_BIN (a
# server binary started exactly like bin/server; it also gets
# WEBSOCKET_IMPL=gorilla, which builds before that setting was dropped
# read) MODES (fan-out measurements, default "steady burst
# idle") PARTS (default "http fanout metrics"; e.g. PARTS=fanout skips steps 2
# and 4) METRICS_PAIRS (default 3)
# SERVER_LOG_LEVEL (default info) BENCH_KEEP=1 (keep the logs directory).
# Every server is stopped on exit. Exit status 1 when a measurement failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

HTTP_CONC=${HTTP_CONC:-64}
HTTP_DURATION=${HTTP_DURATION:-10s}
AUTH_PAIRS=${AUTH_PAIRS:-3}
STEADY_N=${STEADY_N:-2000}
STEADY_RATE=${STEADY_RATE:-10}
STEADY_DURATION=${STEADY_DURATION:-10s}
BURST_N=${BURST_N:-5000}
BURST_JOBS=${BURST_JOBS:-100}
BURST_DEADLINE=${BURST_DEADLINE:-120s}
IDLE_N=${IDLE_N:-2000}
BASELINE_BIN=${BASELINE_BIN:-}
if [[ -n $BASELINE_BIN ]]; then
	IMPLS=${IMPLS:-server baseline raw}
else
	IMPLS=${IMPLS:-server raw}
fi
MODES=${MODES:-steady burst idle}
PARTS=${PARTS:-http fanout metrics}
METRICS_PAIRS=${METRICS_PAIRS:-3}
SERVER_LOG_LEVEL=${SERVER_LOG_LEVEL:-info}
# The product server's pprof listener (DEBUG_ADDR), used by the idle measurement.
DEBUG_ADDR=${DEBUG_ADDR:-127.0.0.1:16070}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jobqueue-bench.XXXXXX")
SERVER_PID=""
SERVER_ADDR=""
SERVER_LOG=""
FAILED=0

stop_server() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}

cleanup() {
	stop_server
	if [[ ${BENCH_KEEP:-0} == 1 || $FAILED != 0 ]]; then
		echo "logs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '\n== %s\n' "$*" >&2; }

# The tools need one descriptor per connection (5000 for the burst).
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt 12000 ]]; then
	ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	echo "note: open-file limit is $(ulimit -n)" >&2
fi

log "building"
go build -o bin/server ./cmd/server
for t in httpload fanout rawws; do
	go build -o "$WORK/$t" "./bench/$t"
done

# start_server NAME [VAR=value...]: starts bin/server (NAME=raw: bench/rawws,
# NAME=baseline: BASELINE_BIN) with PORT=0 and waits for its "listening" log line; sets SERVER_PID and
# SERVER_ADDR.
start_server() {
	local name=$1
	shift
	local bin=$ROOT/bin/server
	[[ $name == raw ]] && bin=$WORK/rawws
	[[ $name == baseline ]] && bin=$BASELINE_BIN
	SERVER_LOG=$WORK/server-$name-$(date +%s%N).log
	env PORT=0 LOG_FORMAT=json LOG_LEVEL="$SERVER_LOG_LEVEL" "$@" "$bin" >"$SERVER_LOG" 2>&1 &
	SERVER_PID=$!
	SERVER_ADDR=""
	local addr=""
	for _ in $(seq 200); do
		addr=$(sed -n -e 's/.*"msg":"listening".*"addr":"\([^"]*\)".*/\1/p' \
			-e 's/.*"addr":"\([^"]*\)".*"msg":"listening".*/\1/p' \
			-e 's/^listening addr=\([^ ]*\).*/\1/p' "$SERVER_LOG" | head -n1)
		[[ -n $addr ]] && break
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	if [[ -z $addr ]]; then
		echo "server $name did not report a listening address; log:" >&2
		tail -n 20 "$SERVER_LOG" >&2
		stop_server
		return 1
	fi
	case $addr in
	"[::]:"* | "0.0.0.0:"* | ":"*) addr=127.0.0.1:${addr##*:} ;;
	esac
	SERVER_ADDR=$addr
}

# jget JSON KEY: the value of KEY in a flat JSON object, or n/a.
jget() {
	local v
	v=$(printf '%s\n' "$1" | sed -n 's/.*"'"$2"'":\("[^"]*"\|[^,}]*\).*/\1/p')
	v=${v#\"}
	v=${v%\"}
	printf '%s' "${v:-n/a}"
}

# ratio A B: A/B with two decimals, n/a when not computable.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a ~ /^[0-9.eE+-]+$/ && b ~ /^[0-9.eE+-]+$/ && b + 0 != 0) printf "%.2f", a / b
		else printf "n/a" }'
}

# fmtnum X: thousands without decimals for big numbers.
fmtnum() {
	awk -v a="$1" 'BEGIN { if (a ~ /^[0-9.eE+-]+$/) printf "%.0f", a; else printf "%s", a }'
}

# measure NAME CMD...: runs a tool, stores its JSON line in RES[NAME].
declare -A RES
measure() {
	local name=$1
	shift
	local out
	if out=$("$@" | grep -m1 '^{'); then
		RES[$name]=$out
	else
		echo "measurement $name FAILED (server log: $SERVER_LOG):" >&2
		[[ -n $SERVER_LOG ]] && tail -n 10 "$SERVER_LOG" >&2
		RES[$name]=""
		FAILED=1
	fi
}

# ---------------------------------------------------------------- HTTP --
if [[ " $PARTS " != *" http "* ]]; then
	: # skipped
elif log "HTTP: server PROCESSING_TIME=0 WORKERS=8, $HTTP_CONC clients, $HTTP_DURATION per query" &&
	start_server http PROCESSING_TIME=0 WORKERS=8; then
	for q in typename createjob; do
		measure "http-$q" "$WORK/httpload" -url "http://$SERVER_ADDR/query" -c "$HTTP_CONC" -d "$HTTP_DURATION" -query "$q"
	done
	stop_server
else
	FAILED=1
fi
# The cost of access control: createJob against a fresh server without
# authentication, then a fresh one with AUTH=token (a static admin token),
# AUTH_PAIRS times alternately; the median of the pairs' ratios is reported.
AUTH_RATIOS=()
if [[ " $PARTS " == *" http "* ]]; then
	token_out=$("$ROOT/bin/server" token new --name bench --role admin 2>/dev/null)
	BENCH_TOKEN=$(sed -n 1p <<<"$token_out")
	printf '{"tokens": [%s]}\n' "$(sed -n 2p <<<"$token_out")" >"$WORK/tokens.json"
	for pair in $(seq "$AUTH_PAIRS"); do
		log "HTTP createJob without and with AUTH=token, pair $pair of $AUTH_PAIRS"
		if start_server http-noauth PROCESSING_TIME=0 WORKERS=8; then
			measure "http-createjob-noauth-$pair" "$WORK/httpload" -url "http://$SERVER_ADDR/query" -c "$HTTP_CONC" -d "$HTTP_DURATION" -query createjob
			stop_server
		else
			FAILED=1
		fi
		if start_server http-auth PROCESSING_TIME=0 WORKERS=8 AUTH=token API_TOKENS_FILE="$WORK/tokens.json"; then
			measure "http-createjob-auth-$pair" "$WORK/httpload" -url "http://$SERVER_ADDR/query" -c "$HTTP_CONC" -d "$HTTP_DURATION" -query createjob -token "$BENCH_TOKEN"
			stop_server
		else
			FAILED=1
		fi
		AUTH_RATIOS+=("$(ratio "$(jget "${RES[http-createjob-auth-$pair]:-}" rps)" "$(jget "${RES[http-createjob-noauth-$pair]:-}" rps)")")
	done
fi

# ------------------------------------------------------------- fan-out --
[[ " $PARTS " == *" fanout "* ]] || IMPLS=""
for impl in $IMPLS; do
	if [[ $impl == raw ]]; then
		server=raw
		proto=raw
		envs=()
	else
		server=$impl
		proto=graphql
		envs=(PROCESSING_TIME=0 WORKERS=8 DEBUG_ADDR="$DEBUG_ADDR")
		if [[ $impl == baseline ]]; then
			[[ -n $BASELINE_BIN ]] || { echo "IMPLS has baseline but BASELINE_BIN is not set" >&2; FAILED=1; continue; }
			envs+=(WEBSOCKET_IMPL=gorilla)
		fi
	fi
	for mode in $MODES; do
		case $mode in
		steady) args=(-n "$STEADY_N" -rate "$STEADY_RATE" -duration "$STEADY_DURATION") ;;
		burst) args=(-n "$BURST_N" -jobs "$BURST_JOBS" -deadline "$BURST_DEADLINE") ;;
		idle) args=(-n "$IDLE_N") ;;
		esac
		log "fan-out $mode against $impl"
		if ! start_server "$impl" "${envs[@]}"; then
			FAILED=1
			continue
		fi
		if [[ $mode == idle ]]; then
			# Both servers expose pprof's heap profile, whose ?gc=1 collects
			# garbage: idle RSS is read before and after a collection.
			gc_addr=$DEBUG_ADDR
			[[ $impl == raw ]] && gc_addr=$SERVER_ADDR
			args+=(-gc-url "http://$gc_addr/debug/pprof/heap?gc=1")
		fi
		measure "$impl-$mode" "$WORK/fanout" -protocol "$proto" -addr "$SERVER_ADDR" \
			-mode "$mode" -pid "$SERVER_PID" "${args[@]}"
		stop_server
	done
done

# -------------------------------------------------------------- metrics --
# The cost of metrics: the websocket burst against a fresh server with
# METRICS=off, then one with METRICS=on (the default), METRICS_PAIRS times
# alternately; the median of the pairs' ratios is reported.
METRICS_RATIOS=()
if [[ " $PARTS " == *" metrics "* ]]; then
	for pair in $(seq "$METRICS_PAIRS"); do
		for setting in off on; do
			log "websocket burst with METRICS=$setting, pair $pair of $METRICS_PAIRS"
			if start_server "metrics-$setting" PROCESSING_TIME=0 WORKERS=8 METRICS=$setting; then
				measure "metrics-$setting-$pair" "$WORK/fanout" -protocol graphql -addr "$SERVER_ADDR" \
					-mode burst -pid "$SERVER_PID" -n "$BURST_N" -jobs "$BURST_JOBS" -deadline "$BURST_DEADLINE"
				stop_server
			else
				FAILED=1
			fi
		done
		METRICS_RATIOS+=("$(ratio "$(jget "${RES[metrics-on-$pair]:-}" msgs_per_s)" "$(jget "${RES[metrics-off-$pair]:-}" msgs_per_s)")")
	done
fi

# --------------------------------------------------------------- tables --
raw_burst=$(jget "${RES[raw-burst]:-}" msgs_per_s)
{
	echo
	echo "### Websocket fan-out (steady: $STEADY_N subscribers, $STEADY_RATE jobs/s for $STEADY_DURATION; burst: $BURST_N subscribers, $BURST_JOBS jobs; idle: $IDLE_N subscribers)"
	echo
	echo "| server | burst msgs/s | burst lost | steady p99 ms | steady lost | KiB per idle subscriber | same, after a GC | burst vs raw |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for impl in $IMPLS; do
		b=${RES[$impl-burst]:-}
		s=${RES[$impl-steady]:-}
		i=${RES[$impl-idle]:-}
		blost=$(jget "$b" lost)
		[[ $(jget "$b" timed_out) == true ]] && blost="$blost (timed out)"
		slost=$(jget "$s" lost)
		[[ $(jget "$s" expected_completed) != n/a ]] && slost="$slost of $(jget "$s" expected_completed)"
		bm=$(jget "$b" msgs_per_s)
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$impl" "$(fmtnum "$bm")" "$blost" \
			"$(jget "$s" p99_ms)" "$slost" "$(jget "$i" kib_per_sub)" "$(jget "$i" kib_per_sub_after_gc)" "$(ratio "$bm" "$raw_burst")"
	done
	echo
	echo "Burst ratio server/raw: $(ratio "$(jget "${RES[server-burst]:-}" msgs_per_s)" "$raw_burst")"
	if [[ -n ${RES[baseline-burst]:-} ]]; then
		echo "Burst ratio server/baseline: $(ratio "$(jget "${RES[server-burst]:-}" msgs_per_s)" "$(jget "${RES[baseline-burst]:-}" msgs_per_s)")"
	fi
	echo
	echo "### GraphQL over HTTP ($HTTP_CONC clients, $HTTP_DURATION, PROCESSING_TIME=0 WORKERS=8)"
	echo
	echo "| query | req/s | errors | p50 ms | p99 ms |"
	echo "|---|---:|---:|---:|---:|"
	for q in typename createjob; do
		r=${RES[http-$q]:-}
		printf '| %s | %s | %s | %s | %s |\n' "$q" "$(fmtnum "$(jget "$r" rps)")" "$(jget "$r" errors)" \
			"$(jget "$r" p50_ms)" "$(jget "$r" p99_ms)"
	done
	echo
	echo "createjob/typename ratio: $(ratio "$(jget "${RES[http-createjob]:-}" rps)" "$(jget "${RES[http-typename]:-}" rps)")"
	echo
	echo "### createJob with and without AUTH=token (fresh servers, alternately)"
	echo
	echo "| pair | without req/s | with req/s | with/without |"
	echo "|---|---:|---:|---:|"
	for pair in $(seq "$AUTH_PAIRS"); do
		printf '| %s | %s | %s | %s |\n' "$pair" "$(fmtnum "$(jget "${RES[http-createjob-noauth-$pair]:-}" rps)")" \
			"$(fmtnum "$(jget "${RES[http-createjob-auth-$pair]:-}" rps)")" "${AUTH_RATIOS[$((pair - 1))]:-n/a}"
	done
	echo
	echo "median with/without: $(printf '%s\n' "${AUTH_RATIOS[@]}" | grep -v n/a | sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print "n/a"}')"
	if [[ " $PARTS " == *" metrics "* ]]; then
		echo
		echo "### Websocket burst with METRICS=off and on (fresh servers, alternately; $BURST_N subscribers, $BURST_JOBS jobs)"
		echo
		echo "| pair | off msgs/s | on msgs/s | on/off |"
		echo "|---|---:|---:|---:|"
		for pair in $(seq "$METRICS_PAIRS"); do
			printf '| %s | %s | %s | %s |\n' "$pair" "$(fmtnum "$(jget "${RES[metrics-off-$pair]:-}" msgs_per_s)")" \
				"$(fmtnum "$(jget "${RES[metrics-on-$pair]:-}" msgs_per_s)")" "${METRICS_RATIOS[$((pair - 1))]:-n/a}"
		done
		echo
		echo "median on/off: $(printf '%s\n' "${METRICS_RATIOS[@]}" | grep -v n/a | sort -n | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); else print "n/a"}')"
	fi
	echo
	echo "Raw results (one JSON line per measurement):"
	for k in http-typename http-createjob $(for p in $(seq "$AUTH_PAIRS"); do echo "http-createjob-noauth-$p http-createjob-auth-$p"; done); do
		echo "  $k: ${RES[$k]:-FAILED}"
	done
	for impl in $IMPLS; do
		for mode in $MODES; do
			echo "  $impl-$mode: ${RES[$impl-$mode]:-FAILED}"
		done
	done
}
exit "$FAILED"
