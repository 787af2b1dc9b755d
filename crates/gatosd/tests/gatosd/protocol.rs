//! JSON-RPC 2.0 conformance: the specification's examples and DESIGN §6's edge rules.

use gatos_testutil::TestResult;
use serde_json::json;

use crate::harness::Daemon;

fn code(v: &serde_json::Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specification_examples_behave_as_specified() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.client().await?;
    // Invalid JSON.
    c.send_raw(b"{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]\n")
        .await?;
    let r = c.recv().await?.unwrap();
    assert_eq!((code(&r), r["id"].clone()), (-32700, json!(null)));
    assert_eq!(
        r["error"]["data"],
        json!({"code": "InvalidInput", "status": 400})
    );
    // Invalid request object.
    c.send_raw(b"{\"jsonrpc\": \"2.0\", \"method\": 1, \"params\": \"bar\"}\n")
        .await?;
    let r = c.recv().await?.unwrap();
    assert_eq!((code(&r), r["id"].clone()), (-32600, json!(null)));
    // Batch, invalid JSON.
    c.send_raw(b"[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},{\"jsonrpc\": \"2.0\", \"method\"]\n").await?;
    assert_eq!(code(&c.recv().await?.unwrap()), -32700);
    // Empty batch: one error, not an array.
    c.send_raw(b"[]\n").await?;
    let r = c.recv().await?.unwrap();
    assert!(r.is_object());
    assert_eq!(code(&r), -32600);
    // [1] and [1,2,3]: arrays of invalid-request errors.
    c.send_raw(b"[1]\n").await?;
    let r = c.recv().await?.unwrap();
    assert_eq!(r.as_array().map(Vec::len), Some(1));
    assert_eq!(code(&r[0]), -32600);
    c.send_raw(b"[1,2,3]\n").await?;
    let r = c.recv().await?.unwrap();
    assert_eq!(r.as_array().map(Vec::len), Some(3));
    // A mixed batch: requests answered (in order), notifications not, errors for junk.
    c.send(&json!([
        {"jsonrpc": "2.0", "method": "gatos.version", "id": "1"},
        {"jsonrpc": "2.0", "method": "gatos.version"},
        {"jsonrpc": "2.0", "method": "topics.list", "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "gatos.health", "id": "9"}
    ]))
    .await?;
    let r = c.recv().await?.unwrap();
    let arr = r.as_array().ok_or("an array")?;
    assert_eq!(arr.len(), 5);
    assert_eq!(arr[0]["id"], "1");
    assert!(arr[0]["result"]["version"].is_string());
    assert_eq!(arr[1]["id"], "2");
    assert_eq!((code(&arr[2]), arr[2]["id"].clone()), (-32600, json!(null)));
    assert_eq!((code(&arr[3]), arr[3]["id"].clone()), (-32601, json!("5")));
    assert_eq!(arr[4]["result"]["status"], "ok");
    // An all-notification batch is answered with nothing: the next line is the next answer.
    c.send(&json!([{"jsonrpc": "2.0", "method": "gatos.version"}, {"jsonrpc": "2.0", "method": "gatos.version"}])).await?;
    let r = c.call("gatos.version", json!({})).await?;
    assert!(
        c.pending.is_empty(),
        "nothing came back for the notification batch"
    );
    assert!(r["result"].is_object());
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_rules_of_design_section_6_hold() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.client().await?;
    // "id": null is a request and is answered with id null.
    c.send(&json!({"jsonrpc": "2.0", "method": "gatos.version", "id": null}))
        .await?;
    let r = c.recv().await?.unwrap();
    assert_eq!(r["id"], json!(null));
    assert!(r["result"].is_object());
    // Positional params.
    let r = c.call("messages.read", json!(["t"])).await?;
    assert_eq!(code(&r), -32602);
    // Unknown members and wrong types.
    assert_eq!(
        code(
            &c.call("messages.read", json!({"topic": "t", "bogus": 1}))
                .await?
        ),
        -32602
    );
    assert_eq!(
        code(&c.call("messages.read", json!({"topic": 5})).await?),
        -32602
    );
    assert_eq!(
        code(
            &c.call("messages.read", json!({"topic": "Bad Name"}))
                .await?
        ),
        -32602
    );
    // Taxonomy errors: -32000 with data.code and status.
    let r = c
        .call(
            "messages.read",
            json!({"topic": "t", "since": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        )
        .await?;
    assert_eq!(code(&r), -32000);
    assert_eq!(
        r["error"]["data"],
        json!({"code": "NotFound", "status": 404})
    );
    c.ok("messages.publish", json!({"topic": "t", "payload": 1}))
        .await?;
    let r = c
        .call(
            "messages.publish",
            json!({"topic": "t", "payload": 2, "expect_last_seq": 7}),
        )
        .await?;
    assert_eq!(r["error"]["data"]["code"], "Conflict");
    // The gatos.* topics are written by gatos alone: a client cannot forge an audit record.
    for method in ["messages.publish", "messages.publish_batch"] {
        let params = if method == "messages.publish" {
            json!({"topic": "gatos.audit", "payload": {"action": "keys.trust"}})
        } else {
            json!({"topic": "gatos.jobs", "messages": [{"payload": 1}]})
        };
        let r = c.call(method, params).await?;
        assert_eq!(r["error"]["data"]["code"], "Forbidden", "{method}: {r}");
    }
    // A subscribe sent as a notification is not run.
    c.send(&json!({"jsonrpc": "2.0", "method": "messages.subscribe", "params": {"topic": "t"}}))
        .await?;
    let h = c.ok("gatos.health", json!({})).await?;
    assert_eq!(h["subscriptions"], 0);
    assert!(c.pending.is_empty());
    // A publish sent as a notification is run, silently.
    c.send(&json!({"jsonrpc": "2.0", "method": "messages.publish", "params": {"topic": "t", "payload": 3}})).await?;
    let mut seen = 0;
    for _ in 0..200 {
        let page = c.ok("messages.read", json!({"topic": "t"})).await?;
        seen = page["messages"].as_array().map_or(0, Vec::len);
        if seen == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 2);
    // Wrong jsonrpc version; id of a wrong type.
    c.send(&json!({"jsonrpc": "1.0", "method": "gatos.version", "id": 1}))
        .await?;
    assert_eq!(code(&c.recv().await?.unwrap()), -32600);
    c.send(&json!({"jsonrpc": "2.0", "method": "gatos.version", "id": [1]}))
        .await?;
    let r = c.recv().await?.unwrap();
    assert_eq!((code(&r), r["id"].clone()), (-32600, json!(null)));
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_method_round_trips() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.client().await?;
    let p = c
        .ok(
            "messages.publish",
            json!({"topic": "m", "payload": {"b": 1, "a": [true]}, "headers": {"msg_id": "x"}}),
        )
        .await?;
    assert_eq!(p["seq"], 1);
    assert_eq!(p["duplicate"], false);
    let dup = c
        .ok(
            "messages.publish",
            json!({"topic": "m", "payload": 0, "headers": {"msg_id": "x"}}),
        )
        .await?;
    assert_eq!(
        (dup["duplicate"].clone(), dup["ulid"].clone()),
        (json!(true), p["ulid"].clone())
    );
    let b = c
        .ok("messages.publish_batch", json!({"topic": "m", "messages": [{"payload": 1}, {"payload": 2, "headers": {"msg_id": "y"}}]}))
        .await?;
    assert_eq!(b["landed"], 2);
    assert_eq!(b["results"][1]["seq"], 3);
    let page = c
        .ok(
            "messages.read",
            json!({"topic": "m", "since_seq": 1, "limit": 1}),
        )
        .await?;
    assert_eq!(page["messages"][0]["seq"], 2);
    assert_eq!(page["end"], false);
    assert_eq!(page["next_since"], page["messages"][0]["ulid"]);
    let first = c.ok("messages.read", json!({"topic": "m"})).await?;
    assert_eq!(
        first["messages"][0]["payload"],
        json!({"a": [true], "b": 1})
    );
    assert_eq!(first["messages"][0]["headers"], json!({"msg_id": "x"}));
    let too_many = c
        .call("messages.read", json!({"topic": "m", "limit": 10001}))
        .await?;
    assert_eq!(too_many["error"]["data"]["code"], "InvalidInput");
    let both = c
        .call(
            "messages.read",
            json!({"topic": "m", "since": p["ulid"], "since_seq": 1}),
        )
        .await?;
    assert_eq!(code(&both), -32602);
    let cp = c
        .ok(
            "checkpoints.set",
            json!({"group": "g", "topic": "m", "ulid": p["ulid"]}),
        )
        .await?;
    assert_eq!((cp["seq"].clone(), cp["lag"].clone()), (json!(1), json!(2)));
    let back = c
        .call(
            "checkpoints.set",
            json!({"group": "g", "topic": "m", "ulid": p["ulid"]}),
        )
        .await?;
    assert!(
        back["result"].is_object(),
        "setting it where it is changes nothing"
    );
    let got = c
        .ok("checkpoints.get", json!({"group": "g", "topic": "m"}))
        .await?;
    assert_eq!(got["ulid"], p["ulid"]);
    let topics = c.ok("topics.list", json!({})).await?;
    assert_eq!(topics["topics"][0]["topic"], "m");
    assert_eq!(topics["topics"][0]["last_seq"], 3);
    let h = c.ok("gatos.health", json!({})).await?;
    assert_eq!(h["connections"], 1);
    assert!(h["repository"].as_str().unwrap().ends_with(".git"));
    // On the Unix socket gatos.auth checks the token (it opens writes; ADR 0023).
    let auth = c.call("gatos.auth", json!({"token": "anything"})).await?;
    assert_eq!(auth["error"]["data"]["code"], "Unauthorized");
    let auth = c.ok("gatos.auth", json!({"token": d.token})).await?;
    assert_eq!(auth["authenticated"], true);
    let repo = d.stop().await?;
    repo.assert_fsck_strict()
}

/// A publish pipelined right behind `gatos.auth` on the Unix socket is checked after the
/// authentication it follows, as the client means: both are answered by the connection's
/// reader in order (a quick call and `gatos.auth` run there, ADR 0046 session 14), so the
/// publish is not refused as unauthenticated; and one sent before it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_pipelined_behind_gatos_auth_is_checked_after_it() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.anon_client().await?;
    let token = std::fs::read_to_string(&d.token_file)?;
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "messages.publish", "params": {"topic": "t", "payload": 0}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "gatos.auth", "params": {"token": token.trim_end()}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "messages.publish", "params": {"topic": "t", "payload": 1}}),
    ];
    let mut bytes = Vec::new();
    for l in &lines {
        bytes.extend(serde_json::to_vec(l)?);
        bytes.push(b'\n');
    }
    c.send_raw(&bytes).await?;
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 3 {
        let v = c.recv().await?.ok_or("connection closed")?;
        answers.insert(v["id"].as_u64().ok_or("an id")?, v);
    }
    assert_eq!(
        answers[&1]["error"]["data"]["code"], "Unauthorized",
        "{:?}",
        answers[&1]
    );
    assert_eq!(
        answers[&2]["result"]["authenticated"], true,
        "{:?}",
        answers[&2]
    );
    assert_eq!(answers[&3]["result"]["seq"], 1, "{:?}", answers[&3]);
    let page = c.ok("messages.read", json!({"topic": "t"})).await?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    d.stop().await?;
    Ok(())
}
