#!/usr/bin/env python3
"""Slow SSE readers against one gatosd: 8 messages of 3 MiB, 60 HTTP streams from since_seq=0
that never read (4 KiB receive buffers); prints gatosd VmRSS at start, its peak over 10 s, at
10 s and after the streams close. Usage: sse_slow_readers.py GATOSD GIT_GATOS (ADR 0048)."""
import os, socket, subprocess, sys, time, tempfile, shutil
gatosd, gitgatos = sys.argv[1], sys.argv[2]
d = tempfile.mkdtemp(dir="/dev/shm")
repo = os.path.join(d, "r")
subprocess.run(["git", "init", "-q", repo], check=True)
subprocess.run([gitgatos, "init", "--quiet"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
big = os.path.join(d, "big.json")
open(big, "w").write('{"blob":"' + "a" * (3 << 20) + '"}')
for _ in range(8):
    subprocess.run([gitgatos, "messages", "publish", "big", "--file", big], cwd=repo, check=True, stdout=subprocess.DEVNULL)
tok = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
tf = os.path.join(d, "tokens"); open(tf, "w").write("ci " + tok + "\n"); os.chmod(tf, 0o600)
p = subprocess.Popen([gatosd, "--socket", os.path.join(d, "g.sock"), "--http", "127.0.0.1:0", "--token-file", tf], cwd=repo, stderr=open(os.path.join(d, "log"), "w"))
af = os.path.join(repo, ".git/gatos/gatosd/http-addr")
while not (os.path.exists(af) and open(af).read().endswith("\n")): time.sleep(0.05)
addr = open(af).read().strip(); host, port = addr.rsplit(":", 1)
def rss():
    for l in open("/proc/%d/status" % p.pid):
        if l.startswith("VmRSS:"): return int(l.split()[1]) // 1024
base = rss()
socks = []
for i in range(60):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect((host, int(port)))
    s.sendall(("GET /api/v1/topics/big/stream?since_seq=0 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n" % (addr, tok)).encode())
    socks.append(s)
peak = 0
for i in range(40):
    time.sleep(0.25); peak = max(peak, rss())
print("start", base, "MiB; peak over 10 s", peak, "MiB; at 10 s", rss(), "MiB")
for s in socks: s.close()
time.sleep(2); print("after closing", rss(), "MiB")
p.kill(); p.wait(); shutil.rmtree(d)
