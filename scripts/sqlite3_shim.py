#!/usr/bin/env python3
"""The two forms of the `sqlite3` shell the tests use, on Python's own sqlite3 module.

scripts/test.sh puts this on PATH as `sqlite3` when the shell is missing but Python has
its sqlite3 module (Debian's python3 does): `sqlite3 [-json] DB SQL`. With -json the rows
are printed as one JSON array of objects (nothing for no rows), as the shell does; without
it, rows are printed as `a|b|c` lines. Anything else is refused, naming what is supported.
"""
import json
import sqlite3
import sys


def main(argv):
    as_json = False
    if argv and argv[0] == "-json":
        as_json = True
        argv = argv[1:]
    if len(argv) != 2 or argv[0].startswith("-"):
        print("sqlite3 (gatos test shim): only `sqlite3 [-json] DB SQL` is supported; "
              "install the real shell for more (Debian: apt-get install sqlite3)",
              file=sys.stderr)
        return 2
    db, sql = argv
    names, rows = [], []
    try:
        con = sqlite3.connect(db)
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description or []]
            rows = cur.fetchall()
        except sqlite3.ProgrammingError:
            # More than one statement: run them all, as the shell does (no rows shown).
            con.executescript(sql)
        con.commit()
    except sqlite3.Error as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1

    def cell(v):
        return v.hex() if isinstance(v, bytes) else v

    if as_json:
        if rows:
            print(json.dumps([{n: cell(v) for n, v in zip(names, r)} for r in rows]))
    else:
        for r in rows:
            print("|".join("" if v is None else str(cell(v)) for v in r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
