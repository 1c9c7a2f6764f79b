#!/usr/bin/env python3
"""Checks openapi.yaml and real responses against it (run by Tests/RINServerTests).

usage: validate-responses.py OPENAPI_YAML SAMPLES_JSON

SAMPLES_JSON: {"operations": [["get", "/jobs/{id}"], ...],
               "bodies": [{"schema": "Job", "body": {...}}, ...],
               "statuses": [["get", "/healthz", "400"], ...]}   (optional)
Validates the document with openapi-spec-validator, checks that every operation exists and lists
each status it was seen to answer with, and validates every body against
components/schemas/<schema> with jsonschema (draft 2020-12, the dialect of OpenAPI 3.1). Prints
one line per failure; exits 1 if there was any.
"""
import json
import sys

import jsonschema
import yaml
from openapi_spec_validator import validate


def main() -> int:
    spec_path, samples_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)
    with open(samples_path, encoding="utf-8") as handle:
        samples = json.load(handle)
    failures = []
    try:
        validate(spec)
    except Exception as error:  # the validator raises several types
        failures.append(f"openapi.yaml is not valid OpenAPI: {error}")
    for method, path in samples["operations"]:
        if method.lower() not in spec.get("paths", {}).get(path, {}):
            failures.append(f"openapi.yaml lacks {method.upper()} {path}")
    for method, path, status in samples.get("statuses", []):
        responses = spec.get("paths", {}).get(path, {}).get(method.lower(), {}).get("responses", {})
        if str(status) not in responses:
            failures.append(f"openapi.yaml: {method.upper()} {path} answered {status}, which it does not list")
    checker = jsonschema.FormatChecker()
    for index, sample in enumerate(samples["bodies"]):
        name = sample["schema"]
        if name not in spec["components"]["schemas"]:
            failures.append(f"no schema {name}")
            continue
        root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        validator = jsonschema.Draft202012Validator(root, format_checker=checker)
        for error in validator.iter_errors(sample["body"]):
            location = "/".join(str(part) for part in error.absolute_path)
            failures.append(f"body {index} ({name}) at '{location}': {error.message}")
    for failure in failures:
        print(failure)
    print(f"checked {len(samples['operations'])} operations, {len(samples.get('statuses', []))} statuses "
          f"and {len(samples['bodies'])} bodies: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
