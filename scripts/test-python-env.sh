#!/bin/sh
# Creates .venv-test (at the project root) with the Python packages the Swift tests call:
# openapi-spec-validator (is openapi.yaml valid OpenAPI 3.1?) and jsonschema (do real responses
# match its schemas?). Idempotent: does nothing when both import already. Prints the venv's python.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-test"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import openapi_spec_validator, jsonschema, yaml' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check openapi-spec-validator jsonschema pyyaml >&2
"$venv/bin/python" -c 'import openapi_spec_validator, jsonschema, yaml'
echo "$venv/bin/python"
