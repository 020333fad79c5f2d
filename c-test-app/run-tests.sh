#!/usr/bin/env bash
# Runs the C test programs against real psiskv servers (`make test` runs this after `make`).
#
# 1. test_golden: the C codec against the shared golden vectors; test_hostile: the library
#    against a fake server in-process that breaks the protocol; test_retry: the library riding
#    through a crash of that fake's Data Server (reconnect, resume, resend; it sets
#    PSISKV_RETRY_TIMEOUT_MS itself, per child process); test_descriptor: descriptors are file
#    descriptors the library owns; test_fork: a descriptor used by a parent and its forked child
#    at once, against the fake; test_read_returns: what kv_read returns with and without
#    PSISKV_READ_RETURNS=zero (it sets the variable itself, per child process), against the fake;
#    then each libFuzzer target (fuzz/run-fuzz.sh) for FUZZ_SECONDS. None of them needs the
#    servers.
# 2. Starts the servers: $SERVER_CMD --port $PORT --data-dir <fresh temp dir> [--max-value-bytes N]
#    and waits, with a deadline, for the Front Server's stdout line
#    "psiskv front server listening on <bind>:<port>" (polling its output file: a condition with a
#    deadline, never a fixed sleep).
# 3. Runs every program against 127.0.0.1:<port> (test_fork and test_read_returns again, against
#    the real servers), stdin </dev/null (so the prompts of test1 do not wait), each bounded by
#    PROGRAM_TIMEOUT_SECONDS; test_install.sh (build-scripts/install-libpsiskv into temporary
#    prefixes, a program built through pkg-config run against the servers); then a short run of
#    the benchmark's load
#    generator (loadgen-psiskv, under a second): it must print a result line with ops, no errors
#    and no misses. Before the servers start: test_histogram (the load generator's histogram) and
#    loadgen-psiskv's answer to a bad option (exit 2).
# 4. Stops the servers, also when a program failed or this script is interrupted (EXIT trap):
#    SIGTERM to the Front Server (it stops the Data Server), wait with a deadline for both, then
#    SIGKILL whatever is left. The pids come from front.pid / data.pid in the data dir when the
#    servers write them, else the pid of $SERVER_CMD. Needing SIGKILL counts as a failure.
# 5. Prints "N passed, M failed" (one per program, plus the orderly stop) and exits 1 on any
#    failure.
#
# Environment:
#   PORT                     Front Server port; default 0 (ephemeral, read from the listening line)
#   SERVER_CMD               the server command, split on spaces; default
#                            "java -jar ../servers/target/psiskv-server.jar"
#   MAX_VALUE_BYTES          passed as --max-value-bytes and to test_edge; default 2097152 (small,
#                            so the too-large test stays cheap); empty: the flag is not passed and
#                            test_edge assumes the protocol default (64 MiB)
#   START_TIMEOUT_SECONDS    deadline for the listening line (default 60)
#   STOP_TIMEOUT_SECONDS     deadline for an orderly stop after SIGTERM (default 15)
#   PROGRAM_TIMEOUT_SECONDS  deadline for each program (default 120)
#   FUZZ_SECONDS             how long each fuzz target runs (default 25; two targets)
set -u
cd "$(dirname "$0")"

BIN=target
GOLDEN=../java-client/src/test/resources/golden-vectors.txt
JAR=../servers/target/psiskv-server.jar
SERVER_CMD=${SERVER_CMD:-java -jar $JAR}
PORT=${PORT:-0}
MAX_VALUE_BYTES=${MAX_VALUE_BYTES-2097152}
START_TIMEOUT_SECONDS=${START_TIMEOUT_SECONDS:-60}
STOP_TIMEOUT_SECONDS=${STOP_TIMEOUT_SECONDS:-15}
PROGRAM_TIMEOUT_SECONDS=${PROGRAM_TIMEOUT_SECONDS:-120}
FUZZ_SECONDS=${FUZZ_SECONDS:-25}
FUZZ_TARGETS="fuzz_response fuzz_reader"
HOST=127.0.0.1
LISTENING='^psiskv front server listening on .*:[0-9]+$'
POLL_SECONDS=0.05

work=$(mktemp -d "${TMPDIR:-/tmp}/psiskv-c-tests.XXXXXX")
data_dir=$work/data
mkdir "$data_dir"
server_pid=
passed=0
failed=0

log() { echo "run-tests: $*"; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Prints the pid in file $1 if it holds one.
pid_from() {
  local pid=
  [ -s "$1" ] && read -r pid <"$1"
  case $pid in '' | *[!0-9]*) ;; *) echo "$pid" ;; esac
}

# wait_gone SECONDS PID...: until no PID is alive (0) or the deadline passes (1).
wait_gone() {
  local deadline=$((SECONDS + $1)) p any
  shift
  while :; do
    any=
    for p in "$@"; do alive "$p" && any=1; done
    [ -z "$any" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep "$POLL_SECONDS"
  done
}

# Stops the servers (idempotent). Returns 1 if they had to be killed.
stop_servers() {
  local front data rc=0
  [ -z "$server_pid" ] && return 0
  front=$(pid_from "$data_dir/front.pid")
  data=$(pid_from "$data_dir/data.pid")
  front=${front:-$server_pid}
  kill -TERM "$front" 2>/dev/null
  if ! wait_gone "$STOP_TIMEOUT_SECONDS" "$front" $data "$server_pid"; then
    log "servers still running ${STOP_TIMEOUT_SECONDS}s after SIGTERM: SIGKILL"
    kill -KILL "$front" $data "$server_pid" 2>/dev/null
    wait_gone 5 "$front" $data "$server_pid"
    rc=1
  fi
  wait "$server_pid" 2>/dev/null
  server_pid=
  return $rc
}

show_server_output() {
  log "server stdout (tail):"
  tail -n 20 "$work/server.out" 2>/dev/null
  log "server stderr (tail):"
  tail -n 40 "$work/server.err" 2>/dev/null
}

cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run NAME COMMAND...: one program, bounded in time, counted.
run() {
  local name=$1 rc
  shift
  log "=== $name"
  timeout --kill-after=5 "$PROGRAM_TIMEOUT_SECONDS" "$@" </dev/null
  rc=$?
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    log "=== $name: passed"
  else
    failed=$((failed + 1))
    log "=== $name: FAILED (exit $rc)"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

for p in test_golden test_hostile test_retry test_descriptor test_fork test_read_returns test1 \
         test1_cxx test2 test2_cxx test_edge test_histogram loadgen-psiskv fuzz/fuzz_response \
         fuzz/fuzz_reader; do
  if [ ! -x "$BIN/$p" ]; then
    log "missing $BIN/$p: run make first"
    exit 2
  fi
done

run test_golden "$BIN/test_golden" "$GOLDEN"
run test_hostile "$BIN/test_hostile"
run test_retry "$BIN/test_retry"
run test_descriptor "$BIN/test_descriptor"
run test_fork_fake "$BIN/test_fork"
run test_read_returns_fake "$BIN/test_read_returns"
for t in $FUZZ_TARGETS; do
  run "$t" fuzz/run-fuzz.sh "$t" "$FUZZ_SECONDS"
done
run test_histogram "$BIN/test_histogram"
# A bad option: one line on stderr, exit 2.
run loadgen_bad_option sh -c '"$0" --threads 0 2>/dev/null; [ $? -eq 2 ]' "$BIN/loadgen-psiskv"

# A short load against the servers: its result line must show operations, no errors, no misses.
LOADGEN_SMOKE='line=$("$0" --port "$1" --threads 2 --keys 500 --preload-threads 2 --seconds 0.3 \
  --warmup-seconds 0.1) || exit 1
echo "$line"
case " $line " in *" ops=0 "*) exit 1 ;; esac
case " $line " in *" errors=0 "*) ;; *) exit 1 ;; esac
case " $line " in *" misses=0 "*) ;; *) exit 1 ;; esac'

server_args=(--port "$PORT" --data-dir "$data_dir")
[ -n "$MAX_VALUE_BYTES" ] && server_args+=(--max-value-bytes "$MAX_VALUE_BYTES")
log "starting: $SERVER_CMD ${server_args[*]}"
# $SERVER_CMD is split on spaces on purpose: it is a command with its arguments.
$SERVER_CMD "${server_args[@]}" >"$work/server.out" 2>"$work/server.err" </dev/null &
server_pid=$!

port=
deadline=$((SECONDS + START_TIMEOUT_SECONDS))
while :; do
  line=$(grep -m1 -E "$LISTENING" "$work/server.out" 2>/dev/null)
  if [ -n "$line" ]; then
    port=${line##*:}
    break
  fi
  if ! alive "$server_pid"; then
    log "the server exited before listening"
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "no listening line within ${START_TIMEOUT_SECONDS}s"
    break
  fi
  sleep "$POLL_SECONDS"
done
if [ -z "$port" ]; then
  failed=$((failed + 1))
  show_server_output
  finish
fi
log "$line"

run test1 "$BIN/test1" "$HOST" "$port"
run test1_cxx "$BIN/test1_cxx" "$HOST" "$port"
run test2 "$BIN/test2" "$HOST" "$port"
run test2_cxx "$BIN/test2_cxx" "$HOST" "$port"
run test_edge "$BIN/test_edge" "$HOST" "$port" ${MAX_VALUE_BYTES:+"$MAX_VALUE_BYTES"}
run test_fork "$BIN/test_fork" "$HOST" "$port"
run test_read_returns "$BIN/test_read_returns" "$HOST" "$port"
run test_install ./test_install.sh "$HOST" "$port"
run loadgen_smoke bash -c "$LOADGEN_SMOKE" "$BIN/loadgen-psiskv" "$port"

log "=== stopping the servers"
if stop_servers; then
  passed=$((passed + 1))
  log "=== servers stopped on SIGTERM: passed"
else
  failed=$((failed + 1))
  log "=== servers stopped on SIGTERM: FAILED"
fi
[ "$failed" -eq 0 ] || show_server_output
finish
