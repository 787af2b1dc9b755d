#!/usr/bin/env python3
"""Recomputes the Explorer-Root of a gatos SQLite export without gatos (docs/exporter.md).

Reads the exported tables and the manifest with Python's sqlite3 module, recomputes every
row digest, table digest, the ref-state digest and the Explorer-Root, prints them, and
exits 1 when one differs from the manifest. Reads exports of the three exporter versions:
they differ in the root's last field, in when the filter spec holds `as_of` (1 against 2
and 3, ADR 0024), and in the `results.reason` column that 3 adds (ADR 0029; an older
export's spec does not list it, so it is never read there).
Needs `pip install blake3`.

    python3 scripts/explorer_root.py EXPORT.sqlite
"""
import json, re, sqlite3, sys
import blake3

KINDS = {  # every column's logical type
    "attempts": {"job": "text", "attempt": "integer", "worker": "text", "worker_key": "text",
                 "claimed_at": "time", "lease_until": "time", "outcome": "text"},
    "checkpoints": {"group": "text", "topic": "text", "seq": "integer", "ulid": "text"},
    "jobs": {"id": "text", "queue": "text", "state": "text", "attempt": "integer",
             "priority": "integer", "created_at": "time", "content_id": "text", "manifest": "json"},
    "messages": {"topic": "text", "seq": "integer", "ulid": "text", "content_id": "text",
                 "commit": "text", "published_at": "time", "payload": "json"},
    "results": {"job": "text", "attempt": "integer", "status": "text", "exit_code": "integer",
                "started_at": "time", "finished_at": "time", "stdout_digest": "text",
                "stderr_digest": "text", "proof_verified": "boolean", "reason": "json"},
}
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
V1, V2, V3 = "gatos-export/1", "gatos-export/2", "gatos-export/3"  # the root's last field


def jcs(v):  # RFC 8785, for what filter specs and rows hold (no floats)
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(jcs(k) + ":" + jcs(v[k]) for k in keys) + "}"
    if isinstance(v, list):
        return "[" + ",".join(jcs(x) for x in v) + "]"
    return json.dumps(v, ensure_ascii=False)  # strings, integers, true, false, null


def cell(table, column, v):  # the canonical JSON value of a stored cell
    kind = KINDS[table][column]
    ok = {"integer": int, "boolean": int}.get(kind, str)
    if v is not None and (not isinstance(v, ok) or (kind == "boolean" and v not in (0, 1))
                          or (kind == "time" and not TIME.fullmatch(v))):
        sys.exit(f"mismatch: table {table}: column {column} holds {v!r}, not a canonical {kind}")
    return v == 1 if v is not None and kind == "boolean" else v


def field(h, b):  # BE32(len) || bytes
    h.update(len(b).to_bytes(4, "big"))
    h.update(b)


def check(what, mine, theirs):
    if mine != theirs:
        sys.exit(f"mismatch: {what}: recomputed {mine}, the manifest says {theirs}")


db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
m = json.loads(db.execute("SELECT json FROM _gatos_manifest").fetchone()[0])
version = m["exporter"]
if version not in (V1, V2, V3):
    sys.exit(f"mismatch: exporter {version!r} is none of {V1}, {V2}, {V3}")
spec = m["filter"]
# as_of: in V1 exactly with a job table; in V2 and V3 only while an exported job has
# neither a result nor a cancel, so never without a job table and never next to a finished
# one alone.
job_tables = any(t in spec["tables"] for t in ("attempts", "jobs", "results"))
if ("as_of" in spec and not job_tables) or (version == V1 and job_tables and "as_of" not in spec):
    sys.exit("mismatch: manifest: the filter spec's as_of is missing or extra")
refs = db.execute("SELECT name, oid FROM _gatos_refs ORDER BY name").fetchall()
ref_state = blake3.blake3()
for name, oid in sorted(refs, key=lambda r: r[0].encode()):
    ref_state.update(name.encode() + bytes.fromhex(oid))
check("ref_state", "blake3:" + ref_state.hexdigest(), m["ref_state"])
root = blake3.blake3()
field(root, ref_state.digest())
field(root, jcs(spec).encode())
for t in sorted(spec["tables"], key=str.encode):
    cols = spec["tables"][t]["columns"]
    sql = "SELECT %s FROM \"%s\"" % (", ".join('"%s"' % c for c in cols), t)
    rows = []
    for r in db.execute(sql):
        row = {c: cell(t, c, v) for c, v in zip(cols, r)}
        if version != V1 and "as_of" not in spec and row.get("state") in ("pending", "running"):
            sys.exit(f"mismatch: manifest: the filter spec's as_of is missing (a job is {row['state']})")
        rows.append(blake3.blake3(jcs(row).encode()).digest())
    rows.sort()
    digest = blake3.blake3(b"".join(rows)).digest()
    unit = "row" if len(rows) == 1 else "rows"
    print(f"{t:<12} {len(rows):>9} {unit:<4}  blake3:{digest.hex()}")
    check(f"table {t}", (len(rows), "blake3:" + digest.hex()),
          (m["tables"][t]["rows"], m["tables"][t]["digest"]))
    field(root, t.encode())
    field(root, str(len(rows)).encode())
    field(root, digest)
field(root, version.encode())
print("ref-state     blake3:" + ref_state.hexdigest())
print("explorer-root blake3:" + root.hexdigest())
check("explorer_root", "blake3:" + root.hexdigest(), m["explorer_root"])
