#!/usr/bin/env python3
"""Checks Schema/openapi.yaml, and optionally captured responses against it.

    Scripts/check-openapi.py [--coverage] [--spec FILE] [CAPTURE_DIR]

1. Validates the document as OpenAPI 3.1 (openapi-spec-validator), checks that every `$ref`
   resolves, and validates every example in it against its schema.
2. With CAPTURE_DIR: validates every `*.json` file under it. Each is one captured response:

       {"method": "POST", "path": "/v1/sync/push", "status": 200,
        "content_type": "application/json; charset=utf-8", "body": <parsed JSON body>,
        "headers": {"Retry-After": "2"}}                      # "headers" is optional

   `path` is the concrete request path (a query string is ignored). The file's operation is
   found by matching `path` against the spec's path templates (concrete paths before
   templated ones, as OpenAPI prescribes) and `method`; then the response for `status`
   (exact code, else `4XX`-style range, else `default`). The status must be declared, the
   content type's media type must be declared, and the body must validate against the
   response schema (JSON Schema 2020-12, `$ref`s into the document resolved, formats checked).
   When `headers` is given, required response headers must be present. A request to a path
   the spec does not list conforms only if the spec declares `x-unmatched-route-response`
   (a response object or `$ref`) and the capture is a 404 matching it; a listed path with a
   method the spec does not list, only as the 405 of `x-unmatched-method-response`.
   `--coverage` also lists documented responses no capture exercised; `--spec` checks
   another file than Schema/openapi.yaml (for testing the checker).

Prints one line per failure; on success `check-openapi: N responses conform`.
Exit 0: all conform; 1: a failure; 2: usage error.
"""
import json
import pathlib
import re
import sys
import urllib.parse

try:
    import jsonschema
    import referencing
    import yaml
    from openapi_spec_validator import validate as validate_openapi
except ImportError as error:
    sys.exit(f"check-openapi: {error}; run Scripts/prerequisites.sh (installs Scripts/requirements-test.txt)")
from referencing.jsonschema import DRAFT202012

PROGRAM = "check-openapi"
ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "Schema" / "openapi.yaml"
RULESET_SCHEMA_PATH = ROOT / "Schema" / "ruleset.schema.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def usage(message=None):
    if message:
        print(f"{PROGRAM}: {message}", file=sys.stderr)
    print("usage: Scripts/check-openapi.py [--coverage] [--spec FILE] [CAPTURE_DIR]", file=sys.stderr)
    sys.exit(2)


class StringTimestamps(yaml.SafeLoader):
    """Keeps timestamps as text, as JSON carries them."""


StringTimestamps.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def pointer(*parts):
    """A URI fragment (RFC 6901 pointer, percent-encoded) for the given path of keys."""
    text = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return urllib.parse.quote(text, safe="/~")


class Spec:
    def __init__(self, path):
        self.path = path
        self.uri = path.as_uri()
        self.doc = yaml.load(path.read_text(encoding="utf-8"), Loader=StringTimestamps)
        resources = [(self.uri, referencing.Resource.from_contents(self.doc, default_specification=DRAFT202012))]
        if RULESET_SCHEMA_PATH.exists():
            ruleset = referencing.Resource.from_contents(json.loads(RULESET_SCHEMA_PATH.read_text(encoding="utf-8")))
            # The spec refers to it relative to itself (also when --spec names a copy elsewhere).
            resources.append((urllib.parse.urljoin(self.uri, RULESET_SCHEMA_PATH.name), ruleset))
            if ruleset.id():
                resources.append((ruleset.id(), ruleset))
        self.registry = referencing.Registry().with_resources(resources).crawl()
        self._validators = {}
        self.templates = []
        for template in self.doc.get("paths", {}):
            regex = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            literal = len(re.sub(r"\{[^/]+?\}", "", template))
            templated = template.count("{")
            self.templates.append((templated, -literal, template, re.compile(regex)))
        self.templates.sort()

    def deref(self, node, parts):
        """Follows `$ref`s of OpenAPI objects (responses, parameters, …) within the document."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise ValueError(f"cannot follow $ref {ref}")
            seen.add(ref)
            parts = [urllib.parse.unquote(p).replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]
            node = self.doc
            for part in parts:
                node = node[part]
        return node, list(parts)

    def validator(self, parts):
        """A 2020-12 validator for the schema at `parts` (a key path into the document)."""
        key = tuple(parts)
        if key not in self._validators:
            self._validators[key] = jsonschema.Draft202012Validator(
                {"$ref": self.uri + "#" + pointer(*parts)},
                registry=self.registry,
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
        return self._validators[key]

    def operations(self):
        for template, item in self.doc.get("paths", {}).items():
            for method in METHODS:
                if method in item:
                    yield template, method, item[method]

    def match(self, path):
        for _, _, template, regex in self.templates:
            if regex.match(path):
                return template
        return None


def describe(error):
    location = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "(body)"
    message = error.message
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{location}: {message}"


def check_document(spec):
    """Schema-level checks beyond openapi-spec-validator: refs resolve, examples conform."""
    failures = []

    def walk(node, parts):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    spec.registry.resolver(base_uri=spec.uri).lookup(ref)
                except Exception as error:  # noqa: BLE001 (any resolution failure is reported)
                    failures.append(f"{pointer(*parts)}: $ref {ref} does not resolve: {error}")
            for key, value in node.items():
                walk(value, parts + [key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, parts + [index])

    walk(spec.doc, [])
    if failures:
        return failures, 0

    examples = 0

    def check(value, schema_parts, where):
        nonlocal examples
        examples += 1
        for error in sorted(spec.validator(schema_parts).iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
            failures.append(f"{where}: example does not match its schema: {describe(error)}")

    def check_media(content, parts, where):
        for media_type, media in (content or {}).items():
            if "schema" not in media:
                continue
            schema_parts = parts + [media_type, "schema"]
            if "example" in media:
                check(media["example"], schema_parts, f"{where} {media_type}")
            for name, example in (media.get("examples") or {}).items():
                example, _ = spec.deref(example, [])
                if "value" in example:
                    check(example["value"], schema_parts, f"{where} {media_type} example {name}")

    for template, method, operation in spec.operations():
        where = f"{method.upper()} {template}"
        if "requestBody" in operation:
            body, parts = spec.deref(operation["requestBody"], ["paths", template, method, "requestBody"])
            check_media(body.get("content"), parts + ["content"], f"{where} request")
        for status, response in operation.get("responses", {}).items():
            response, parts = spec.deref(response, ["paths", template, method, "responses", status])
            check_media(response.get("content"), parts + ["content"], f"{where} {status}")
        parameters = list(spec.doc["paths"][template].get("parameters", [])) + list(operation.get("parameters", []))
        for parameter in parameters:
            parameter, parts = spec.deref(parameter, [])
            if "example" in parameter and "schema" in parameter and parts:
                check(parameter["example"], parts + ["schema"], f"{where} parameter {parameter['name']}")
    for name, response in spec.doc.get("components", {}).get("responses", {}).items():
        response, parts = spec.deref(response, ["components", "responses", name])
        check_media(response.get("content"), parts + ["content"], f"components.responses.{name}")
    for name, schema in spec.doc.get("components", {}).get("schemas", {}).items():
        for index, example in enumerate(schema.get("examples", []) if isinstance(schema, dict) else []):
            check(example, ["components", "schemas", name], f"components.schemas.{name} examples[{index}]")
    return failures, examples


def display(path):
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def media_type_of(content_type):
    if not isinstance(content_type, str) or not content_type.strip():
        return None
    return content_type.split(";", 1)[0].strip().lower()


def check_capture(spec, file, name, seen):
    """Failure lines for one capture file (empty when it conforms)."""
    try:
        capture = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return [f"{name}: not a readable JSON capture: {error}"]
    if not isinstance(capture, dict):
        return [f"{name}: a capture must be a JSON object"]
    missing = [key for key in ("method", "path", "status", "body") if key not in capture]
    if missing:
        return [f"{name}: capture lacks {', '.join(missing)}"]
    method, path, status = capture["method"], capture["path"], capture["status"]
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(status, int) or isinstance(status, bool):
        return [f"{name}: method and path must be strings, status an integer"]
    path = path.split("?", 1)[0]
    template = spec.match(path)
    operation = spec.doc["paths"][template].get(method.lower()) if template else None
    if operation is None:
        # Not an operation of the spec: only the declared "no such route" answer conforms.
        where = f"{method.upper()} {template or path}"
        if template is None:
            problem, extension, expected = "no path of the spec matches", "x-unmatched-route-response", 404
        else:
            problem, extension, expected = (f"the spec has no {method.upper()} operation for this path",
                                            "x-unmatched-method-response", 405)
        unmatched = spec.doc.get(extension)
        if unmatched is None:
            return [f"{name}: {where}: {problem}"]
        if status != expected:
            return [f"{name}: {where}: {problem}, and status {status} is not the {extension} {expected}"]
        where = f"{where} ({extension}) {status}"
        response, parts = spec.deref(unmatched, [extension])
    else:
        where = f"{method.upper()} {template}"
        where = f"{operation.get('operationId', where)} ({where})"
        responses = operation.get("responses", {})
        key = next((k for k in (str(status), f"{status // 100}XX", f"{status // 100}xx", "default") if k in responses), None)
        if key is None:
            return [f"{name}: {where}: status {status} is not documented (documented: {', '.join(sorted(responses))})"]
        seen.add((template, method.lower(), key))
        where = f"{where} {status}"
        response, parts = spec.deref(responses[key], ["paths", template, method.lower(), "responses", key])
    failures = []

    headers = capture.get("headers")
    if isinstance(headers, dict):
        present = {str(k).lower(): v for k, v in headers.items()}
        for header_name, header in (response.get("headers") or {}).items():
            header, _ = spec.deref(header, [])
            if header.get("required") and header_name.lower() not in present:
                failures.append(f"{name}: {where}: required header {header_name} is missing")

    content = response.get("content") or {}
    body = capture["body"]
    media_type = media_type_of(capture.get("content_type"))
    if not content:
        if body not in (None, ""):
            failures.append(f"{name}: {where}: the spec declares no body, but one was sent")
        return failures
    if media_type is None:
        return failures + [f"{name}: {where}: content_type is missing (declared: {', '.join(content)})"]
    declared = {k.lower(): k for k in content}
    chosen = declared.get(media_type) or declared.get(media_type.split("/")[0] + "/*") or declared.get("*/*")
    if chosen is None:
        return failures + [f"{name}: {where}: content type {media_type} is not declared (declared: {', '.join(content)})"]
    if "schema" not in content[chosen]:
        return failures
    validator = spec.validator(parts + ["content", chosen, "schema"])
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    failures += [f"{name}: {where}: {describe(error)}" for error in errors]
    return failures


def main(argv):
    coverage = False
    spec_path = SPEC_PATH
    arguments = []
    argv = list(argv)
    while argv:
        argument = argv.pop(0)
        if argument in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if argument == "--coverage":
            coverage = True
        elif argument == "--spec":
            if not argv:
                usage("--spec needs a file")
            spec_path = pathlib.Path(argv.pop(0)).resolve()
        elif argument.startswith("-"):
            usage(f"unknown option {argument}")
        else:
            arguments.append(argument)
    if len(arguments) > 1:
        usage("at most one capture directory")
    capture_dir = pathlib.Path(arguments[0]) if arguments else None
    if capture_dir is not None and not capture_dir.is_dir():
        usage(f"{capture_dir} is not a directory")
    if not spec_path.is_file():
        print(f"{PROGRAM}: {display(spec_path)} does not exist", file=sys.stderr)
        return 1
    shown = display(spec_path)

    try:
        spec = Spec(spec_path)
        validate_openapi(spec.doc, base_uri=spec.uri)
    except Exception as error:  # noqa: BLE001 (the validator raises several types)
        message = str(getattr(error, "message", None) or error).splitlines()[0]
        message = re.sub(r" within \{.*", "", message)
        message = message if len(message) <= 300 else message[:297] + "..."
        location = "/".join(map(str, getattr(error, "absolute_path", []) or []))
        print(f"{PROGRAM}: {shown} is not valid OpenAPI 3.1: {location + ': ' if location else ''}{message}", file=sys.stderr)
        return 1
    failures, examples = check_document(spec)
    if failures:
        for line in failures:
            print(f"{PROGRAM}: {shown}: {line}", file=sys.stderr)
        return 1
    operations = sum(1 for _ in spec.operations())
    if capture_dir is None:
        print(f"{PROGRAM}: {shown} is valid OpenAPI 3.1 ({operations} operations, {examples} examples conform)")
        return 0

    files = sorted(p for p in capture_dir.rglob("*.json") if p.is_file())
    if not files:
        print(f"{PROGRAM}: no *.json captures in {capture_dir}", file=sys.stderr)
        return 1
    seen = set()
    failed = 0
    for file in files:
        lines = check_capture(spec, file, str(file.relative_to(capture_dir)), seen)
        if lines:
            failed += 1
            for line in lines:
                print(line, file=sys.stderr)
    if coverage:
        documented = [(t, m, s) for t, m, op in spec.operations() for s in op.get("responses", {})]
        missing = [(t, m, s) for (t, m, s) in documented if (t, m, s) not in seen]
        print(f"{PROGRAM}: {len(documented) - len(missing)} of {len(documented)} documented responses exercised")
        for template, method, status in missing:
            print(f"  not exercised: {method.upper()} {template} {status}")
    if failed:
        print(f"{PROGRAM}: {failed} of {len(files)} responses do not conform to {shown}", file=sys.stderr)
        return 1
    print(f"{PROGRAM}: {len(files)} responses conform")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
