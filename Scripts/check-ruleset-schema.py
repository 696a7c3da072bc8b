#!/usr/bin/env python3
"""Validates every sample rule set in Schema/rulesets/ against Schema/ruleset.schema.json.

Editors validate operators' files against the same JSON Schema while they type, so the
samples must conform to it. Exit 0 when all conform, 1 otherwise.
"""
import copy
import json
import pathlib
import sys

try:
    import jsonschema
    import yaml
except ImportError as error:
    sys.exit(f"check-ruleset-schema: {error}; run Scripts/prerequisites.sh (installs Scripts/requirements-test.txt)")

root = pathlib.Path(__file__).resolve().parent.parent
schema_path = root / "Schema" / "ruleset.schema.json"
if not schema_path.exists():
    print("check-ruleset-schema: no Schema/ruleset.schema.json yet", file=sys.stderr)
    sys.exit(1)
schema = json.loads(schema_path.read_text(encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)


class StringTimestamps(yaml.SafeLoader):
    """Keeps timestamps as text, as the JSON form of a rule set carries them."""


StringTimestamps.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

failures = 0
samples = sorted((root / "Schema" / "rulesets").glob("*.yaml")) + sorted((root / "Schema" / "rulesets").glob("*.json"))
for path in samples:
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=StringTimestamps)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    for error in errors:
        failures += 1
        location = ".".join(str(p) for p in error.path) or "(root)"
        print(f"{path.relative_to(root)}: {location}: {error.message}", file=sys.stderr)
    # The schema must also reject broken copies, or editors would accept anything.
    unknown_key = copy.deepcopy(document)
    unknown_key["activities"][0]["colour"] = "green"
    zero_rate = copy.deepcopy(document)
    zero_rate["grams_per_point"] = 0
    if validator.is_valid(unknown_key) or validator.is_valid(zero_rate):
        failures += 1
        print(f"{path.relative_to(root)}: a broken copy passes the schema", file=sys.stderr)
if failures:
    sys.exit(1)
print(f"check-ruleset-schema: {len(samples)} sample rule set(s) conform to Schema/ruleset.schema.json")
