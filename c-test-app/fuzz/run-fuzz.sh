#!/usr/bin/env bash
# run-fuzz.sh NAME SECONDS: runs the libFuzzer target target/fuzz/NAME (built by `make
# fuzz-build`) for SECONDS seconds of wall time, on its corpus target/fuzz/corpus/NAME (new inputs
# are added there and kept between runs) and its seeds target/fuzz/seeds/NAME (the golden
# vectors, seed-corpus.sh). libFuzzer's output goes to target/fuzz/NAME.log; its last lines are
# printed. Exits 0 when the time ran out without a finding. A crash, a sanitizer report, a leak,
# an input slower than FUZZ_INPUT_TIMEOUT_SECONDS or larger in memory than FUZZ_RSS_LIMIT_MB
# exits non-zero and leaves the reproducer at target/fuzz/artifacts/NAME-<kind>-<sha1>; run it
# again with: target/fuzz/NAME target/fuzz/artifacts/NAME-<kind>-<sha1>
set -u
[ $# -eq 2 ] || { echo "usage: $0 NAME SECONDS" >&2; exit 2; }
cd "$(dirname "$0")/.."
FUZZ_INPUT_TIMEOUT_SECONDS=${FUZZ_INPUT_TIMEOUT_SECONDS:-10}
FUZZ_RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-2048}
name=$1
bin=target/fuzz/$name
corpus=target/fuzz/corpus/$name
seeds=target/fuzz/seeds/$name
artifacts=target/fuzz/artifacts
log=target/fuzz/$name.log
if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
  echo "run-fuzz: missing $bin or $seeds: run make fuzz-build first" >&2
  exit 2
fi
mkdir -p "$corpus" "$artifacts"
started=target/fuzz/$name.started
touch "$started"
"$bin" -max_total_time="$2" -timeout="$FUZZ_INPUT_TIMEOUT_SECONDS" \
  -rss_limit_mb="$FUZZ_RSS_LIMIT_MB" -use_value_profile=1 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-" "$corpus" "$seeds" >"$log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log"
  grep -E 'DONE +cov' "$log" | tail -n 1
  exit 0
fi
echo "run-fuzz: $name found a problem (exit $rc); libFuzzer's log ($log), last lines:" >&2
tail -n 60 "$log" >&2
for a in $(find "$artifacts" -name "$name-*" -newer "$started"); do
  echo "run-fuzz: reproducer $a; run it again with: $bin $a" >&2
done
exit 1
