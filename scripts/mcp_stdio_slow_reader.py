"""`gatosd mcp --stdio` with a client that sends N `messages.read` calls of a 530 KB message
before it reads any answer (ADR 0043, session 25): prints gatosd's peak RSS over 10 s, then
how many answers came once the client read.
Usage: mcp_stdio_slow_reader.py GATOSD GIT_GATOS N"""
import json, os, subprocess, sys, tempfile, time, shutil, threading
gatosd, gitgatos, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = tempfile.mkdtemp(dir="/dev/shm"); repo = os.path.join(d, "r")
subprocess.run(["git", "init", "-q", repo], check=True)
subprocess.run([gitgatos, "init", "--quiet"], cwd=repo, check=True, stdout=subprocess.DEVNULL)
big = os.path.join(d, "b.json"); open(big, "w").write('{"x":"' + "a" * 530000 + '"}')
subprocess.run([gitgatos, "messages", "publish", "big2", "--file", big], cwd=repo, check=True, stdout=subprocess.DEVNULL)
p = subprocess.Popen([gatosd, "mcp", "--stdio"], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "s", "version": "1"}, "io.modelcontextprotocol/clientCapabilities": {}}
def writer():
    for i in range(n):
        req = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "messages.read", "arguments": {"topic": "big2", "limit": 1}, "_meta": meta}}
        try:
            p.stdin.write((json.dumps(req) + "\n").encode()); p.stdin.flush()
        except BrokenPipeError:
            return
t = threading.Thread(target=writer, daemon=True); t.start()
def rss():
    for l in open("/proc/%d/status" % p.pid):
        if l.startswith("VmRSS:"): return int(l.split()[1]) // 1024
peak = 0
for _ in range(40):
    time.sleep(0.25); peak = max(peak, rss())
print("requests", n, "peak RSS over 10 s while nobody reads", peak, "MiB")
got = 0
p.stdin.close() if not t.is_alive() else None
deadline = time.time() + 120
while got < n and time.time() < deadline:
    line = p.stdout.readline()
    if not line: break
    got += 1
print("answers read afterwards", got)
p.kill(); p.wait(); shutil.rmtree(d)
