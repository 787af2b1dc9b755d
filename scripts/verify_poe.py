#!/usr/bin/env python3
"""Verify a gatos proof of execution without gatos: DSSE + ed25519 + in-toto digests.

Usage: verify_poe.py [--repo DIR] --key ed25519:HEX COMMIT-OR-REF

Reads poe.json from the commit (a job's result, or a released claim), checks the DSSE
signature over the pre-authentication encoding with the given public key, then that every
subject's sha256 and git blob id match the files of the commit, and that every file under
logs/ and outputs/ is covered. Needs only git and Python's `cryptography` package.
"""

import argparse
import base64
import hashlib
import json
import subprocess
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://gatos.dev/attestations/proof-of-execution/v1"


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True).stdout


def pae(payload_type, body):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--key", required=True, help="the trusted key: ed25519:<64 hex>")
    ap.add_argument("commit")
    a = ap.parse_args()
    if not a.key.startswith("ed25519:") or len(a.key) != 8 + 64:
        fail(f"--key must be ed25519:<64 hex>, not {a.key!r}")
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(a.key[8:]))

    envelope = json.loads(git(a.repo, "cat-file", "blob", f"{a.commit}:poe.json"))
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        fail(f"payloadType is {envelope.get('payloadType')!r}")
    body = base64.b64decode(envelope["payload"], validate=True)
    signed = [s for s in envelope.get("signatures", []) if s.get("keyid") == a.key]
    if not signed:
        fail(f"no signature by {a.key}")
    try:
        public.verify(base64.b64decode(signed[0]["sig"]), pae(PAYLOAD_TYPE, body))
    except InvalidSignature:
        fail("the signature does not verify")

    statement = json.loads(body)
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        fail("not a gatos proof-of-execution statement")
    covered = set()
    for subject in statement["subject"]:
        name = subject["name"]
        data = git(a.repo, "cat-file", "blob", f"{a.commit}:{name}")
        sha256 = hashlib.sha256(data).hexdigest()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        if subject["digest"].get("sha256") != sha256 or subject["digest"].get("gitBlob") != blob:
            fail(f"{name} does not match its digest in the proof")
        covered.add(name)
    files = git(a.repo, "ls-tree", "-r", "--name-only", a.commit).decode().split("\n")
    for f in files:
        if (f.startswith("logs/") or f.startswith("outputs/")) and f not in covered:
            fail(f"{f} is not covered by the proof")

    p = statement["predicate"]
    print(f"OK job {p['job']} attempt {p['attempt']} status {p['status']} "
          f"exit_code {p['exit_code']} signed by {a.key}")


if __name__ == "__main__":
    main()
