#!/usr/bin/env python3
"""Drives the gatos dashboard in headless Chromium through WebDriver (selenium), against a
live gatosd that tests/e2e/dashboard_browser.rs started (issue #19).

Environment (set by the Rust test): ORIGIN (http://127.0.0.1:PORT), SIGNIN (the URL
`git gatos dashboard` printed), TOKEN (a bearer token, to check state from outside the
browser), SHOTS (where screenshots go), MODE (`full`, `read_only`, `claims` or `pages`), and for `full`:
JOB_DONE (a succeeded job), JOB_CANCEL (a pending job), JOB_LIVE (a job that prints a line,
waits for the file GO, prints another), GO, SHARED (the worker's writable directory),
TOPIC (a topic with one message); for `pages`: TOPIC, JOB_CANCEL, OTHER_KEY (a key this
node does not know), JOB_RUN (a running job that prints a line, waits for the file GO and
prints another), GO and SHARED; for `claims`: JOB_HB and JOB_TAKE (two pending jobs),
WORKER_KEY (the node's key, for claims), REJECTED_REF (a ref a sync rejected), HUB (the
bare hub the daemon syncs with), JUNK (a forged commit in it) and JOB_BAD (a finished job
whose stored log was changed after its proof was signed). Each step waits for a condition with a deadline; no
sleeps as synchronisation. Prints one line per step.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ORIGIN = os.environ["ORIGIN"]
SHOTS = os.environ["SHOTS"]
MODE = os.environ.get("MODE", "full")
DEADLINE = 30


def step(msg):
    print(f"ok: {msg}", flush=True)


def api(path, method="GET", body=None):
    req = urllib.request.Request(ORIGIN + path, method=method,
                                 headers={"Authorization": "Bearer " + os.environ["TOKEN"],
                                          "Content-Type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {path}: {e.code} {e.read()[:1000]!r}") from None


def browser():
    opts = webdriver.ChromeOptions()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", "--window-size=1280,800",
              # A name that resolves to the daemon, for the foreign-Host check.
              "--host-resolver-rules=MAP evil.test 127.0.0.1"]:
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="gatos-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    chromium = shutil.which("chromium")
    if chromium:
        opts.binary_location = chromium
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=opts, service=service), profile


def wait(d, what, cond, timeout=DEADLINE):
    try:
        # Pages re-render live: an element found a moment ago may be replaced.
        return WebDriverWait(d, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda _: cond())
    except TimeoutException:
        shot(d, "failure")
        raise AssertionError(f"timed out waiting for {what}; page: {d.current_url}\n{d.find_element(By.TAG_NAME, 'body').text[:2000]}")


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def text(d):
    return d.find_element(By.TAG_NAME, "body").text


def sign_in(d):
    d.get(os.environ["SIGNIN"])
    wait(d, "the session", lambda: d.find_element(By.ID, "who").text.startswith("web:"))
    assert "code=" not in d.current_url, d.current_url
    assert d.execute_script("return document.cookie") == "", "the cookie is HttpOnly"
    step("signed in with the code from the fragment; the code left the address bar")


def same_origin_post(d, path):
    return d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, body: '{}'})"
        ".then(r => done(r.status)).catch(e => done(String(e)));", path)


def full(d):
    sign_in(d)
    wait(d, "the overview", lambda: "Queues" in text(d))
    wait(d, "the live stream", lambda: d.find_element(By.ID, "live").text == "live")
    shot(d, "overview")
    step("overview shown; the shared job stream is live")

    # One stream per browser: two more tabs share the first one's (a SharedWorker).
    first = d.current_window_handle
    for _ in range(2):
        d.switch_to.new_window("tab")
        d.get(ORIGIN + "/overview")
        wait(d, "another tab live", lambda: d.find_element(By.ID, "live").text == "live")
    streams = api("/api/v1/health")["subscriptions"]
    assert streams == 1, f"{streams} streams for three tabs"
    for handle in d.window_handles:
        if handle != first:
            d.switch_to.window(handle)
            d.close()
    d.switch_to.window(first)
    step("three tabs share one event stream (the daemon holds 1)")

    # Jobs: filter by queue through the form; the filter is kept in the URL.
    d.get(ORIGIN + "/jobs")
    wait(d, "the jobs table", lambda: len(d.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")) >= 3)
    q = d.find_element(By.ID, "f-queue")
    q.send_keys("done")
    d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait(d, "the filter in the URL", lambda: "queue=done" in d.current_url)
    wait(d, "only the done queue", lambda: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")] == [os.environ["JOB_DONE"]])
    shot(d, "jobs")
    step("jobs filtered by queue, the filter kept in the URL")

    # A finished job's proof verifies.
    wait(d, "the job's link", lambda: d.find_element(By.LINK_TEXT, os.environ["JOB_DONE"]).click() or True)
    wait(d, "a verified proof", lambda: len(d.find_elements(By.CSS_SELECTOR, "[data-proof=verified]")) == 1)
    shot(d, "job-verified")
    step("the job's proof is shown verified")

    # A running job's log and state change live, without a reload.
    live = os.environ["JOB_LIVE"]
    d.get(ORIGIN + "/jobs/" + live)
    wait(d, "the live job's page", lambda: "pending" in d.find_element(By.ID, "job-state").text)
    wait(d, "the job's stream", lambda: d.find_element(By.ID, "main").get_attribute("data-live") == "true")
    d.execute_script("window.__noReload = true")
    worker = subprocess.Popen(["git", "gatos", "worker", "--once", "--queue", "live", "--sandbox-allow-write", os.environ["SHARED"]],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(d, "the first line", lambda: "first line" in d.find_element(By.CSS_SELECTOR, "pre.log").text)
        wait(d, "the running state", lambda: "running" in d.find_element(By.ID, "job-state").text)
        shot(d, "job-running")
        open(os.environ["GO"], "w").close()
        wait(d, "the second line", lambda: "second line" in d.find_element(By.CSS_SELECTOR, "pre.log").text)
        wait(d, "the final state", lambda: "succeeded" in d.find_element(By.ID, "job-state").text)
        assert d.execute_script("return window.__noReload === true"), "the page was reloaded"
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    shot(d, "job-done")
    step("a running job's log and state changed live without a reload")

    # Cancel a job from its page; the action is on the audit page as web:<session>.
    cancel = os.environ["JOB_CANCEL"]
    d.get(ORIGIN + "/jobs/" + cancel)
    wait(d, "the job's stream", lambda: d.find_element(By.ID, "main").get_attribute("data-live") == "true")
    wait(d, "the cancel button", lambda: d.find_element(By.XPATH, "//button[text()='Cancel job']").click() or True)
    WebDriverWait(d, DEADLINE).until(lambda _: d.switch_to.alert).accept()
    wait(d, "the cancelled state", lambda: "cancelled" in d.find_element(By.ID, "job-state").text)
    assert api(f"/api/v1/jobs/{cancel}")["state"] == "cancelled"
    actor = d.find_element(By.ID, "who").text.split()[0]
    d.get(ORIGIN + "/audit?action=jobs.cancel")
    wait(d, "the audit record", lambda: cancel in text(d) and actor in text(d))
    shot(d, "audit")
    step(f"cancelled a job; the audit page shows it done by {actor}")

    # A topic's live tail follows messages another process publishes.
    topic = os.environ["TOPIC"]
    d.get(ORIGIN + "/topics/" + topic)
    wait(d, "the tail's first message", lambda: len(d.find_elements(By.CSS_SELECTOR, "#tail tbody tr")) >= 1)
    subprocess.run(["git", "gatos", "messages", "publish", topic, "--data", '{"from":"another process"}'],
                   check=True, stdout=subprocess.DEVNULL)
    wait(d, "the published message in the tail", lambda: "another process" in d.find_element(By.ID, "tail").text)
    wait(d, "a row of the tail to select", lambda: d.find_elements(By.CSS_SELECTOR, "#tail tbody tr")[0].click() or True)
    wait(d, "the message detail", lambda: "Content-Id" in text(d))
    shot(d, "topic")
    step("the topic tail showed a message published by another process")

    # Another origin (another port of 127.0.0.1: same site, not same origin) posts with the
    # cookie and frames the dashboard: both refused.
    target = os.environ["JOB_VICTIM"]
    evil = tempfile.mkdtemp(prefix="gatos-evil-")
    with open(os.path.join(evil, "index.html"), "w") as f:
        f.write('<!doctype html><title>evil</title><iframe id="f" src="%s/overview"></iframe><script src="evil.js"></script>' % ORIGIN)
    with open(os.path.join(evil, "evil.js"), "w") as f:
        f.write("fetch(%s, {method: 'POST', credentials: 'include', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: '{}'})"
                ".then(() => { document.title = 'sent'; }).catch(() => { document.title = 'failed'; });"
                % json.dumps(f"{ORIGIN}/api/v1/jobs/{target}/cancel"))
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=evil, **k)  # noqa: E731
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        d.get(f"http://127.0.0.1:{srv.server_address[1]}/index.html")
        wait(d, "the forged request to be sent", lambda: d.title in ("sent", "failed"))
        assert api(f"/api/v1/jobs/{target}")["state"] == "pending", "a cross-origin POST acted"
        d.switch_to.frame(d.find_element(By.ID, "f"))
        framed = d.execute_script("return document.body ? document.body.innerText : ''")
        d.switch_to.default_content()
        assert "Sign out" not in framed and "Overview" not in framed, f"the dashboard rendered in a frame: {framed!r}"
        shot(d, "refused-cross-origin")
    finally:
        srv.shutdown()
    step("a cross-origin POST with the cookie changed nothing; framing was refused")

    # A foreign Host (a name that resolves to the daemon: DNS rebinding) is refused.
    port = ORIGIN.rsplit(":", 1)[1]
    d.get(f"http://evil.test:{port}/overview")
    wait(d, "the Host refusal", lambda: "Forbidden" in d.page_source)
    assert "Sign out" not in text(d)
    step("a foreign Host was refused")

    # Phone width stays readable: the navigation wraps, nothing scrolls sideways.
    d.set_window_size(390, 844)
    d.get(ORIGIN + "/jobs")
    wait(d, "the jobs page at phone width", lambda: len(d.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")) >= 1)
    overflow = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px at phone width"
    shot(d, "jobs-phone")
    d.set_window_size(1280, 800)
    step("readable at phone width")

    # A manifest's page: its versions compared, a run with a field changed.
    d.get(ORIGIN + "/manifests/hello")
    wait(d, "the manifest's diff", lambda: "v1 → v2" in text(d))
    wait(d, "an added line in the diff", lambda: "+ " in d.find_element(By.CSS_SELECTOR, "pre.diff").text)
    d.find_element(By.ID, "o-queue").send_keys("override")
    d.find_element(By.XPATH, "//button[text()='Run v2']").click()
    WebDriverWait(d, DEADLINE).until(lambda _: d.switch_to.alert).accept()
    wait(d, "the new job's page", lambda: "/jobs/" in d.current_url)
    ran = d.current_url.rsplit("/", 1)[1]
    job = api(f"/api/v1/jobs/{ran}")
    assert job["queue"] == "override" and job["manifest"]["labels"].get("manifest") == "hello@v2", job
    shot(d, "manifest-run")
    step("a manifest's versions compared, a version run with its queue changed")

    # The same proof once the node stops trusting the key: valid, but untrusted, with the
    # key and the command that trusts it.
    subprocess.run(["git", "config", "--unset-all", "gatos.trust"], check=True)
    d.get(ORIGIN + "/jobs/" + os.environ["JOB_DONE"])
    # The page redraws as the job's stream answers: read the element inside the wait.
    wait(d, "an untrusted proof with the trust command",
         lambda: "git gatos keys trust ed25519:" in d.find_element(By.CSS_SELECTOR, "[data-proof=untrusted]").text)
    shot(d, "job-untrusted")
    step("a valid proof by a key no longer trusted shows the key and the command that trusts it")

    # Logout ends the session.
    d.get(ORIGIN + "/overview")
    wait(d, "the logout button", lambda: d.find_element(By.ID, "logout").is_displayed())
    d.find_element(By.ID, "logout").click()
    wait(d, "the sign-in page", lambda: "git gatos dashboard" in text(d))
    d.get(ORIGIN + "/jobs")
    wait(d, "signed out", lambda: "git gatos dashboard" in text(d))
    step("logged out: the session no longer reads")


def past_second(t):
    """Waits until the wall clock is past the RFC 3339 time `t` (a commit made then has a later time)."""
    from datetime import datetime, timezone
    then = datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    deadline = time.time() + DEADLINE
    while time.time() < then + 1:
        assert time.time() < deadline, "the clock did not move"
        time.sleep(0.05)


def claim(job, worker, lease):
    queue = api(f"/api/v1/jobs/{job}")["queue"]
    return api("/api/v1/claims", "POST", {"worker": worker, "worker_key": os.environ["WORKER_KEY"], "id": job,
                                          "queues": [queue], "lease": lease})


def heartbeat(job, c, lease):
    return api(f"/api/v1/jobs/{job}/attempts/{c['attempt']}/heartbeat", "POST",
               {"worker": c["worker"], "lease_token": c["lease_token"], "lease": lease})


def kinds(d):
    return [li.get_attribute("data-kind") for li in d.find_elements(By.CSS_SELECTOR, "ol.timeline li")]


def claims(d):
    """Issue #19's claim holders with their last heartbeat, the timeline of a takeover, and
    the refs a sync rejected, in the browser; every change seen without a reload."""
    sign_in(d)
    rejected = os.environ["REJECTED_REF"]
    wait(d, "the rejected ref on the overview", lambda: rejected in d.find_element(By.ID, "rejected").text)
    assert "InvalidEnvelope" in d.find_element(By.ID, "rejected").text
    shot(d, "overview-rejected")
    step("the overview names the ref a sync rejected, with its code")

    # The jobs table names each job's enqueuer; the name filters the table.
    d.get(ORIGIN + "/jobs")
    wait(d, "the enqueuer column", lambda: d.find_element(By.CSS_SELECTOR, f"tr[data-id='{os.environ['JOB_HB']}'] td.enqueuer").text == "cli:gatos")
    assert d.find_element(By.CSS_SELECTOR, f"tr[data-id='{os.environ['JOB_HB']}'] td.enqueuer a").get_attribute("title").endswith("(trusted here)")
    d.find_element(By.CSS_SELECTOR, f"tr[data-id='{os.environ['JOB_HB']}'] td.enqueuer a").click()
    wait(d, "the enqueuer filter in the URL", lambda: "enqueuer=cli%3Agatos" in d.current_url)
    wait(d, "the filtered table", lambda: len(d.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")) >= 2)
    shot(d, "jobs-enqueuer")
    step("the jobs table names each job's enqueuer, and a click filters by it")
    d.get(ORIGIN + "/overview")

    # A running job's holder and last heartbeat; a heartbeat moves it without a reload.
    hb_job = os.environ["JOB_HB"]
    d.execute_script("window.__noReload = true")
    c = claim(hb_job, "worker-hb", "6s")
    row = f"tr[data-job='{hb_job}']"
    wait(d, "the claim on the overview", lambda: d.find_element(By.CSS_SELECTOR, f"{row} td.holder").text == "worker-hb")
    first = wait(d, "its last heartbeat", lambda: d.find_element(By.CSS_SELECTOR, f"{row} td.hb").get_attribute("data-at"))
    cell = d.find_element(By.CSS_SELECTOR, f"{row} td.hb time")
    assert cell.get_attribute("title").endswith(" UTC"), cell.get_attribute("title")
    past_second(first)
    heartbeat(hb_job, c, "6s")
    second = wait(d, "the next heartbeat on the overview",
                  lambda: (lambda v: v if v and v != first else None)(d.find_element(By.CSS_SELECTOR, f"{row} td.hb").get_attribute("data-at")))
    assert second > first, (first, second)
    assert d.execute_script("return window.__noReload === true"), "the page was reloaded"
    shot(d, "overview-claims")
    step(f"the overview shows worker-hb's last heartbeat, and it moved from {first} to {second} without a reload")

    # A takeover: worker-a claims, sends a heartbeat, lets its lease run out; worker-b takes
    # over while the job's page is open.
    job = os.environ["JOB_TAKE"]
    a = claim(job, "worker-a", "2s")
    past_second(api(f"/api/v1/jobs/{job}")["claim"]["last_heartbeat_at"])
    heartbeat(job, a, "3s")
    d.get(ORIGIN + "/jobs/" + job)
    d.execute_script("window.__noReload = true")
    # (Once a's lease has run out the timeline says so too.)
    wait(d, "a's claim and heartbeat", lambda: kinds(d)[:3] == ["enqueued", "claimed", "heartbeat"])
    deadline = time.time() + DEADLINE
    while api(f"/api/v1/jobs/{job}")["state"] == "running":
        assert time.time() < deadline, "the lease never ran out"
        time.sleep(0.1)
    b = claim(job, "worker-b", "6s")
    assert b["attempt"] == 2, b
    wait(d, "the takeover in the timeline", lambda: kinds(d) == ["enqueued", "claimed", "heartbeat", "takeover"])
    take = d.find_element(By.CSS_SELECTOR, "li[data-kind=takeover]").text
    assert "attempt 2 taken over by worker-b from worker-a (attempt 1)" in take and "lease expired" in take, take
    past_second(api(f"/api/v1/jobs/{job}")["claim"]["last_heartbeat_at"])
    heartbeat(job, b, "6s")
    wait(d, "b's heartbeat, live", lambda: kinds(d) == ["enqueued", "claimed", "heartbeat", "takeover", "heartbeat"])
    last = d.find_elements(By.CSS_SELECTOR, "li[data-kind=heartbeat]")[-1].text
    assert "from worker-b (attempt 2)" in last, last
    assert d.execute_script("return window.__noReload === true"), "the page was reloaded"
    shot(d, "job-takeover")
    step("the job's timeline: a's claim and heartbeat, b's takeover (a's lease expired), b's heartbeat live")

    # A proof that no longer covers what its result commit holds: invalid, with why.
    bad = os.environ["JOB_BAD"]
    d.get(ORIGIN + "/jobs/" + bad)
    wait(d, "an invalid proof with its reason",
         lambda: "DigestMismatch" in d.find_element(By.CSS_SELECTOR, "[data-proof=invalid]").text)
    verdict = d.find_element(By.CSS_SELECTOR, "[data-proof=invalid]").text
    assert "Invalid" in verdict and "logs/stdout" in verdict, verdict
    assert not d.find_elements(By.CSS_SELECTOR, "[data-proof=verified]")
    shot(d, "job-invalid")
    step(f"a tampered job's proof is shown invalid: {verdict.splitlines()[0]}")

    # The daemon's own sync (--sync hub) meets a new forged ref: the overview names it
    # without a reload.
    d.get(ORIGIN + "/overview")
    wait(d, "the first rejected ref", lambda: rejected in d.find_element(By.ID, "rejected").text)
    d.execute_script("window.__noReload = true")
    another = "refs/gatos/jobs/01KBQ0000000000000000001ZZ/job"
    subprocess.run(["git", "--git-dir", os.environ["HUB"], "update-ref", another, os.environ["JUNK"]], check=True)
    wait(d, "the new rejected ref, live", lambda: another in d.find_element(By.ID, "rejected").text)
    assert d.execute_script("return window.__noReload === true"), "the page was reloaded"
    step("a ref the daemon's own sync rejected appeared on the overview without a reload")


def gatos(*args):
    subprocess.run(["git", "gatos", *args], check=True, stdout=subprocess.DEVNULL)


def no_reload(d):
    d.execute_script("window.__noReload = true")


def not_reloaded(d):
    assert d.execute_script("return window.__noReload === true"), "the page was reloaded"


def cell(d, css):
    found = d.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def loose(d):
    """The overview's count of loose objects (None before it is drawn)."""
    lines = d.find_element(By.ID, "maintenance").text.splitlines()
    for name, value in zip(lines, lines[1:]):
        if name == "Loose objects" and " of " in value:
            return int(value.split()[0])
    return None


def pages(d):
    """Issue #19's other screens live: topics, consumer groups, maintenance debt,
    manifests, keys and the audit trail follow what other processes write, without a
    reload (the daemon's `event: changed` on the one shared stream)."""
    sign_in(d)
    topic = "orders.live"

    d.get(ORIGIN + "/topics")
    wait(d, "the topics page", lambda: d.find_elements(By.CSS_SELECTOR, f"tr[data-topic='{os.environ['TOPIC']}']"))
    no_reload(d)
    gatos("messages", "publish", topic, "--data", '{"n": 1}')
    wait(d, "a new topic, live", lambda: cell(d, f"tr[data-topic='{topic}'] td.count") == "1")
    gatos("messages", "publish", topic, "--data", '{"n": 2}')
    wait(d, "its second message, live", lambda: cell(d, f"tr[data-topic='{topic}'] td.last-seq") == "2")
    not_reloaded(d)
    shot(d, "topics-live")
    step("the topics page showed a topic another process created, then its next message, without a reload")

    d.get(ORIGIN + "/overview")
    wait(d, "the consumer groups", lambda: "No consumer group." in d.find_element(By.ID, "groups").text)
    no_reload(d)
    gatos("messages", "consume", "billing", topic)
    wait(d, "the new group, caught up", lambda: cell(d, f"tr[data-group='billing'][data-topic='{topic}'] td.lag") == "0")
    gatos("messages", "publish", topic, "--data", '{"n": 3}')
    wait(d, "its lag, live", lambda: cell(d, f"tr[data-group='billing'][data-topic='{topic}'] td.lag") == "1")
    step("the overview showed a new consumer group, then its lag grow, without a reload")

    # The throughput charts count a job that ends elsewhere, live.
    ended = int(wait(d, "the charts", lambda: d.find_element(By.CSS_SELECTOR, ".charts").get_attribute("data-ended")))
    gatos("jobs", "enqueue", "--no-checkout", "--queue", "chart", "--", "true")
    gatos("worker", "--drain", "--queue", "chart")
    wait(d, "the ended job in the last hour's chart",
         lambda: int(d.find_element(By.CSS_SELECTOR, ".charts").get_attribute("data-ended") or 0) > ended)
    not_reloaded(d)
    step(f"the throughput chart counted a job a worker ended elsewhere ({ended} → {ended + 1}), without a reload")

    # Loose objects (plain git writes them; gatos may have packed its own), then a
    # maintenance run by another process packs them.
    for i in range(3):
        subprocess.run(["git", "hash-object", "-w", "--stdin"], input=f"loose {i} {time.time()}".encode(),
                       check=True, stdout=subprocess.DEVNULL)
    before = wait(d, "loose objects on the overview", lambda: (lambda n: n if n else None)(loose(d)))
    gatos("maintenance")
    # (A string: 0 loose objects is the likely answer, and a wait ends only on a true value.)
    after = wait(d, "the debt after maintenance", lambda: (lambda n: str(n) if n is not None and n < before else None)(loose(d)))
    not_reloaded(d)
    shot(d, "overview-maintenance")
    step(f"the overview's maintenance debt fell from {before} to {after} loose objects when maintenance ran elsewhere")

    d.get(ORIGIN + "/manifests")
    wait(d, "the manifests page", lambda: "Manifests" in text(d))
    no_reload(d)
    first = os.path.join(os.getcwd(), "nightly-1.yaml")
    with open(first, "w") as f:
        f.write("command: [echo, one]\nqueue: nightly\n")
    gatos("manifests", "put", "nightly", first)
    wait(d, "a new manifest, live", lambda: cell(d, "tr[data-manifest='nightly'] td.version") == "1")
    with open(first, "w") as f:
        f.write("command: [echo, two]\nqueue: nightly\n")
    gatos("manifests", "put", "nightly", first)
    wait(d, "its second version, live", lambda: cell(d, "tr[data-manifest='nightly'] td.version") == "2")
    not_reloaded(d)
    d.get(ORIGIN + "/manifests/nightly")
    wait(d, "the manifest's page", lambda: "Latest version 2" in d.find_element(By.ID, "latest").text)
    no_reload(d)
    with open(first, "w") as f:
        f.write("command: [echo, three]\nqueue: nightly\n")
    gatos("manifests", "put", "nightly", first)
    wait(d, "version 3 in the header", lambda: "Latest version 3" in d.find_element(By.ID, "latest").text)
    options = [o.text for o in d.find_elements(By.CSS_SELECTOR, "select#b option")]
    assert options == ["v1", "v2", "v3"], options
    not_reloaded(d)
    step("the manifests list and a manifest's page gained new versions without a reload")

    other = os.environ["OTHER_KEY"]
    d.get(ORIGIN + "/keys")
    wait(d, "the keys page", lambda: "Keys this node knows" in text(d))
    assert not d.find_elements(By.CSS_SELECTOR, f"tr[data-key='{other}']"), "the other key is known already"
    no_reload(d)
    gatos("keys", "trust", other)
    wait(d, "the trusted key, live", lambda: cell(d, f"tr[data-key='{other}'] td.trusted") == "yes")
    not_reloaded(d)
    shot(d, "keys-live")
    step("the keys page showed a key trusted by another process without a reload")

    d.get(ORIGIN + "/audit")
    wait(d, "the audit page", lambda: "Audit trail" in text(d))
    no_reload(d)
    job = os.environ["JOB_CANCEL"]
    api(f"/api/v1/jobs/{job}/cancel", "POST", {})
    wait(d, "the cancel on the audit page, live",
         lambda: any(job in r.text for r in d.find_elements(By.CSS_SELECTOR, "tr[data-ulid]")
                     if r.find_element(By.CSS_SELECTOR, "td.action").text == "jobs.cancel"))
    not_reloaded(d)
    shot(d, "audit-live")
    step("the audit trail showed a cancel made through the API without a reload")

    # Seven tabs, each tailing the topic or following a job: with a stream per page they
    # would need eight connections, two more than HTTP/1.1 gives an origin, and the last
    # tabs' requests would wait forever. Their follows ride on the one shared stream.
    count_sources = ("window.__sources = 0; const ES = window.EventSource;"
                     "window.EventSource = function (...a) { window.__sources += 1; return new ES(...a); };")
    worker = subprocess.Popen(["git", "gatos", "worker", "--once", "--queue", "live", "--sandbox-allow-write", os.environ["SHARED"]],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        many_tabs(d, topic, count_sources)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    step("seven tabs tailing a topic or following a running job's log, all live over one stream, and requests still answered")


def many_tabs(d, topic, count_sources):
    tabs = []
    for i in range(7):
        d.switch_to.new_window("tab")
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": count_sources})
        d.get(ORIGIN + (f"/topics/{topic}" if i % 2 == 0 else f"/jobs/{os.environ['JOB_RUN']}"))
        shot(d, f"tab-{i}")
        tabs.append((d.current_window_handle, i % 2 == 0))
        if i % 2 == 0:
            wait(d, "the tail", lambda: d.find_elements(By.CSS_SELECTOR, "#tail tr[data-seq='3']"))
        else:
            wait(d, "the job's first line", lambda: "first line" in d.find_element(By.CSS_SELECTOR, "pre.log").text)
    gatos("messages", "publish", topic, "--data", '{"n": 4}')
    for handle, tail in tabs:
        d.switch_to.window(handle)
        if tail:
            wait(d, "message 4 in every tail", lambda: d.find_elements(By.CSS_SELECTOR, "#tail tr[data-seq='4']"))
        assert d.execute_script("return window.__sources") == 0, "a page opened a stream of its own"
    # The running job's log reaches every tab that follows it.
    with open(os.environ["GO"], "w"):
        pass
    for handle, tail in tabs:
        d.switch_to.window(handle)
        if not tail:
            wait(d, "the job's second line in every tab", lambda: "second line" in d.find_element(By.CSS_SELECTOR, "pre.log").text)
            wait(d, "its end in every tab", lambda: "succeeded" in d.find_element(By.ID, "job-state").text)
    d.get(ORIGIN + "/overview")
    wait(d, "the overview in the eighth page", lambda: "Queues" in text(d) and "Consumer groups" in text(d))


def without_shared_worker(d):
    # The next page of this tab has no SharedWorker: the tabs elect a leader instead.
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.SharedWorker;"})


def read_only(d):
    without_shared_worker(d)
    sign_in(d)
    wait(d, "the leader's stream", lambda: d.find_element(By.ID, "live").text == "live")
    d.switch_to.new_window("tab")
    without_shared_worker(d)
    d.get(ORIGIN + "/jobs")
    wait(d, "the follower tab", lambda: d.find_element(By.ID, "live").text == "live")
    assert d.execute_script("return typeof SharedWorker") == "undefined"
    streams = api("/api/v1/health")["subscriptions"]
    assert streams == 1, f"{streams} streams for two tabs"
    subprocess.run(["git", "gatos", "jobs", "enqueue", "--no-checkout", "--", "true"], check=True, stdout=subprocess.DEVNULL)
    wait(d, "the new job's event in the follower tab", lambda: "1 new job" in text(d))
    step("without SharedWorker: two tabs, one stream (a BroadcastChannel leader), events reach the follower")
    job = os.environ["JOB_CANCEL"]
    d.get(ORIGIN + "/jobs/" + job)
    wait(d, "the job page", lambda: "pending" in d.find_element(By.ID, "job-state").text)
    assert not d.find_elements(By.XPATH, "//button[text()='Cancel job']"), "an action shown in read-only mode"
    d.get(ORIGIN + "/jobs")
    wait(d, "the jobs table", lambda: len(d.find_elements(By.CSS_SELECTOR, "table.grid tbody tr")) >= 1)
    assert not d.find_elements(By.CSS_SELECTOR, ".bulk button"), "bulk actions shown in read-only mode"
    status = same_origin_post(d, f"/api/v1/jobs/{job}/cancel")
    assert status == 403, f"a read-only daemon answered {status} to a cancel"
    assert api(f"/api/v1/jobs/{job}")["state"] == "pending"
    shot(d, "read-only")
    step("a read-only daemon hides actions and refuses them (403)")


def main():
    d, profile = browser()
    try:
        {"full": full, "read_only": read_only, "claims": claims, "pages": pages}[MODE](d)
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
