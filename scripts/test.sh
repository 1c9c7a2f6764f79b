#!/usr/bin/env bash
# The whole test suite: Debian packages, a Python virtualenv for the tests that need Python
# (OpenAPI validation, the PyTorch reference's own tests), a release build, then every test.
# Release, because the engine's numeric loops run many times slower in debug builds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh --test
bash scripts/test-python-env.sh            # creates or reuses .venv-test

export OPENBLAS_THREAD_TIMEOUT=1
swift build -c release --product rind
swift build -c release --product rind-cpuid-mask   # rind bench --cpuid-mask (CommandLineTests)
# The release tarball (static Swift runtime, its own build folder), which DeployTests' boot test
# installs into a Debian root and boots under systemd-nspawn (scripts/boot-test.sh).
RIND_ARTIFACT=$(bash scripts/dist.sh | tail -1)
export RIND_ARTIFACT
log=$(mktemp)
alloclog=$(mktemp)
pylog=$(mktemp)
weblog=$(mktemp)
tsanlog=$(mktemp)
trap 'rm -f "$log" "$alloclog" "$pylog" "$weblog" "$tsanlog"' EXIT
set +e
swift test -c release --disable-swift-testing --skip AllocationTests 2>&1 | tee "$log"
swift_status=${PIPESTATUS[0]}
# The allocation test counts the allocations of every thread in its process, so it runs in a process
# of its own: threads the other tests leave behind (database clients reconnecting, timers) would
# otherwise allocate inside its windows.
swift test -c release --disable-swift-testing --filter AllocationTests 2>&1 | tee "$alloclog"
alloc_status=${PIPESTATUS[0]}
set -e

py_status=0
if .venv-test/bin/python -c "import torch" 2>/dev/null; then
    .venv-test/bin/pytest -q Training/tests 2>&1 | tee "$pylog" || py_status=$?
fi

# The short hostile run (issue 12): fuzzing, slow clients, a full disk, kill -9 loops against the
# built binary. Its checks count in the closing line.
hostile_status=0
.venv-test/bin/python scripts/hostile.py --short 2>&1 | tee -a "$log" || hostile_status=$?

# The page at / in a real headless Chromium against the built binary (Tests/web/run.sh).
web_status=0
bash Tests/web/run.sh --binary .build/release/rind 2>&1 | tee "$weblog" || web_status=$?

# ThreadSanitizer over the job layer and the server tests (scripts/tsan.sh; its own build folder).
tsan_status=0
bash scripts/tsan.sh 2>&1 | tee "$tsanlog" || tsan_status=$?

# One line each for the browser test and ThreadSanitizer, then one plain closing line for the
# three test runners.
grep -E "^web: [0-9]+ passed, [0-9]+ failed" "$weblog" | tail -1 || echo "web: did not run (status $web_status)"
grep -E "^tsan: " "$tsanlog" | tail -1 || echo "tsan: did not run (status $tsan_status)"
# XCTest's last summary line: "Executed T tests, with F failures ..." or, when some were skipped
# (e.g. the CPUID-mask tests on a CPU without CPUID faulting), "Executed T tests, with S tests
# skipped and F failures ...". Prints "T F S".
xctest_totals() {
    grep -E "^[[:space:]]*Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?" "$1" | tail -1 |
        sed -E 's/^[[:space:]]*Executed ([0-9]+) tests?, with (([0-9]+) tests? skipped and )?([0-9]+) failures?.*/\1 \4 0\3/'
}
read -r swift_total swift_failed swift_skipped <<<"$(xctest_totals "$log")"
read -r alloc_total alloc_failed alloc_skipped <<<"$(xctest_totals "$alloclog")"
swift_total=$((${swift_total:-0} + ${alloc_total:-0}))
swift_failed=$((${swift_failed:-0} + ${alloc_failed:-1}))
swift_skipped=$((10#${swift_skipped:-0} + 10#${alloc_skipped:-0}))
py_passed=$(grep -Eo "[0-9]+ passed" "$pylog" | tail -1 | grep -Eo "[0-9]+" || echo 0)
py_failed=$(grep -Eo "[0-9]+ failed" "$pylog" | tail -1 | grep -Eo "[0-9]+" || echo 0)
hostile=$(grep -E "^hostile: [0-9]+ passed, [0-9]+ failed" "$log" | tail -1 |
          sed -E 's/^hostile: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/')
read -r hostile_passed hostile_failed <<<"${hostile:-0 1}"
echo "tests: $((swift_total - swift_failed - swift_skipped + py_passed + hostile_passed)) passed, $((swift_failed + py_failed + hostile_failed)) failed, $swift_skipped skipped"
[ "$swift_status" -eq 0 ] && [ "$alloc_status" -eq 0 ] && [ "$py_status" -eq 0 ] && [ "$hostile_status" -eq 0 ] && [ "$swift_total" -gt 0 ] &&
    [ "$web_status" -eq 0 ] && [ "$tsan_status" -eq 0 ]
