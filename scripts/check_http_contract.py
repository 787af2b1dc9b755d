#!/usr/bin/env python3
"""Checks a live gatosd HTTP face against its OpenAPI document, with code independent of
gatos (urllib, jsonschema, openapi-spec-validator). Run by tests/e2e/openapi.rs.

Usage: check_http_contract.py BASE TOKEN DOC
  BASE  http://127.0.0.1:PORT of a gatosd --http on a fresh repository
  TOKEN a bearer token of its token file
  DOC   the committed document (docs/openapi.json)

Checks: the served /api/v1/openapi.json is DOC byte for byte and valid OpenAPI 3.1; every
GET route that needs no parameter answers a documented status, and its JSON answers fit the
documented schema; a publish, an enqueue and the job it made fit theirs (201, Location, 200
for a duplicate); refusals (no token, unknown job, a bad or unknown query parameter, a body
that is not JSON, a method the route does not take, no such route) are problem+json bodies
that fit the Problem schema, whose status is the HTTP status and whose type names the code.
Prints one line per check; exits 1 at the first failure."""

import json
import sys
import urllib.error
import urllib.request

from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from jsonschema_path import SchemaPath

BASE, TOKEN, DOC_PATH = sys.argv[1:4]


def call(method, path, token=TOKEN, body=None, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(BASE + path, method=method, data=data)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def fits(doc, schema, value, what):
    root = dict(schema)
    root["components"] = doc["components"]
    errors = sorted(Draft202012Validator(root).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        fail(f"{what}: {'/'.join(map(str, e.path))}: {e.message}\n{json.dumps(value)[:2000]}")


def check_answer(doc, method, template, status, headers, raw, what):
    op = doc["paths"][template][method.lower()]
    answers = op["responses"]
    answer = answers.get(str(status)) or answers.get("default")
    if answer is None:
        fail(f"{what}: status {status} is not documented ({sorted(answers)})")
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    content = answer.get("content")
    if not content:
        if raw:
            fail(f"{what}: {status} documents no body, got {raw[:200]!r}")
        return None
    ctype = headers.get("Content-Type", "").split(";")[0].strip()
    if ctype not in content:
        fail(f"{what}: {status} content type {ctype!r} not in {sorted(content)}")
    if not ctype.endswith("json"):
        # Text answers (/metrics): documented type and status; the body is checked by the
        # test that owns it (tests/e2e/http_metrics.rs, with the Prometheus parser).
        print(f"ok: {what} -> {status}, {ctype} as documented")
        return None
    value = json.loads(raw)
    fits(doc, content[ctype]["schema"], value, f"{what} ({status})")
    print(f"ok: {what} -> {status}, fits its schema")
    return value


def check_problem(doc, status, headers, raw, want_status, what):
    if status != want_status:
        fail(f"{what}: status {status}, wanted {want_status}: {raw[:300]!r}")
    ctype = headers.get("Content-Type", "")
    if not ctype.startswith("application/problem+json"):
        fail(f"{what}: content type {ctype!r}")
    p = json.loads(raw)
    fits(doc, {"$ref": "#/components/schemas/Problem"}, p, what)
    if p["status"] != status:
        fail(f"{what}: problem status {p['status']} != HTTP {status}")
    if p["type"] != "urn:gatos:error:" + p["code"]:
        fail(f"{what}: type {p['type']!r} does not name code {p['code']!r}")
    print(f"ok: {what} -> {status} {p['code']}: a problem that fits the Problem schema")
    return p


def main():
    committed = open(DOC_PATH, "rb").read()
    status, headers, served = call("GET", "/api/v1/openapi.json")
    if status != 200 or served != committed:
        fail(f"the served document ({status}, {len(served)} bytes) is not {DOC_PATH}")
    doc = json.loads(served)
    errors = list(OpenAPIV31SpecValidator(SchemaPath.from_dict(doc)).iter_errors())
    if errors:
        fail(f"the served document is not valid OpenAPI 3.1: {errors[0].message}")
    print(f"ok: the served document is {DOC_PATH} and valid OpenAPI 3.1")

    # Every GET that needs no parameter, as documented.
    for template, item in sorted(doc["paths"].items()):
        op = item.get("get")
        if op is None or "{" in template:
            continue
        params = [p for p in op.get("parameters", []) if "$ref" not in p]
        if any(p.get("required") for p in params):
            continue
        if "text/event-stream" in json.dumps(op["responses"]):
            continue
        token = None if op.get("security") == [] else TOKEN
        status, headers, raw = call("GET", template, token=token)
        check_answer(doc, "GET", template, status, headers, raw, f"GET {template}")

    # Writes and the job they make.
    topic = "/api/v1/topics/{topic}/messages"
    status, headers, raw = call("POST", "/api/v1/topics/contract/messages",
                                body={"payload": {"n": 1}, "headers": {"msg_id": "m1"}})
    row = check_answer(doc, "POST", topic, status, headers, raw, "POST messages")
    if status != 201 or row["duplicate"]:
        fail(f"a new message is 201, not duplicate: {status} {row}")
    status, headers, raw = call("POST", "/api/v1/topics/contract/messages",
                                body={"payload": {"n": 1}, "headers": {"msg_id": "m1"}})
    row = check_answer(doc, "POST", topic, status, headers, raw, "POST messages again")
    if status != 200 or not row["duplicate"]:
        fail(f"a duplicate is 200 with duplicate true: {status} {row}")
    status, headers, raw = call("GET", "/api/v1/topics/contract/messages?limit=10")
    check_answer(doc, "GET", topic, status, headers, raw, "GET messages")
    status, headers, raw = call("POST", "/api/v1/jobs", body={"command": ["true"]})
    job = check_answer(doc, "POST", "/api/v1/jobs", status, headers, raw, "POST jobs")
    location = headers.get("Location")
    if status != 201 or location != "/api/v1/jobs/" + job["id"]:
        fail(f"an enqueue is 201 with the job's Location: {status} {location}")
    status, headers, raw = call("GET", location)
    check_answer(doc, "GET", "/api/v1/jobs/{id}", status, headers, raw, "GET the job")

    # Refusals are problems.
    missing = "/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV"
    for (method, path, token, body, ctype, want, what) in [
        ("GET", "/api/v1/topics", None, None, None, 401, "no token"),
        ("GET", missing, TOKEN, None, None, 404, "an unknown job"),
        ("GET", "/api/v1/jobs?limit=many", TOKEN, None, None, 400, "a limit that is not a number"),
        ("GET", "/api/v1/jobs?no_such=1", TOKEN, None, None, 400, "an unknown query parameter"),
        ("POST", "/api/v1/jobs", TOKEN, b"command=true", "text/plain", 415, "a body that is not JSON"),
        ("POST", "/api/v1/jobs", TOKEN, b"{\"command\": [", "application/json", 400, "broken JSON"),
        ("DELETE", "/api/v1/jobs", TOKEN, None, None, 405, "a method the route does not take"),
        ("GET", "/api/v1/no/such/route", TOKEN, None, None, 404, "no such route"),
    ]:
        status, headers, raw = call(method, path, token=token, body=body,
                                    content_type=ctype or "application/json")
        check_problem(doc, status, headers, raw, want, f"{method} {path} ({what})")
    print("all contract checks passed")


if __name__ == "__main__":
    main()
