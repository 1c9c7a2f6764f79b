#!/bin/sh
# Creates .venv-test (at the project root) with the Python packages the tests use:
# openapi-spec-validator and jsonschema (is openapi.yaml valid OpenAPI 3.1? do real responses match
# its schemas?) for the Swift server tests, and pytest with the CPU build of torch (from /opt/wheels)
# for the PyTorch reference's own tests in Training/tests, and schemathesis for the hostile run
# (scripts/hostile.py fuzzes the served openapi.yaml), and selenium for the browser test of the page
# at / (Tests/web/run.sh, with Debian's chromium-driver). Idempotent: does nothing when everything
# imports already. Prints the venv's python.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-test"
imports='import openapi_spec_validator, jsonschema, yaml, pytest, numpy, PIL, safetensors, schemathesis, selenium'
torch_wheel=$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)
[ -n "$torch_wheel" ] && imports="$imports, torch"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$imports" 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
python3 -m venv "$venv" >&2
pip="$venv/bin/python -m pip install --quiet --disable-pip-version-check"
if [ -n "$torch_wheel" ]; then
    # The wheel satisfies requirements.txt's torch pin, so nothing is fetched for torch.
    $pip openapi-spec-validator jsonschema pyyaml schemathesis selenium "$torch_wheel" -r "$root/Training/requirements.txt" >&2
else
    echo "test-python-env: no CPU torch wheel in /opt/wheels: Training/tests will be skipped" >&2
    grep -v '^torch' "$root/Training/requirements.txt" > "$venv/requirements-notorch.txt"
    $pip openapi-spec-validator jsonschema pyyaml schemathesis selenium -r "$venv/requirements-notorch.txt" >&2
fi
"$venv/bin/python" -c "$imports"
echo "$venv/bin/python"
