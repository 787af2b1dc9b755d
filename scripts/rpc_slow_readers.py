#!/usr/bin/env python3
"""Slow JSON-RPC readers against one gatosd (ADR 0048, session 25): 8 messages of 3 MiB; N Unix
socket connections (4 KiB receive buffers) that never read: `sub` subscribes once from seq 0,
`manysub` subscribes 256 times, `read` pipelines 8 `messages.read` pages. Prints the
connections still open after 15 s and gatosd's VmRSS at start, its peak over 15 s, at 15 s and
after the connections close.
Usage: rpc_slow_readers.py GATOSD GIT_GATOS sub|manysub|read N"""
import os, socket, subprocess, sys, time, tempfile, shutil, json
gatosd, gitgatos, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = tempfile.mkdtemp(dir="/dev/shm")
repo = os.path.join(d, "r")
subprocess.run(["git", "init", "-q", repo], check=True)
subprocess.run([gitgatos, "init", "--quiet"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
big = os.path.join(d, "big.json")
open(big, "w").write('{"blob":"' + "a" * (3 << 20) + '"}')
for _ in range(8):
    subprocess.run([gitgatos, "messages", "publish", "big", "--file", big], cwd=repo, check=True, stdout=subprocess.DEVNULL)
sock = os.path.join(d, "g.sock")
p = subprocess.Popen([gatosd, "--socket", sock], cwd=repo, stderr=open(os.path.join(d, "log"), "w"))
while not os.path.exists(sock): time.sleep(0.05)
time.sleep(0.3)
def rss():
    for l in open("/proc/%d/status" % p.pid):
        if l.startswith("VmRSS:"): return int(l.split()[1]) // 1024
base = rss()
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(sock)
    if mode == "manysub":
        reqs = [{"jsonrpc":"2.0","id":k,"method":"messages.subscribe","params":{"topic":"big","since_seq":0}} for k in range(256)]
    elif mode == "sub":
        reqs = [{"jsonrpc":"2.0","id":1,"method":"messages.subscribe","params":{"topic":"big","since_seq":0}}]
    else:
        reqs = [{"jsonrpc":"2.0","id":k,"method":"messages.read","params":{"topic":"big"}} for k in range(8)]
    s.sendall(("".join(json.dumps(r)+"\n" for r in reqs)).encode())
    socks.append(s)
peak = 0
for i in range(60):
    time.sleep(0.25); peak = max(peak, rss())
h = socket.socket(socket.AF_UNIX); h.connect(sock); h.sendall(b'{"jsonrpc":"2.0","id":1,"method":"gatos.health","params":{}}\n')
buf=b""
while not buf.endswith(b"\n"): buf += h.recv(65536)
print("open connections", json.loads(buf)["result"]["connections"]); h.close()
print(mode, n, "start", base, "MiB; peak over 15 s", peak, "MiB; at 15 s", rss(), "MiB")
for s in socks: s.close()
time.sleep(2); print("after closing", rss(), "MiB")
p.kill(); p.wait(); shutil.rmtree(d)
