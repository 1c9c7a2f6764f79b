#!/usr/bin/env bash
# ThreadSanitizer over the job layer and the HTTP server: builds the tests with
# `swift build --sanitize=thread` (release, like every other build here: the tests sample real
# models) in its own scratch folder, .build-tsan, so the normal build stays as it is, then runs
# RINJobsTests, RINServerTests and the cluster-mode service tests. Every report is printed
# (halt_on_error=0); the script fails when there was any, or when a test failed. The last line reads `tsan: N reports, tests passed|failed`.
# Called by scripts/test.sh; run it alone the same way: bash scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=${TSAN_SCRATCH:-.build-tsan}
# The job layer, the server, and cluster mode's threads (claimer, lease keeper, store watchers)
# with several job services on one real PostgreSQL (ClusterServiceTests).
filter=${TSAN_FILTER:-'^(RINJobsTests|RINServerTests)\.|^RINClusterTests\.ClusterServiceTests'}
log=$(mktemp)
reports_dir=$(mktemp -d)
trap 'rm -rf "$log" "$reports_dir"' EXIT

# One OpenBLAS thread: its own threads are not instrumented, and the tests do not need them.
export OPENBLAS_NUM_THREADS=1 OPENBLAS_THREAD_TIMEOUT=1
# The exit status stays the tests' own (exitcode=0); the reports are counted here. They go to
# files, one per process: the test runner's and those of the `rind serve` daemons the
# server tests start (the TSan build of rind, beside the test bundle), whose output the tests keep.
# scripts/tsan-suppressions.txt: races TSan reports inside postgres-nio, where Swift's concurrency
# runtime hides the ordering from it (the file says why); none in rind's code.
export TSAN_OPTIONS="halt_on_error=0 exitcode=0 second_deadlock_stack=1 history_size=4 log_path=$reports_dir/tsan suppressions=$PWD/scripts/tsan-suppressions.txt ${TSAN_OPTIONS:-}"

started=$(date +%s)
swift build -c release --sanitize=thread --scratch-path "$scratch" --build-tests 2>&1 | tail -5
built=$(date +%s)
set +e
swift test -c release --sanitize=thread --scratch-path "$scratch" --skip-build --disable-swift-testing \
    --filter "$filter" 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
set -e
finished=$(date +%s)

reports=0
if compgen -G "$reports_dir/tsan.*" >/dev/null; then
    for file in "$reports_dir"/tsan.*; do
        echo "---- ThreadSanitizer, process ${file##*.} ----"
        swift demangle --simplified < "$file"
    done
    reports=$(cat "$reports_dir"/tsan.* | grep -c "^WARNING: ThreadSanitizer" || true)
    echo "tsan: the reports, by kind and first frame in rind's code:"
    cat "$reports_dir"/tsan.* | swift demangle --simplified | grep -A14 "^WARNING: ThreadSanitizer" | grep -E "^WARNING|#[0-9]+ .*/(Sources|Tests)/" |
        sed -E 's/^WARNING: ThreadSanitizer: ([A-Za-z -]+) \(pid.*/WARNING \1/; s/^ *#[0-9]+ ([^ ]+) .*(\/(Sources|Tests)\/[^ ]+).*/\2 (\1)/' |
        awk '/^WARNING/{kind=$0; next} kind{print kind " at " $0; kind=""}' | sort | uniq -c | sort -rn
fi
executed=$(grep -E "Executed [0-9]+ tests?, with [0-9]+ failures?" "$log" | tail -1 | sed -E 's/^[[:space:]]*//')
[ "$test_status" -eq 0 ] && outcome=passed || outcome=failed
echo "tsan: $reports reports, tests $outcome (${executed:-no tests ran}; build $((built - started)) s, run $((finished - built)) s)"
[ "$reports" -eq 0 ] && [ "$test_status" -eq 0 ]
