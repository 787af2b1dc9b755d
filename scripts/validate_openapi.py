#!/usr/bin/env python3
"""Validates an OpenAPI 3.1 document with openapi-spec-validator, an implementation
independent of gatos (tests/e2e/openapi.rs runs it on what `gatosd generate openapi`
prints). Usage: validate_openapi.py FILE (or - for stdin). Prints every error and exits 1
when the document is not valid OpenAPI 3.1; prints "ok: N paths" and exits 0 when it is."""

import json
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator
from jsonschema_path import SchemaPath


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: validate_openapi.py FILE|-", file=sys.stderr)
        return 2
    src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    with src:
        spec = json.load(src)
    version = spec.get("openapi", "")
    if not str(version).startswith("3.1."):
        print(f"not an OpenAPI 3.1 document: openapi = {version!r}", file=sys.stderr)
        return 1
    errors = list(OpenAPIV31SpecValidator(SchemaPath.from_dict(spec)).iter_errors())
    for e in errors:
        path = "/".join(str(p) for p in getattr(e, "path", []))
        print(f"invalid: {path}: {e.message}", file=sys.stderr)
    if errors:
        return 1
    print(f"ok: {len(spec.get('paths', {}))} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
