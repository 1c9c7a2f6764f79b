#!/usr/bin/env bash
# Creates (or reuses) .venv-test, the virtualenv the test suite uses for the checks that need Python:
# openapi-spec-validator and jsonschema for the API contract tests, and the CPU build of torch for the
# PyTorch reference's own tests (from /opt/wheels when present; those tests are skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
stamp="$venv/.complete-v1"
[ -f "$stamp" ] && exit 0

python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check openapi-spec-validator==0.7.1 jsonschema pytest \
    numpy pillow safetensors
wheel=$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check "$wheel"
else
    echo "test-python-env: no CPU torch wheel in /opt/wheels; the PyTorch reference tests will not run" >&2
fi
touch "$stamp"
