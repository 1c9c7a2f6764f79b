#!/usr/bin/env bash
# The page at / in a real headless browser: Debian's chromium and chromium-driver (installed by
# scripts/bootstrap.sh --test) driven by Selenium (scripts/test-python-env.sh's .venv-test),
# against a real `rind serve` on loopback with the bundled checkpoints (Tests/web/test_page.py).
#
#   Tests/web/run.sh [--binary PATH] [--screenshots DIR]
#
# The binary defaults to .build/release/rind (build it first: swift build -c release --product rind).
# Prints one line per test and `web: N passed, M failed` last; exits non-zero when one failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=$(bash scripts/test-python-env.sh)
exec "$python" Tests/web/test_page.py --checkpoints checkpoints "$@"
