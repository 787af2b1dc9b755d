#!/usr/bin/env python3
"""Drives `gatosd mcp --stdio` with the official Python MCP SDK (`mcp`, pinned in
scripts/requirements.txt): an MCP client that shares no code with gatos (issue #20, ADR 0043).

Usage: mcp_client.py GATOSD REPO MODE JOB_MANIFEST [URL TOKEN RO_TOKEN]
  MODE is `legacy` (the initialize handshake; the SDK negotiates 2025-11-25), `auto`
  (server/discover first; the SDK picks 2026-07-28) or `2026-07-28` (per-request _meta from
  the first request; no handshake). JOB_MANIFEST names a registered
  manifest to run. With URL (`http://ADDR/mcp` of `gatosd --http`), the sessions use the
  SDK's Streamable HTTP client with `Authorization: Bearer TOKEN` (RO_TOKEN, a token marked
  `ro`, stands for --read-only) instead of starting `gatosd mcp --stdio`; that daemon runs
  with --mcp-deny-tools doctor.check (the stdio sessions deny it in the read-only one).

Three sessions: the default offer (jobs.enqueue withheld), every tool allowed (each tool
called, resources read, a subscription notified), and --read-only. Prints one JSON line of
facts for the Rust test, then `ok`; any failed expectation raises (exit status 1).
"""

import json
import sys

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

GATOSD, REPO, MODE, MANIFEST = sys.argv[1:5]
URL, TOKEN, RO_TOKEN = (sys.argv[5:8] + [None, None, None])[:3]
HTTP = URL is not None
WAIT = 15  # seconds: the longest the script waits for a notification


def server(*flags):
    if HTTP:
        token = RO_TOKEN if "--read-only" in flags else TOKEN
        headers = {"Authorization": f"Bearer {token}"}
        return streamable_http_client(URL, http_client=httpx2.AsyncClient(headers=headers))
    return StdioServerParameters(
        command=GATOSD, args=["mcp", "--stdio", "--repo", REPO, *flags], cwd=REPO
    )


def client(params, **kw):
    return Client(
        params,
        mode=MODE,
        client_info=Implementation(name="py-sdk-test", version="1"),
        read_timeout_seconds=60,
        **kw,
    )


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def era(c):
    want = {"legacy": "2025-11-25", "auto": "2026-07-28"}.get(MODE, MODE)
    check(c.protocol_version == want, f"negotiated {c.protocol_version}, wanted {want}")


async def ok(c, name, args):
    r = await c.call_tool(name, args)
    check(not r.is_error, f"{name} {args}: {r.content}")
    check(isinstance(r.structured_content, dict), f"{name}: structured content")
    return r.structured_content


async def err(c, name, args):
    r = await c.call_tool(name, args)
    check(r.is_error, f"{name} {args} should fail: {r.structured_content}")
    e = r.structured_content["error"]
    check(e["hint"] and e["message"], f"{name}: hint and message")
    return e["code"]


async def malformed(c, name, args):
    try:
        await c.call_tool(name, args)
    except MCPError as e:
        check(e.code == -32602, f"{name}: code {e.code}")
        check(e.data["code"] == "InvalidInput", f"{name}: data {e.data}")
        return e.message
    raise AssertionError(f"{name} {args} should be a JSON-RPC error")


async def default_session(facts):
    async with client(server()) as c:
        era(c)
        tools = (await c.list_tools()).tools
        names = [t.name for t in tools]
        check("jobs.enqueue" not in names, "jobs.enqueue is opt-in")
        by = {t.name: t for t in tools}
        check(by["messages.read"].annotations.read_only_hint is True, "read hint")
        check(by["jobs.cancel"].annotations.destructive_hint is True, "destructive hint")
        check(by["messages.publish"].annotations.read_only_hint is False, "write hint")
        check(by["messages.publish"].annotations.idempotent_hint is True, "msg_id")
        for t in tools:
            check(t.input_schema.get("type") == "object", f"{t.name} input schema")
            check(t.output_schema and t.output_schema.get("type") == "object", t.name)
        facts["tools"] = names
        facts["enqueue_refused"] = await err(c, "jobs.enqueue", {"command": ["true"]})


async def full_session(facts, all_tools):
    updates = []

    async def on_message(m):
        root = getattr(m, "root", m)
        if getattr(root, "method", None) == "notifications/resources/updated":
            updates.append(root.params.uri)

    kw = {"message_handler": on_message} if MODE == "legacy" else {}
    allow = ",".join(all_tools + ["jobs.enqueue"])
    async with client(server("--allow-tools", allow), **kw) as c:
        era(c)
        names = [t.name for t in (await c.list_tools()).tools]
        # /mcp offers what gatosd offers: never the opt-in jobs.enqueue.
        check(("jobs.enqueue" in names) != HTTP, "jobs.enqueue listed only when allowed")
        called = set()

        async def call(name, args):
            called.add(name)
            return await ok(c, name, args)

        first = await call(
            "messages.publish", {"topic": "mcp.t", "payload": {"n": 1}, "headers": {"msg_id": "k1"}}
        )
        again = await call(
            "messages.publish", {"topic": "mcp.t", "payload": {"n": 1}, "headers": {"msg_id": "k1"}}
        )
        check(again["duplicate"] is True and again["ulid"] == first["ulid"], "idempotency key")
        page = await call("messages.read", {"topic": "mcp.t"})
        check(len(page["messages"]) == 1, f"one message: {page}")
        # A read with wait_ms: an empty page waits (bounded) for the next message.
        after = {"topic": "mcp.t", "since": page["next_since"]}
        with anyio.fail_after(WAIT):
            empty = await call("messages.read", {**after, "wait_ms": 200})
        check(empty["messages"] == [], f"nothing new: {empty}")
        waited = {}

        async def reader():
            waited["page"] = await call("messages.read", {**after, "wait_ms": 30000})

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await call("messages.publish", {"topic": "mcp.t", "payload": {"n": 2}})
        check([m["payload"] for m in waited["page"]["messages"]] == [{"n": 2}], f"{waited}")
        facts["read_wait_type"] = await malformed(c, "messages.read", {**after, "wait_ms": "x"})
        topics = await call("topics.list", {})
        check(any(t["topic"] == "mcp.t" for t in topics["topics"]), "topic listed")
        called.add("checkpoints.get")
        r = await c.call_tool("checkpoints.get", {"topic": "mcp.t", "group": "g"})
        check(not r.is_error or r.structured_content["error"]["code"] == "NotFound", str(r))
        await call("checkpoints.list", {})
        ms = await call("manifests.list", {})
        check(any(m["name"] == MANIFEST for m in ms["manifests"]), f"manifest listed: {ms}")
        await call("manifests.get", {"name": MANIFEST})
        run = await call("manifests.run", {"name": MANIFEST})
        job = run["id"]
        row = await call("jobs.get", {"id": job})
        check(row["state"] == "pending", f"pending: {row}")
        listed = await call("jobs.list", {})
        check(any(j["id"] == job for j in listed["jobs"]), "job listed")
        waited = await call("jobs.wait", {"id": job, "timeout_ms": 300})
        check(waited["done"] is False, "no worker: the wait times out")
        called.add("jobs.logs")
        r = await c.call_tool("jobs.logs", {"id": job})
        facts["logs_unrun"] = r.structured_content["error"]["code"] if r.is_error else "read"
        called.add("jobs.verify")
        r = await c.call_tool("jobs.verify", {"id": job})
        facts["verify_unrun"] = (
            r.structured_content["error"]["code"] if r.is_error else r.structured_content
        )

        # A job state change reaches a subscriber of gatos://jobs/{id}; a new message one of
        # gatos://topics/{topic}.
        job_uri, topic_uri = f"gatos://jobs/{job}", "gatos://topics/mcp.t"

        async def changes(expected, act):
            if MODE == "legacy":
                await c.subscribe_resource(expected)
                await act()
                with anyio.fail_after(WAIT):
                    while expected not in updates:
                        await anyio.sleep(0.05)
                await c.unsubscribe_resource(expected)
            else:
                async with c.listen(resource_subscriptions=[expected]) as sub:
                    check(expected in (sub.honored.resource_subscriptions or []), "honored")
                    await act()
                    with anyio.fail_after(WAIT):
                        async for event in sub:
                            if getattr(event, "uri", None) == expected:
                                break
            return True

        async def cancel():
            await call("jobs.cancel", {"id": job, "reason": "mcp test"})

        async def publish():
            await call("messages.publish", {"topic": "mcp.t", "payload": {"n": 3}})

        facts["job_update"] = await changes(job_uri, cancel)
        facts["topic_update"] = await changes(topic_uri, publish)
        done = await call("jobs.wait", {"id": job, "timeout_ms": 5000})
        check(done["done"] is True and done["job"]["state"] == "cancelled", f"{done}")
        if HTTP:
            check(await err(c, "jobs.enqueue", {"command": ["true"]}) == "Forbidden", "opt-in")
        else:
            enq = await call("jobs.enqueue", {"command": ["true"], "queue": "mcp"})
            check(enq["id"], "enqueued")
        # Durable snapshots (ADR 0044): take one, list it, delete it (audited).
        snap = await call("snapshots.create", {"name": "mcp-pin"})
        check(snap["name"] == "mcp-pin" and snap["state"].startswith("blake3:"), f"{snap}")
        listed = await call("snapshots.list", {})
        check([s["name"] for s in listed["snapshots"]] == ["mcp-pin"], f"{listed}")
        gone = await call("snapshots.delete", {"name": "mcp-pin"})
        check(gone["state"] == snap["state"], f"{gone}")
        check((await call("snapshots.list", {}))["snapshots"] == [], "deleted")
        audit = await call("audit.read", {})
        check(len(audit["records"]) >= 1, f"the cancel is audited: {audit}")
        facts["actor"] = audit["records"][-1].get("actor")
        if "doctor.check" in names:
            await call("doctor.check", {})
        else:  # /mcp in the tests runs with --mcp-deny-tools doctor.check
            facts["doctor_refused"] = await err(c, "doctor.check", {})

        # Resources.
        templates = (await c.list_resource_templates()).resource_templates
        facts["templates"] = sorted(t.uri_template for t in templates)
        resources = [str(r.uri) for r in (await c.list_resources()).resources]
        check(topic_uri in resources and "gatos://audit" in resources, f"{resources}")
        read = await c.read_resource(topic_uri)
        text = json.loads(read.contents[0].text)
        check([m["payload"]["n"] for m in text["messages"]] == [1, 2, 3], f"{text}")
        job_read = json.loads((await c.read_resource(job_uri)).contents[0].text)
        check(job_read["state"] == "cancelled", "job resource")
        try:
            await c.read_resource(f"{job_uri}/logs")
            facts["logs_resource"] = "read"
        except MCPError as e:  # a job that never ran has no log
            facts["logs_resource"] = e.data.get("code") if isinstance(e.data, dict) else e.code
        await c.read_resource("gatos://audit")
        try:
            await c.read_resource("gatos://nothing/here")
            raise AssertionError("an unknown resource should fail")
        except MCPError as e:
            facts["unknown_resource_code"] = e.code

        # Hostile calls: each a clear error, nothing written.
        before = (await ok(c, "topics.list", {}))["topics"]
        facts["unknown_tool"] = await malformed(c, "no.such.tool", {})
        facts["wrong_types"] = await malformed(c, "messages.publish", {"topic": 5, "payload": 1})
        facts["unknown_member"] = await malformed(c, "topics.list", {"path": "/etc/passwd"})
        facts["bad_name"] = await err(c, "jobs.get", {"id": "01J00000000000000000000000"})
        check((await ok(c, "topics.list", {}))["topics"] == before, "nothing written")
        missing = sorted(set(all_tools + ([] if HTTP else ["jobs.enqueue"])) - called)
        check(not missing, f"tools not called: {missing}")
        facts["called"] = sorted(called)


async def read_only_session(facts):
    async with client(server("--read-only", "--deny-tools", "doctor.check")) as c:
        era(c)
        tools = (await c.list_tools()).tools
        check(all(t.annotations.read_only_hint for t in tools), "read tools only")
        check("doctor.check" not in [t.name for t in tools], "denied")
        before = (await ok(c, "messages.read", {"topic": "mcp.t"}))["messages"]
        facts["ro_publish"] = await err(c, "messages.publish", {"topic": "mcp.t", "payload": {}})
        facts["ro_denied"] = await err(c, "doctor.check", {})
        after = (await ok(c, "messages.read", {"topic": "mcp.t"}))["messages"]
        check(before == after, "read-only wrote nothing")


async def main():
    facts = {"mode": MODE}
    await default_session(facts)
    await full_session(facts, facts["tools"])
    await read_only_session(facts)
    print(json.dumps(facts, sort_keys=True))
    print("ok")


anyio.run(main)
