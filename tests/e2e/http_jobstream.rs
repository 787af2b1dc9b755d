//! The job stream of the HTTP face, `GET /api/v1/jobs/{id}/stream` (`jobs.follow`, issue
//! #17, ADR 0039), with a real `gatosd --http 127.0.0.1:0`, a real worker process (`git
//! gatos worker`) running a job that prints lines when the test lets it (files the test
//! creates), and a real SSE client (Python `requests`, streaming).

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};

use gatos_testutil::{TempRepo, TestResult, hermetic};

use crate::support::{enqueue, gatos_ok, jobs_shared, path_with_bins};

const CI: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

const PRELUDE: &str = r#"
import json, os, subprocess, sys, time
import requests
BASE = os.environ['BASE']
H = {'Authorization': 'Bearer ' + os.environ['CI']}
JOB = os.environ['JOB']

def parse(block):
    ev = {}
    for line in block.split(b'\n'):
        if line.startswith(b':'):
            ev['comment'] = line.decode()
            continue
        k, _, v = line.decode().partition(':')
        ev[k] = v[1:] if v.startswith(' ') else v
    return ev

def events(r):
    buf = b''
    for chunk in r.iter_content(chunk_size=None):
        buf += chunk
        while b'\n\n' in buf:
            block, buf = buf.split(b'\n\n', 1)
            yield parse(block)

def stream(headers=None, job=None, **kw):
    return requests.get(BASE + '/jobs/' + (job or JOB) + '/stream',
                        headers={**H, **(headers or {})}, stream=True, timeout=(5, 60), **kw)

def wait(what, f, secs=60):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if f():
            return
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)

def cli_log():
    return subprocess.run(['git', 'gatos', 'jobs', 'logs', JOB], capture_output=True, text=True).stdout

logs = {'stdout': '', 'stderr': ''}
def take_log(ev):
    c = json.loads(ev['data'])
    assert c['job'] == JOB and c['attempt'] == 1, c
    assert c['offset'] == len(logs[c['stream']].encode()), (c, logs)
    logs[c['stream']] += c['data']
    return c
"#;

struct Gatosd {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Gatosd {
    fn start(repo: &TempRepo) -> TestResult<Gatosd> {
        let tokens = repo.root().join("tokens");
        std::fs::write(&tokens, format!("ci {CI}\n"))?;
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
        let (child, addr, log) =
            crate::support::http_daemon(repo, &tokens, "gatosd", &["--log-level", "gatosd=debug"])?;
        Ok(Gatosd { child, addr, log })
    }

    /// Runs `script` after the prelude in the repository (the CLI on PATH, hermetic).
    fn python(
        &self,
        repo: &TempRepo,
        job: &str,
        env: &[(&str, String)],
        script: &str,
    ) -> TestResult<String> {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &format!("{PRELUDE}\n{script}")])
            .current_dir(repo.path())
            .env("BASE", format!("http://{}/api/v1", self.addr))
            .env("CI", CI)
            .env("JOB", job)
            .env("PID", self.child.id().to_string());
        hermetic(&mut cmd, &repo.home());
        cmd.env("PATH", path_with_bins());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!(
                "python failed:\n{}\n--- gatosd:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Gatosd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_job_stream_shows_state_events_live_log_and_end_and_resumes_exactly() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let shared = jobs_shared(&repo);
    let (go1, go2) = (shared.join("go1"), shared.join("go2"));
    let script = format!(
        r#"echo line-1
echo err-1 >&2
while [ ! -e "{go1}" ]; do sleep 0.05; done
echo line-2
echo err-2 >&2
while [ ! -e "{go2}" ]; do sleep 0.05; done
echo line-3"#,
        go1 = go1.display(),
        go2 = go2.display()
    );
    let id = enqueue(&repo, &["--no-checkout", "--", "sh", "-c", &script])?;
    let d = Gatosd::start(&repo)?;
    let env = [
        ("GO1", go1.to_string_lossy().into_owned()),
        ("GO2", go2.to_string_lossy().into_owned()),
        ("SHARED", shared.to_string_lossy().into_owned()),
    ];
    let out = d.python(
        &repo,
        &id,
        &env,
        r#"
# Before the 200: an unknown job is a 404 problem, no token a 401, a bad cursor a 400.
r = stream(job='01J00000000000000000000000')
assert r.status_code == 404 and r.headers['content-type'].startswith('application/problem+json'), (r.status_code, r.text)
assert r.json()['code'] == 'NotFound', r.text
r = requests.get(BASE + '/jobs/' + JOB + '/stream', timeout=10)
assert r.status_code == 401, r.status_code
r = stream({'Last-Event-ID': 'nope'})
assert r.status_code == 400 and r.json()['code'] == 'InvalidInput', r.text

r = stream()
assert r.status_code == 200, r.text
assert r.headers['content-type'] == 'text/event-stream', r.headers
it = events(r)
assert next(it).get('retry') == '2000'
st = next(it)
assert st['event'] == 'state', st
row = json.loads(st['data'])
assert row['id'] == JOB and row['state'] == 'pending', row
assert st['id'] == '0.0.0.0' or st['id'].endswith('.0.0.0'), st

# The worker starts once the stream is open: its claim comes live.
w = subprocess.Popen(['git', 'gatos', 'worker', '--once', '--sandbox-allow-write', os.environ['SHARED']],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
seen = []
kinds_seen = []
last = None
for ev in it:
    if 'event' not in ev:
        continue
    seen.append(ev['event'])
    last = ev['id']
    if ev['event'] == 'job':
        assert json.loads(ev['data'])['job'] == JOB, ev
        assert json.loads(ev['data'])['ulid'] == ev['id'].split('.')[0], ev
        kinds_seen.append(json.loads(ev['data'])['event'])
    if ev['event'] == 'log':
        take_log(ev)
    if logs['stdout'] == 'line-1\n' and logs['stderr'] == 'err-1\n' and 'claimed' in kinds_seen:
        break
assert 'end' not in seen, seen
assert 'claimed' in kinds_seen, kinds_seen
assert last.split('.')[1:] == ['1', '7', '6'], last
# Disconnect in the middle of the log.
r.close()

# The job goes on while nobody listens.
open(os.environ['GO1'], 'w').close()
wait('line-2 in the log', lambda: 'line-2' in cli_log())

r = stream({'Last-Event-ID': last})
assert r.status_code == 200, r.text
it = events(r)
assert next(it).get('retry') == '2000'
st = next(it)
assert st['event'] == 'state' and st['id'] == last, st
assert json.loads(st['data'])['state'] == 'running', st
ended = None
for ev in it:
    if ev.get('event') == 'log':
        take_log(ev)
        if logs['stdout'] == 'line-1\nline-2\n' and logs['stderr'] == 'err-1\nerr-2\n':
            open(os.environ['GO2'], 'w').close()
    elif ev.get('event') == 'end':
        ended = ev
        break
assert ended is not None
end = json.loads(ended['data'])
assert end['id'] == JOB and end['state'] == 'succeeded', end
assert end['ended'] == {'kind': 'exit', 'code': 0}, end
assert logs == {'stdout': 'line-1\nline-2\nline-3\n', 'stderr': 'err-1\nerr-2\n'}, logs
assert ended['id'].split('.')[1:] == ['1', '21', '12'], ended
# The stream closes after `end`.
assert [e for e in it if 'event' in e] == []
assert w.wait(timeout=60) == 0

# A finished job: its state, its whole log and the end, at once.
t0 = time.monotonic()
r = stream()
assert r.status_code == 200
evs = [e for e in events(r) if 'event' in e]
assert time.monotonic() - t0 < 10
kinds = [e['event'] for e in evs]
assert kinds[0] == 'state' and kinds[-1] == 'end' and set(kinds[1:-1]) <= {'log'}, kinds
data = {'stdout': '', 'stderr': ''}
for e in evs[1:-1]:
    c = json.loads(e['data'])
    data[c['stream']] += c['data']
assert data == logs, data
# logs=false: the state and the end only.
r = stream(params={'logs': 'false'})
assert [e['event'] for e in events(r) if 'event' in e] == ['state', 'end']
# Resumed at the end: nothing of the log again.
r = stream({'Last-Event-ID': ended['id']})
assert [e['event'] for e in events(r) if 'event' in e] == ['state', 'end']
print('ok')
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}

#[test]
fn a_job_stream_ends_with_shutdown_and_the_cursor_to_resume_from_when_the_daemon_stops()
-> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let shared = jobs_shared(&repo);
    let go = shared.join("go");
    let script = format!(
        r#"echo line-1
while [ ! -e "{go}" ]; do sleep 0.05; done
echo line-2"#,
        go = go.display()
    );
    let id = enqueue(&repo, &["--no-checkout", "--", "sh", "-c", &script])?;
    let d = Gatosd::start(&repo)?;
    let env = [
        ("GO", go.to_string_lossy().into_owned()),
        ("SHARED", shared.to_string_lossy().into_owned()),
    ];
    let out = d.python(
        &repo,
        &id,
        &env,
        r#"
import signal
r = stream()
assert r.status_code == 200, r.text
it = events(r)
w = subprocess.Popen(['git', 'gatos', 'worker', '--once', '--sandbox-allow-write', os.environ['SHARED']],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
last = None
for ev in it:
    if 'event' not in ev:
        continue
    last = ev['id']
    if ev['event'] == 'log':
        take_log(ev)
        if logs['stdout'] == 'line-1\n':
            break
os.kill(int(os.environ['PID']), signal.SIGTERM)
rest = [e for e in it if 'event' in e]
assert [e['event'] for e in rest] == ['shutdown'], rest
assert rest[0]['id'] == last and json.loads(rest[0]['data'])['next_since'] == last, (rest, last)
open(os.environ['GO'], 'w').close()
assert w.wait(timeout=60) == 0
print('ok')
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}

#[test]
fn jobs_follow_over_json_rpc_sends_state_log_and_end_and_resumes_from_a_cursor() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let id = enqueue(
        &repo,
        &[
            "--no-checkout",
            "--",
            "sh",
            "-c",
            "echo hello; echo oops >&2; echo bye",
        ],
    )?;
    gatos_ok(&repo, &["worker", "--drain"])?;
    // No HTTP needed: gatosd --stdio, started by the script.
    let d = Gatosd::start(&repo)?;
    let out = d.python(
        &repo,
        &id,
        &[],
        r#"
p = subprocess.Popen(['gatosd', '--stdio'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
def call(n, method, params):
    p.stdin.write(json.dumps({'jsonrpc': '2.0', 'id': n, 'method': method, 'params': params}) + '\n')
    p.stdin.flush()
def read_until_end(n):
    answer, notes = None, []
    while True:
        line = p.stdout.readline()
        assert line, 'gatosd closed stdout'
        m = json.loads(line)
        if m.get('id') == n:
            answer = m
            if 'error' in m:
                return answer, notes
        elif 'method' in m:
            notes.append(m)
            if m['method'] == 'jobs.end':
                return answer, notes

call(1, 'jobs.follow', {'id': '01J00000000000000000000000'})
a, _ = read_until_end(1)
assert a['error']['data']['code'] == 'NotFound', a
call(2, 'jobs.follow', {'id': JOB, 'since': 'junk'})
a, _ = read_until_end(2)
assert a['error']['data']['code'] == 'InvalidInput', a

call(3, 'jobs.follow', {'id': JOB})
a, notes = read_until_end(3)
sub = a['result']['subscription']
assert all(n['params']['subscription'] == sub for n in notes), notes
kinds = [n['method'] for n in notes]
assert kinds[0] == 'jobs.state' and kinds[-1] == 'jobs.end' and set(kinds[1:-1]) <= {'jobs.log'}, kinds
assert notes[0]['params']['job']['id'] == JOB
end = notes[-1]['params']['job']
assert end['state'] == 'succeeded' and end['ended'] == {'kind': 'exit', 'code': 0}, end
text = {'stdout': '', 'stderr': ''}
for n in notes[1:-1]:
    c = n['params']['chunk']
    text[c['stream']] += c['data']
assert text == {'stdout': 'hello\nbye\n', 'stderr': 'oops\n'}, text
assert notes[-1]['params']['cursor'].split('.')[1:] == ['1', '10', '5'], notes[-1]

# Resumed after the first chunk: only what follows it.
first = notes[1]
call(4, 'jobs.follow', {'id': JOB, 'since': first['params']['cursor']})
a, again = read_until_end(4)
assert a['result']['since'] == first['params']['cursor'], a
rest = {'stdout': '', 'stderr': ''}
for n in again:
    if n['method'] == 'jobs.log':
        c = n['params']['chunk']
        rest[c['stream']] += c['data']
c0 = first['params']['chunk']
seen = {'stdout': '', 'stderr': ''}
seen[c0['stream']] = c0['data']
assert {k: seen[k] + rest[k] for k in seen} == text, (seen, rest)
p.stdin.close()
assert p.wait(timeout=30) == 0
print('ok')
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}
