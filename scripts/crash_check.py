#!/usr/bin/env python3
"""Crash tests in the style of ALICE (issue #21 point 2): record what a real gatos process
does to the file system, then rebuild and check every state a crash could leave.

For a scenario (a list of git-gatos commands), it:
1. runs the commands under strace on a repository (the *recording*), noting each system
   call that changes a file or a name (write, pwrite, ftruncate, rename, mkdir, unlink, ...),
   each sync (fsync, fdatasync, syncfs), and each acknowledgement: a line the command wrote
   on its standard output (a publish or an enqueue is acknowledged when it says so);
2. **process crash** (`kill -9`): every prefix of the recorded calls is a state a killed
   process can leave (the page cache keeps every call that returned). Each prefix is
   replayed into a copy of the repository as it was before the recording;
3. **power cut** (with `gatos.fsync = true`): at each acknowledgement, builds the state
   that holds only what the syncs before it forced to disk. This is POSIX's minimum: file
   data only after an fsync of the file, names only after an fsync of their directory,
   everything after a syncfs. Data that was never forced reads back as an empty file;
4. **real kills**: runs the scenario again and again with strace injecting SIGKILL at the
   k-th changing call, for every k.

Every state must pass `git fsck --strict`, must be readable by gatos after `git gatos doctor
--fix`, and must hold every write acknowledged before the crash point.

Usage: crash_check.py GIT_GATOS SCENARIO [--fsync METHOD] [--work DIR]
Scenarios: publish, batch, batch-packed (two chunks of 600, each written as one pack on a
thread of its own while its commits are made), enqueue, consume (a checkpoint), worker (claim, heartbeat,
result, events), daemon (gatosd answering publishes on its socket, one at a time and four
at once, acknowledged from the topic's journal; its acknowledgement is its answer, and it is
killed for real at every append to and truncation of the journal and every rename of the
topic head), daemon-enqueue (gatosd answering enqueues the same way, acknowledged from
the enqueue journal; killed for real at every append to and truncation of that journal and
at every rename), daemon-jobs (gatosd answering claims, heartbeats and ends of attempts from
four connections at once, so they meet in its group commits; an acknowledgement is its
answer; killed for real at every rename and unlink) and daemon-jobs-packed (the same with
`gatos.group.packObjects = 1`: every group's objects written as one pack). Exit status 0
when every state passed; otherwise
the first failure is printed with the calls that led to it.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

TRACED = ("openat,open,creat,write,pwrite64,writev,sendto,sendmsg,rename,renameat,renameat2,mkdir,mkdirat,"
          "unlink,unlinkat,rmdir,ftruncate,truncate,fsync,fdatasync,syncfs,sync,close,lseek,"
          "dup,dup2,dup3,fcntl,link,linkat,clone,clone3,fork,vfork")
# The calls that change the file system: a crash point follows each of them.
CHANGING = {"write", "pwrite64", "writev", "rename", "renameat", "renameat2", "mkdir", "mkdirat",
            "unlink", "unlinkat", "rmdir", "ftruncate", "truncate", "link", "linkat", "creat"}
LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+)(?:\s.*)?$")


def env(repo, home):
    e = dict(os.environ)
    e.update({"GIT_DIR": repo, "HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
              "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C", "GATOS_LOG": "error"})
    return e


def split_args(s):
    """Splits strace's argument text at top-level commas."""
    out, cur, depth, quoted, i = [], [], 0, False, 0
    while i < len(s):
        c = s[i]
        if quoted:
            cur.append(c)
            if c == "\\":
                cur.append(s[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            cur.append(c)
        elif c in "[{(":
            depth += 1
            cur.append(c)
        elif c in "]})":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        out.append("".join(cur).strip())
    return out


def unquote(a):
    """The bytes of a -xx quoted string ("\\x2f\\x74..."), with a possible trailing "..."."""
    if a.endswith("..."):
        raise ValueError("a string was cut short; raise strace -s")
    body = a[1:-1]
    return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", body))


def parse(trace):
    """The calls of a strace -f -xx log, in order, as (pid, name, args, result) tuples.

    A call is placed where it returned, except a `close` that another thread's calls
    interrupted: it is placed where it was entered. The kernel frees the descriptor early in
    `close`, so another thread's `openat` can be handed the same number and return before
    the `close` does; in return order the model would then close the new file and lose the
    writes that follow (seen with gatosd's threads sharing one descriptor table)."""
    calls, pending = [], {}
    for raw in trace.splitlines():
        if "<unfinished ...>" in raw:
            pid = raw.split()[0]
            head = raw[: raw.index("<unfinished ...>")].rstrip()
            slot = None
            if re.match(r"^\d+\s+close\(", head):
                slot = len(calls)
                calls.append(None)
            pending[pid] = (head, slot)
            continue
        slot = None
        m = re.match(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$", raw)
        if m:
            head, slot = pending.pop(m.group(1), ("", None))
            raw = head + m.group(3)
        m = LINE.match(raw)
        if not m:
            continue
        pid, name, args, ret = m.groups()
        call = (int(pid), name, split_args(args), int(ret, 0))
        if slot is None:
            calls.append(call)
        else:
            calls[slot] = call
    # A close that never returned (its process was killed) is left out.
    return [c for c in calls if c is not None]


class Model:
    """The file system as the recorded process changed it, by file identity, with what a
    power cut keeps: names per directory and data per file, each forced by its own sync."""

    def __init__(self, root):
        self.root = root          # the recorded repository's path
        self.names = {}           # path -> file id (volatile)
        self.data = {}            # file id -> bytes (volatile)
        self.dirs = set()         # directories (volatile)
        self.dnames = None        # durable names: path -> id (None: not tracked)
        self.ddata = {}           # durable data
        self.ddirs = set()
        self.fds = {}             # (table, fd) -> [path or None, id or None, offset, append]
        self.table = {}           # thread id -> the thread whose descriptor table it shares
        self.next_id = 0

    def threads(self, calls):
        """Learns which threads share a descriptor table (strace -f names threads by their
        own ids; a file one thread opened is written by another, as a daemon's journal is).
        Done before replaying, because a new thread's first calls can be logged before its
        creator's `clone` returns."""
        changed = True
        while changed:
            changed = False
            for pid, name, a, ret in calls:
                if name in ("clone", "clone3") and ret > 0 and "CLONE_FILES" in ",".join(a):
                    t = self.table.get(pid, pid)
                    if self.table.get(ret) != t:
                        self.table[ret] = t
                        changed = True

    def load(self, base):
        """Starts from the repository as it was before the recording (all durable)."""
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            path = self.root if rel == "." else os.path.join(self.root, rel)
            self.dirs.add(path)
            for f in filenames:
                p = os.path.join(path, f)
                with open(os.path.join(dirpath, f), "rb") as fh:
                    self.new_file(p, fh.read())
        self.dnames = dict(self.names)
        self.ddata = dict(self.data)
        self.ddirs = set(self.dirs)

    def new_file(self, path, content=b""):
        self.next_id += 1
        self.names[path] = self.next_id
        self.data[self.next_id] = content
        return self.next_id

    def inside(self, p):
        return p == self.root or p.startswith(self.root + "/")

    def resolve(self, pid, dirfd, p):
        if p.startswith("/"):
            return os.path.normpath(p)
        if dirfd == "AT_FDCWD":
            return None  # relative to the cwd: not ours (gatos uses absolute paths)
        entry = self.fds.get((pid, int(dirfd)))
        return os.path.normpath(os.path.join(entry[0], p)) if entry and entry[0] else None

    def rename(self, a, b):
        if a is None or b is None or not (self.inside(a) and self.inside(b)):
            return
        if a in self.names:
            self.names[b] = self.names.pop(a)
        elif a in self.dirs:
            for p in [p for p in self.names if p.startswith(a + "/")]:
                self.names[b + p[len(a):]] = self.names.pop(p)
            for d in [d for d in self.dirs if d == a or d.startswith(a + "/")]:
                self.dirs.discard(d)
                self.dirs.add(b + d[len(a):])

    def sync_all(self):
        self.dnames = dict(self.names)
        self.ddata = dict(self.data)
        self.ddirs = set(self.dirs)

    def sync_fd(self, entry, data_only):
        path, fid = entry[0], entry[1]
        if fid is not None:
            self.ddata[fid] = self.data.get(fid, b"")
            return
        if path in self.dirs and not data_only:
            # A directory's fsync makes its entries durable: names, new or gone.
            for p in [p for p in self.dnames if os.path.dirname(p) == path]:
                if p not in self.names:
                    del self.dnames[p]
            for p, i in self.names.items():
                if os.path.dirname(p) == path:
                    self.dnames[p] = i
            for d in [d for d in self.ddirs if os.path.dirname(d) == path and d not in self.dirs]:
                self.ddirs.discard(d)
            for d in self.dirs:
                if os.path.dirname(d) == path:
                    self.ddirs.add(d)

    def apply(self, call):
        """Applies one call; returns True when it changed the file system."""
        pid, name, a, ret = call
        if ret < 0:
            return False
        pid = self.table.get(pid, pid)
        if name in ("clone", "clone3", "fork", "vfork"):
            if ret > 0 and ret not in self.table:
                # A new process starts with a copy of its creator's descriptors.
                for (t, fd), e in list(self.fds.items()):
                    if t == pid:
                        self.fds[(ret, fd)] = list(e)
            return False
        if name in ("openat", "open", "creat"):
            dirfd, p, flags = ("AT_FDCWD", a[0], "O_WRONLY|O_CREAT|O_TRUNC") if name == "creat" else \
                ("AT_FDCWD", a[0], a[1]) if name == "open" else (a[0], a[1], a[2])
            path = self.resolve(pid, dirfd, unquote(p).decode("utf-8", "replace"))
            if path is None or not self.inside(path):
                self.fds[(pid, ret)] = [None, None, 0, False]
                return False
            changed = False
            if path in self.dirs:
                self.fds[(pid, ret)] = [path, None, 0, False]
                return False
            fid = self.names.get(path)
            if fid is None and "O_CREAT" in flags:
                fid = self.new_file(path)
                changed = True
            if fid is not None and "O_TRUNC" in flags and self.data.get(fid):
                self.data[fid] = b""
                changed = True
            self.fds[(pid, ret)] = [path, fid, 0, "O_APPEND" in flags]
            return changed
        if name in ("dup", "dup2", "dup3") or (name == "fcntl" and "F_DUPFD" in a[1]):
            src = self.fds.get((pid, int(a[0])))
            if src:
                self.fds[(pid, ret)] = list(src)
            return False
        if name == "close":
            self.fds.pop((pid, int(a[0])), None)
            return False
        if name == "lseek":
            e = self.fds.get((pid, int(a[0])))
            if e:
                e[2] = ret
            return False
        if name in ("write", "pwrite64", "writev"):
            e = self.fds.get((pid, int(a[0])))
            if not e or e[1] is None:
                return False
            if name == "writev":
                buf = b"".join(unquote(x) for x in re.findall(r'"(?:[^"\\]|\\.)*"', a[1]))[:ret]
            else:
                buf = unquote(a[1])[:ret]
            fid = e[1]
            cur = self.data.get(fid, b"")
            off = int(a[3]) if name == "pwrite64" else (len(cur) if e[3] else e[2])
            if len(cur) < off:
                cur = cur + b"\0" * (off - len(cur))
            self.data[fid] = cur[:off] + buf + cur[off + len(buf):]
            if name != "pwrite64":
                e[2] = off + len(buf)
            return True
        if name == "ftruncate":
            e = self.fds.get((pid, int(a[0])))
            if not e or e[1] is None:
                return False
            n, cur = int(a[1]), self.data.get(e[1], b"")
            self.data[e[1]] = cur[:n] + b"\0" * max(0, n - len(cur))
            return True
        if name in ("rename", "renameat", "renameat2"):
            if name == "rename":
                src = self.resolve(pid, "AT_FDCWD", unquote(a[0]).decode())
                dst = self.resolve(pid, "AT_FDCWD", unquote(a[1]).decode())
            else:
                src = self.resolve(pid, a[0], unquote(a[1]).decode())
                dst = self.resolve(pid, a[2], unquote(a[3]).decode())
            if src and self.inside(src):
                self.rename(src, dst)
                return True
            return False
        if name in ("mkdir", "mkdirat"):
            p = self.resolve(pid, "AT_FDCWD", unquote(a[0]).decode()) if name == "mkdir" else \
                self.resolve(pid, a[0], unquote(a[1]).decode())
            if p and self.inside(p):
                self.dirs.add(p)
                return True
            return False
        if name in ("unlink", "unlinkat", "rmdir"):
            p = self.resolve(pid, "AT_FDCWD", unquote(a[0]).decode()) if name != "unlinkat" else \
                self.resolve(pid, a[0], unquote(a[1]).decode())
            if p and self.inside(p):
                self.names.pop(p, None)
                self.dirs.discard(p)
                return True
            return False
        if name in ("fsync", "fdatasync"):
            e = self.fds.get((pid, int(a[0])))
            if e and e[0]:
                self.sync_fd(e, name == "fdatasync")
            return False
        if name in ("syncfs", "sync"):
            self.sync_all()
            return False
        if name in ("link", "linkat"):
            src = self.resolve(pid, "AT_FDCWD", unquote(a[0]).decode()) if name == "link" else \
                self.resolve(pid, a[0], unquote(a[1]).decode())
            dst = self.resolve(pid, "AT_FDCWD", unquote(a[1]).decode()) if name == "link" else \
                self.resolve(pid, a[2], unquote(a[3]).decode())
            if src in self.names and dst and self.inside(dst):
                self.names[dst] = self.names[src]
                return True
            return False
        if name == "truncate":
            raise ValueError(f"{name} is not modelled; extend crash_check.py")
        return False

    def write_out(self, dest, durable):
        """Writes the volatile (process crash) or the durable (power cut) state to dest."""
        names = self.dnames if durable else self.names
        data = self.ddata if durable else self.data
        dirs = self.ddirs if durable else self.dirs
        os.makedirs(dest)
        for d in sorted(dirs, key=len):
            if d != self.root:
                os.makedirs(dest + d[len(self.root):], exist_ok=True)
        for p, fid in names.items():
            target = dest + p[len(self.root):]
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                continue  # its directory's name was never made durable: lost with it
            with open(target, "wb") as fh:
                fh.write(data.get(fid, b""))


def run(cmd, repo, home, check=True):
    r = subprocess.run(cmd, env=env(repo, home), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def scenario(name, gg, work):
    """(setup commands, recorded commands, check(repo, acked lines)) of a scenario."""
    batch = os.path.join(work, "batch.jsonl")
    with open(batch, "w") as f:
        for i in range(3):
            f.write(json.dumps({"n": i}) + "\n")
    # Two chunks of packed messages, each pack written on its own thread while the chunk's
    # commits are made (its trees and envelopes pass 64 KiB).
    packed = os.path.join(work, "packed.jsonl")
    with open(packed, "w") as f:
        for i in range(1200):
            f.write(json.dumps({"n": i, "pad": "x" * 120}) + "\n")

    def published(repo, home, acks):
        r = run([gg, "messages", "read", "t", "--json"], repo, home, check=False)
        if r.returncode != 0:
            # Before the first acknowledgement the topic may not exist yet.
            if not acks and "error[NotFound]" in r.stderr:
                return None
            return f"messages read t: exit {r.returncode}: {r.stderr.strip()}"
        out = r.stdout
        have = {json.loads(l)["ulid"] for l in out.splitlines() if l.strip()}
        for a in acks:
            for ulid in re.findall(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", a):
                if ulid not in have:
                    return f"acknowledged message {ulid} is missing"
        return None

    def enqueued(repo, home, acks):
        for a in acks:
            for ulid in re.findall(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", a):
                r = run([gg, "jobs", "show", ulid], repo, home, check=False)
                if r.returncode != 0:
                    return f"acknowledged job {ulid} is missing: {r.stderr.strip()}"
        return None

    if name == "publish":
        cmds = [[gg, "messages", "publish", "t", "--data", json.dumps({"n": i})] for i in range(3)]
        return [[gg, "messages", "publish", "t", "--data", "{\"n\":-1}"]], cmds, published
    if name == "batch":
        return [], [[gg, "messages", "publish", "t", "--batch", batch]], published
    if name == "batch-packed":
        return [], [[gg, "messages", "publish", "t", "--batch", packed, "--chunk", "600"]], published
    if name == "enqueue":
        return [], [[gg, "jobs", "enqueue", "--", "true"] for _ in range(2)], enqueued

    def worked(repo, home, acks):
        # No acknowledgement on standard output: the job enqueued before the recording must
        # be readable in every state (pending, running, or with its result), and verify
        # when it has one.
        r = run([gg, "jobs", "ls", "--json"], repo, home, check=False)
        if r.returncode != 0:
            return f"jobs ls: {r.stderr.strip()}"
        jobs = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        if len(jobs) != 1:
            return f"jobs ls shows {len(jobs)} jobs, not the 1 enqueued"
        if jobs[0].get("state") == "succeeded":
            v = run([gg, "jobs", "verify", jobs[0]["id"]], repo, home, check=False)
            if v.returncode != 0:
                return f"jobs verify of a finished job: {v.stdout.strip()} {v.stderr.strip()}"
        return None

    def consumed(repo, home, acks):
        # At-least-once: the checkpoint never passes a message that was not delivered (the
        # lines printed on standard output before the crash), and what it names is
        # readable (`messages consume` answers from it).
        delivered = len([l for a in acks for l in a.splitlines() if l.strip()])
        r = subprocess.run(["git", "--git-dir", repo, "cat-file", "-p",
                            "refs/gatos/consumers/g/t:checkpoint.json"],
                           capture_output=True, text=True, env=env(repo, home))
        seq = json.loads(r.stdout)["seq"] if r.returncode == 0 else 0
        if seq > delivered:
            return f"the checkpoint is at seq {seq} but only {delivered} messages were delivered"
        again = run([gg, "messages", "consume", "g", "t", "--limit", "1"], repo, home, check=False)
        if again.returncode != 0:
            return f"messages consume after the crash: {again.stderr.strip()}"
        return None

    def jobs_acked(repo, home, acks):
        # Every answer the daemon gave is a committed ref: an acknowledged claim's commit is
        # on its job's claim ref (or under what followed it), an acknowledged heartbeat
        # moved the claim ref past the claim, an acknowledged end is the result ref.
        def ref(job, name):
            r = subprocess.run(["git", "--git-dir", repo, "rev-parse", "--verify", "-q",
                                f"refs/gatos/jobs/{job}/{name}"],
                               capture_output=True, text=True, env=env(repo, home))
            return r.stdout.strip() if r.returncode == 0 else None

        def under(commit, head):
            return head is not None and subprocess.run(
                ["git", "--git-dir", repo, "merge-base", "--is-ancestor", commit, head],
                capture_output=True, env=env(repo, home)).returncode == 0

        answers = []
        for a in acks:
            for line in a.splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if isinstance(m, dict) and isinstance(m.get("id"), str) and m.get("result") is not None:
                    answers.append((m["id"].partition(":"), m["result"]))
        claims = {res["id"]: res["claim_commit"] for (kind, _, _), res in answers if kind == "claim"}
        for (kind, _, job), res in answers:
            if kind == "claim":
                job, c = res["id"], res["claim_commit"]
                if not under(c, ref(job, "claim")):
                    return f"acknowledged claim {c} of job {job} is not on its claim ref"
            elif kind == "hb":
                head = ref(job, "claim")
                if head == claims.get(job) or not under(claims.get(job, "HEAD"), head):
                    return f"acknowledged heartbeat of job {job} is not on its claim ref ({head})"
            elif kind == "end" and ref(job, "result") != res["commit"]:
                return f"acknowledged end of job {job} ({res['commit']}) is not its result ref"
        return None

    if name == "daemon":
        # Recorded by record_daemon: gatosd itself, publishes over its socket.
        return [], [], published
    if name == "daemon-enqueue":
        # Recorded by record_daemon with drive_enqueues: gatosd journals the enqueues and
        # acknowledges after one append (ADR 0046); `jobs show` materializes the journal.
        return [], [], enqueued
    if name in ("daemon-jobs", "daemon-jobs-packed"):
        # Recorded by record_daemon with drive_jobs: four jobs, one per connection.
        setup = [[gg, "jobs", "enqueue", "--max-attempts", "1", "--", "true"] for _ in range(4)]
        setup += [[gg, "keys", "trust", worker_key(k)[1]] for k in range(4)]
        # Grouping is off by default (ADR 0046): these scenarios turn it on.
        setup.insert(0, ["git", "config", "gatos.group.jobs", "true"])
        if name == "daemon-jobs-packed":
            setup.insert(0, ["git", "config", "gatos.group.packObjects", "1"])
        return setup, [], jobs_acked
    if name == "consume":
        return ([[gg, "messages", "publish", "t", "--data", json.dumps({"n": i})] for i in range(3)],
                [[gg, "messages", "consume", "g", "t"]], consumed)
    if name == "worker":
        return ([[gg, "jobs", "enqueue", "--", "true"]],
                [[gg, "worker", "--drain", "--quiet", "--id", "w0"]], worked)
    raise SystemExit(f"unknown scenario {name} (publish, batch, batch-packed, enqueue, consume, "
                     "worker, daemon, "
                     "daemon-enqueue, daemon-jobs, daemon-jobs-packed)")


def record_daemon(gatosd, rec, home, work, inject=None, drive=None):
    """Runs gatosd on `rec` under strace and publishes over its socket: 3 messages one at a
    time, then 4 at once from 4 connections (a group commit). Returns the trace's calls;
    an acknowledgement is the daemon's answer to a publish, written to its client.

    With `inject` = (call, path, k), strace kills gatosd with SIGKILL at the k-th `call`
    that touches `path` (any path when `path` is None) instead, and nothing is recorded:
    returns (the acknowledgements the clients received, whether gatosd was killed).

    With `drive`, `drive(connect, acks)` talks to gatosd instead of the publishes."""
    import socket
    import time
    sock = os.path.join(work, "d.sock")
    log = os.path.join(work, "trace.daemon")
    if inject:
        sc, path, k = inject
        trace = (["strace", "-f", "-q", "-o", log] + (["-P", path] if path else [])
                 + ["-e", "trace=" + sc, "-e", f"inject={sc}:signal=KILL:when={k}"])
    else:
        trace = ["strace", "-f", "-qq", "-xx", "-s", "16777216", "-o", log, "-e", "trace=" + TRACED]
    if os.path.exists(sock):
        os.unlink(sock)
    d = subprocess.Popen(trace + [gatosd, "--repo", rec, "--socket", sock],
                         env=env(rec, home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    acks = []
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            if inject and d.poll() is not None:
                break  # killed while it started: nothing was acknowledged
            if time.monotonic() > deadline or d.poll() is not None:
                raise SystemExit(f"gatosd did not start: {d.stderr.read().decode() if d.poll() is not None else 'timeout'}")
            time.sleep(0.05)

        def connect():
            with open(os.path.join(rec, "gatos", "gatosd", "token")) as f:
                token = f.read().strip()
            c = socket.socket(socket.AF_UNIX)
            c.settimeout(60)
            c.connect(sock)
            r = c.makefile("rb")
            c.sendall(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "gatos.auth",
                                  "params": {"token": token}}).encode() + b"\n")
            line = r.readline()
            if b'"authenticated":true' not in line:
                if inject and not line:
                    # gatosd was killed before it answered: nothing more is acknowledged.
                    raise ConnectionError("gatosd closed the connection before gatos.auth")
                raise SystemExit(f"gatos.auth failed: {line[:200]!r}")
            return c, r

        def publish(c, i):
            c.sendall(json.dumps({"jsonrpc": "2.0", "id": i, "method": "messages.publish",
                                  "params": {"topic": "t", "payload": {"n": i}}}).encode() + b"\n")

        def answer(r):
            line = r.readline()
            if b'"result"' not in line:
                raise ConnectionError(f"no result: {line[:200]!r}")
            acks.append(line.decode("utf-8", "replace"))

        def publishes(connect, acks):
            c, r = connect()
            for i in range(1, 4):
                publish(c, i)
                answer(r)
            many = [connect() for _ in range(4)]
            for k2, (c2, _) in enumerate(many):
                publish(c2, 10 + k2)
            for _, r2 in many:
                try:
                    answer(r2)
                except (ConnectionError, OSError):
                    if not inject:
                        raise
            for c2, r2 in many + [(c, r)]:
                r2.close()
                c2.close()

        try:
            (drive or publishes)(connect, acks)
        except (ConnectionError, OSError, ValueError) as e:
            if not inject:
                raise SystemExit(f"a request to gatosd failed: {e}")
    finally:
        # SIGTERM to gatosd itself (strace's child), which drains and exits; strace follows.
        kids = []
        if d.poll() is None:
            for t in os.listdir(f"/proc/{d.pid}/task"):
                try:
                    with open(f"/proc/{d.pid}/task/{t}/children") as f:
                        kids += [int(k) for k in f.read().split()]
                except FileNotFoundError:
                    pass
        for k in kids:
            try:
                os.kill(k, 15)
            except ProcessLookupError:
                pass
        d.wait(timeout=60)
    if inject:
        with open(log) as f:
            killed = "killed by SIGKILL" in f.read()
        return acks, killed
    with open(log) as f:
        return parse(f.read())


def worker_key(k):
    """(private key, key id) of worker k's ed25519 key (a fixed seed)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.from_private_bytes(bytes([k + 1]) * 32)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, "ed25519:" + raw.hex()


def noop_proof(claim, worker, k):
    """The proof of a no-op run (empty output, exit code 0) of the attempt `claim` (a
    `jobs.claim` answer), signed with worker k's key: a DSSE envelope over an in-toto
    statement, as gatos::proofs::sign writes it."""
    import base64
    import hashlib
    import time
    key, keyid = worker_key(k)
    empty = {"sha256": hashlib.sha256(b"").hexdigest(),
             "gitBlob": hashlib.sha1(b"blob 0\0").hexdigest()}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stream = {"sha256": empty["sha256"], "bytes": 0, "truncated": False}
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": n, "digest": empty} for n in ("logs/stdout", "logs/stderr")],
        "predicateType": "https://gatos.dev/attestations/proof-of-execution/v1",
        "predicate": {"job": claim["id"], "job_content_id": claim["job_content_id"],
                      "attempt": claim["attempt"], "claim_commit": claim["claim_commit"],
                      "worker": worker, "worker_key": keyid, "started_at": now,
                      "finished_at": now, "exit_code": 0, "status": "succeeded",
                      "stdout": stream, "stderr": stream, "outputs": [],
                      "runner": {"name": "crash_check"}},
    }
    body = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    kind = b"application/vnd.in-toto+json"
    sig = key.sign(b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body))
    return {"payloadType": kind.decode(), "payload": base64.b64encode(body).decode(),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}]}


def each(items, f):
    """f(item) for every item, going on after one fails (gatosd killed mid-group), so that
    every answer that did arrive is counted; the results, then the first failure raised."""
    out, lost = [], None
    for item in items:
        try:
            out.append(f(item))
        except (ConnectionError, OSError, ValueError) as e:
            out.append(None)
            lost = lost or e
    if lost:
        raise lost
    return out


def drive_enqueues(connect, acks):
    """Three enqueues one at a time on one connection, then four at once from four
    connections. An acknowledgement is gatosd's answer, which names the job."""
    def send(c, rid):
        c.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "jobs.enqueue",
                              "params": {"command": ["true"]}}).encode() + b"\n")

    def answer(r):
        line = r.readline()
        if b'"result"' not in line:
            raise ConnectionError(f"no result: {line[:200]!r}")
        acks.append(line.decode("utf-8", "replace"))

    c, r = connect()
    for i in range(1, 4):
        send(c, i)
        answer(r)
    many = [connect() for _ in range(4)]
    sent = []
    try:
        each(list(enumerate(many)), lambda kc: (send(kc[1][0], 10 + kc[0]), sent.append(kc[1])))
    finally:
        # Only where the request went out: an answer to nothing would wait for the timeout.
        each(sent, lambda cr: answer(cr[1]))
    for c2, r2 in many + [(c, r)]:
        r2.close()
        c2.close()


def drive_jobs(connect, acks):
    """Four connections at once, one job each: every connection claims, then heartbeats its
    job, then completes it with a signed proof (its only attempt: the result and the
    `closed` claim in one transaction). Each step is sent on all four before any answer is
    read, so gatosd gets them together. Request ids name the step and the job, so an
    acknowledgement says what it acknowledges."""
    conns = [connect() for _ in range(4)]

    def send(c, rid, method, params):
        c.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                              "params": params}).encode() + b"\n")

    def answer(r):
        line = r.readline()
        m = json.loads(line)
        if "result" not in m:
            raise ConnectionError(f"no result: {line[:200]!r}")
        acks.append(line.decode("utf-8", "replace"))
        return m["result"]

    def step(sends):
        """Sends a request on each connection, then reads every answer that arrives (each
        step is a group at gatosd); raises the first failure after."""
        sent = []
        try:
            each(list(zip(conns, sends)), lambda cs: (send(cs[0][0], *cs[1]), sent.append(cs[0])))
        finally:
            # Only where the request went out: an answer to nothing would wait for the timeout.
            results = each(sent, lambda cr: answer(cr[1]))
        return results

    claims = step([(f"claim:{k}", "jobs.claim", {"worker": f"w{k}", "lease": "60s",
                                                 "worker_key": worker_key(k)[1]})
                   for k in range(len(conns))])
    leases, proofs = [], []
    for k, res in enumerate(claims):
        if res is None:
            raise SystemExit("a claim found no job")
        leases.append({"id": res["id"], "attempt": res["attempt"], "worker": f"w{k}",
                       "lease_token": res["lease_token"]})
        proofs.append(noop_proof(res, f"w{k}", k))
    step([(f"hb:{lease['id']}", "jobs.heartbeat", lease) for lease in leases])
    step([(f"end:{lease['id']}", "jobs.complete", dict(lease, exit_code=0, poe=poe))
          for lease, poe in zip(leases, proofs)])
    for c, r in conns:
        r.close()
        c.close()


def refs_first(part, rec, rename_only=False):
    """The calls with each ref update (its `.lock` file, written and renamed) moved before
    the command's first object: the order of a writer that names objects before they exist.
    With `rename_only`, only the rename moves: it finds no `.lock` yet, so the update is
    lost while the command still acknowledges. These are the controls of --break-order,
    which the check must catch."""
    def path(call, i):
        return unquote(call[2][i]).decode() if len(call[2]) > i and call[2][i].startswith('"') else ""
    first = next((i for i, c in enumerate(part)
                  if c[1] == "openat" and re.search(r"/objects/([0-9a-f]{2}/)?tmp_obj", path(c, 1))), None)
    if first is None:
        return part
    out, block, moved = list(part), [], []
    i = first
    while i < len(out):
        c = out[i]
        is_rename = c[1] in ("rename", "renameat", "renameat2")
        if rename_only and is_rename and path(c, 1 if c[1] != "rename" else 0).startswith(rec + "/refs/"):
            moved.append(c)
            del out[i]
            continue
        if not rename_only and c[1] == "openat" and path(c, 1).startswith(rec + "/refs/") \
                and path(c, 1).endswith(".lock"):
            j = i
            while j < len(out) and not (out[j][1] in ("rename", "renameat", "renameat2")
                                        and path(out[j], 1 if out[j][1] != "rename" else 0).endswith(".lock")):
                j += 1
            block = out[i:j + 1]
            del out[i:j + 1]
            moved.extend(block)
            continue
        i += 1
    return out[:first] + moved + out[first:]


def check_model(model, gg, dest, home, acks, verify, durable):
    """Writes the model's volatile or durable state to `dest`, checks it, removes it."""
    model.write_out(dest, durable=durable)
    try:
        return check_state(gg, dest, home, acks, verify)
    finally:
        shutil.rmtree(dest)


def check_state(gg, repo, home, acks, verify):
    """None when the state at `repo` is sound, else what is wrong with it."""
    fsck = subprocess.run(["git", "--git-dir", repo, "fsck", "--strict", "--no-dangling",
                           "--no-progress"], capture_output=True, text=True, env=env(repo, home))
    if fsck.returncode != 0:
        return f"git fsck --strict: {fsck.stdout.strip()} {fsck.stderr.strip()}"
    fix = run([gg, "doctor", "--fix"], repo, home, check=False)
    doc = run([gg, "doctor"], repo, home, check=False)
    if doc.returncode != 0:
        return f"doctor after doctor --fix: {doc.stdout.strip()} {doc.stderr.strip()} (fix: {fix.stdout.strip()})"
    try:
        return verify(repo, home, acks)
    except RuntimeError as e:
        return str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("git_gatos")
    ap.add_argument("scenario")
    ap.add_argument("--fsync", default=None, help="gatos.fsyncMethod, with gatos.fsync = true")
    ap.add_argument("--work", default=None)
    ap.add_argument("--no-kills", action="store_true", help="skip the real kill -9 runs")
    ap.add_argument("--break-order", choices=["ref-first", "rename-first"], default=None,
                    help="a control the check must fail: replay each ref update (ref-first) "
                         "or only its rename (rename-first, so the update is lost) before "
                         "the objects are written")
    o = ap.parse_args()
    gg = os.path.abspath(o.git_gatos)
    work = o.work or tempfile.mkdtemp(prefix="gatos-crash.")
    home = os.path.join(work, "home")
    os.makedirs(home, exist_ok=True)
    base = os.path.join(work, "base.git")
    subprocess.run(["git", "init", "-q", "--bare", base], check=True)
    run([gg, "init", "--quiet"], base, home)
    run(["git", "config", "gatos.maintenance.auto", "false"], base, home)
    if o.fsync:
        run(["git", "config", "gatos.fsync", "true"], base, home)
        run(["git", "config", "gatos.fsyncMethod", o.fsync], base, home)
    setup, cmds, verify = scenario(o.scenario, gg, work)
    for c in setup:
        run(c, base, home)
    # 1. The recording.
    rec = os.path.join(work, "rec.git")
    shutil.copytree(base, rec, symlinks=True)
    calls, acks_at, ends = [], [], []  # acks_at: (index into calls, acknowledged line)
    daemon = o.scenario in ("daemon", "daemon-enqueue", "daemon-jobs", "daemon-jobs-packed")
    drive = (drive_jobs if o.scenario.startswith("daemon-jobs")
             else drive_enqueues if o.scenario == "daemon-enqueue" else None)
    if daemon:
        gatosd = os.path.join(os.path.dirname(gg), "gatosd")
        for call in record_daemon(gatosd, rec, home, work, drive=drive):
            calls.append(call)
            pid, name, a, ret = call
            if name in ("write", "writev", "sendto", "sendmsg") and a[0] not in ("1", "2") and ret > 0:
                quoted = re.findall(r'"(?:[^"\\]|\\.)*"', a[1])
                try:
                    text = b"".join(unquote(q) for q in quoted).decode("utf-8", "replace")
                except ValueError:
                    continue
                if '"result"' in text and ('"ulid"' in text or '"content_id"' in text or
                                           re.search(r'"id":"(claim|hb|end):', text)):
                    acks_at.append((len(calls) - 1, text))
        ends.append(len(calls) - 1)
    for i, c in enumerate(cmds):
        log = os.path.join(work, f"trace.{i}")
        r = subprocess.run(["strace", "-f", "-qq", "-xx", "-s", "16777216", "-o", log,
                            "-e", "trace=" + TRACED] + c,
                           env=env(rec, home), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"recording {' '.join(c)}: exit {r.returncode}: {r.stderr}")
        with open(log) as f:
            part = parse(f.read())
        if o.break_order:
            part = refs_first(part, rec, o.break_order == "rename-first")
        top = part[0][0] if part else None  # the command's own process, not its children
        for call in part:
            calls.append(call)
            pid, name, a, ret = call
            if pid == top and name == "write" and a[0] == "1" and ret > 0:
                acks_at.append((len(calls) - 1, unquote(a[1])[:ret].decode()))
        # A command that exited reported everything it did as done: its end is a point
        # where nothing it wrote may be lost either (with fsync on).
        ends.append(len(calls) - 1)
    if not acks_at and o.scenario != "worker":
        raise SystemExit("the recording holds no acknowledgement on standard output")
    # 2 and 3. Replay.
    model = Model(rec)
    model.threads(calls)
    model.load(base)
    states = durable_states = 0
    failures = []
    for i, call in enumerate(calls):
        changed = model.apply(call)
        acks = [line for at, line in acks_at if at <= i]
        is_ack = any(at == i for at, _ in acks_at) or i in ends
        # A state follows each change, and each acknowledgement must be checked against
        # the state it was given in (an acknowledgement changes no file of the repository).
        if changed or is_ack:
            states += 1
            bad = check_model(model, gg, os.path.join(work, f"s{i}.git"), home, acks, verify, False)
            if bad:
                failures.append(("process crash", i, bad))
                break
        if is_ack and o.fsync:
            durable_states += 1
            bad = check_model(model, gg, os.path.join(work, f"d{i}.git"), home, acks, verify, True)
            if bad:
                failures.append(("power cut", i, bad))
                break
    # 4. Real kills: SIGKILL at the k-th call of each changing system call, for each k, in
    # each command (strace counts each system call separately: one name at a time covers
    # every changing call once).
    kills = 0
    if not o.no_kills and not failures:
        names = sorted(CHANGING - {"creat", "link", "truncate"})
        if daemon:
            # gatosd killed at every change to the topic's journal and head: each append,
            # each truncation after a materialization, each rename of the head; serving
            # jobs, at every rename (each object, pack and ref made visible) and unlink.
            gatosd = os.path.join(os.path.dirname(gg), "gatosd")
            points = ((("write", "gatos/journal/jobs.enqueued"),
                       ("ftruncate", "gatos/journal/jobs.enqueued"),
                       ("rename", None)) if drive is drive_enqueues else
                      (("rename", None), ("unlink", None)) if drive else
                      (("write", "gatos/journal/messages.t"),
                       ("ftruncate", "gatos/journal/messages.t"),
                       ("rename", "refs/gatos/messages/t/head")))
            for sc, rel in points:
                k = 1
                while not failures:
                    kr = os.path.join(work, "kill.git")
                    shutil.rmtree(kr, ignore_errors=True)
                    shutil.copytree(base, kr, symlinks=True)
                    acks, killed = record_daemon(gatosd, kr, home, work,
                                                 (sc, rel and os.path.join(kr, rel), k), drive)
                    if not killed:
                        break  # gatosd made no k-th such call
                    kills += 1
                    bad = check_state(gg, kr, home, acks, verify)
                    if bad:
                        failures.append((f"kill -9 of gatosd at {sc} #{k} on {rel or 'any path'}", -1, bad))
                    k += 1
        for ci, c in enumerate(cmds):
            for sc in names:
                k = 1
                while not failures:
                    kr = os.path.join(work, "kill.git")
                    shutil.rmtree(kr, ignore_errors=True)
                    shutil.copytree(base, kr, symlinks=True)
                    before_acks = [run(prev, kr, home).stdout for prev in cmds[:ci]]
                    klog = os.path.join(work, "kill.log")
                    r = subprocess.run(["strace", "-f", "-o", klog, "-e", "trace=" + sc,
                                        "-e", f"inject={sc}:signal=KILL:when={k}"] + c,
                                       env=env(kr, home), capture_output=True, text=True)
                    with open(klog) as f:
                        killed = "killed by SIGKILL" in f.read()
                    if not killed:
                        break  # no process of the command made a k-th such call
                    kills += 1
                    acks = before_acks + ([r.stdout] if r.stdout else [])
                    bad = check_state(gg, kr, home, acks, verify)
                    if bad:
                        failures.append((f"kill -9 at {sc} #{k} of command {ci + 1}", -1, bad))
                    k += 1
            if failures:
                break
    what = f"fsync method {o.fsync}" if o.fsync else "no fsync"
    if failures:
        kind, i, bad = failures[0]
        print(f"FAIL {o.scenario} ({what}): {kind} after call {i}: {bad}")
        if i >= 0:
            for pid, name, a, ret in calls[max(0, i - 8): i + 1]:
                print(f"  {name}({', '.join(x[:80] for x in a)}) = {ret}")
        sys.exit(1)
    print(f"ok {o.scenario} ({what}): {len(calls)} calls recorded, {len(acks_at)} acknowledgements; "
          f"{states} process-crash states, {durable_states} power-cut states, {kills} real kills: all sound")
    if not o.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
