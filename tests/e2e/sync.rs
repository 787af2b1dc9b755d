//! Replication through a hub (DESIGN §5, ADR 0015): real nodes, a real bare hub (and a
//! real `git daemon` on loopback), the real `git-gatos` and `gatosd` binaries.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};
use serde_json::{Value, json};

use crate::support::{finish, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines};

mod crossnode;
mod hostile;

/// A bare hub and nodes that have it as `origin`.
struct Net {
    hub: TempRepo,
    nodes: Vec<TempRepo>,
}

impl Net {
    fn new(n: usize) -> TestResult<Net> {
        let hub = TempRepo::bare()?;
        let url = hub.path().to_string_lossy().into_owned();
        Net::with_url(hub, &url, n)
    }

    fn with_url(hub: TempRepo, url: &str, n: usize) -> TestResult<Net> {
        let mut nodes = Vec::new();
        for _ in 0..n {
            let node = TempRepo::new()?;
            gatos_ok(&node, &["init"])?;
            node.git(&["remote", "add", "origin", url])?;
            nodes.push(node);
        }
        // The nodes of one system trust each other's keys (ADR 0019: a remote job counts
        // only when a trusted key enqueued it).
        let keys: Vec<String> = nodes
            .iter()
            .map(|n| {
                let v: Value =
                    serde_json::from_str(gatos_ok(n, &["keys", "show", "--json"])?.trim())?;
                Ok(v["key"].as_str().ok_or("no key")?.to_owned())
            })
            .collect::<TestResult<_>>()?;
        // (Written as `keys trust` writes it, without its audit record, so that tests of
        // what a sync moves see only their own messages.)
        for (i, n) in nodes.iter().enumerate() {
            for (j, k) in keys.iter().enumerate() {
                if i != j {
                    n.git(&["config", "--add", "gatos.trust", k])?;
                }
            }
        }
        Ok(Net { hub, nodes })
    }

    fn sync(&self, i: usize) -> TestResult<Value> {
        let out = gatos_ok(&self.nodes[i], &["sync", "--json"])?;
        Ok(serde_json::from_str(out.trim())?)
    }

    fn head(&self, i: usize, topic: &str) -> TestResult<Option<String>> {
        self.nodes[i].rev_parse(&format!("refs/gatos/messages/{topic}/head"))
    }

    fn hub_head(&self, topic: &str) -> TestResult<Option<String>> {
        self.hub
            .rev_parse(&format!("refs/gatos/messages/{topic}/head"))
    }
}

/// A topic of segments of two messages with `n` messages (`{prefix}{k}`): its first
/// segments are sealed.
fn sealed_topic(node: &TempRepo, topic: &str, prefix: &str, n: usize) -> TestResult {
    gatos_ok(node, &["messages", "config", topic, "--max-messages", "2"])?;
    for k in 0..n {
        publish(node, topic, &format!("{prefix}{k}"))?;
    }
    Ok(())
}

fn publish(node: &TempRepo, topic: &str, payload: &str) -> TestResult {
    gatos_ok(
        node,
        &[
            "messages",
            "publish",
            topic,
            "--data",
            &json!({ "p": payload }).to_string(),
        ],
    )?;
    Ok(())
}

/// The payloads of a topic, in sequence order, with their seq.
fn read_all(node: &TempRepo, topic: &str) -> TestResult<Vec<(u64, String)>> {
    let out = gatos_ok(
        node,
        &["messages", "read", topic, "--json", "--limit", "10000"],
    )?;
    Ok(json_lines(&out)?
        .into_iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap_or(0),
                m["payload"]["p"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

/// Consumes everything a group has left on a node; returns the payloads delivered.
fn consume_all(node: &TempRepo, group: &str, topic: &str) -> TestResult<Vec<String>> {
    let out = gatos_ok(
        node,
        &[
            "messages", "consume", group, topic, "--json", "--limit", "10000",
        ],
    )?;
    Ok(json_lines(&out)?
        .into_iter()
        .filter_map(|m| m["payload"]["p"].as_str().map(str::to_owned))
        .collect())
}

/// The `id` of a `--json` row.
fn id_of(out: &str) -> TestResult<String> {
    let v: Value = serde_json::from_str(out.trim())?;
    Ok(v["id"].as_str().ok_or("no id")?.to_owned())
}

fn checkpoint_seq(node: &TempRepo, group: &str, topic: &str) -> TestResult<u64> {
    let out = gatos_ok(
        node,
        &["messages", "checkpoint", "get", group, topic, "--json"],
    )?;
    let v: Value = serde_json::from_str(out.trim())?;
    Ok(v["seq"].as_u64().unwrap_or(0))
}

/// Every payload once, and each origin's payloads in their original order.
fn assert_each_once_in_order(read: &[(u64, String)], expected: &[Vec<String>]) {
    let payloads: Vec<&str> = read.iter().map(|(_, p)| p.as_str()).collect();
    let seqs: Vec<u64> = read.iter().map(|(s, _)| *s).collect();
    let want: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(payloads.len(), want, "{payloads:?}");
    let unique: HashSet<&str> = payloads.iter().copied().collect();
    assert_eq!(unique.len(), want, "a message is there twice: {payloads:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq not contiguous: {seqs:?}"
    );
    for mine in expected {
        let order: Vec<&str> = payloads
            .iter()
            .copied()
            .filter(|p| mine.iter().any(|m| m == p))
            .collect();
        let mine: Vec<&str> = mine.iter().map(String::as_str).collect();
        assert_eq!(order, mine, "a node's messages changed order");
    }
}

#[test]
fn diverged_topics_converge_on_three_nodes_and_consumers_miss_nothing() -> TestResult {
    let net = Net::new(3)?;
    let mut written: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (i, w) in written.iter_mut().enumerate() {
        for k in 0..5 {
            let p = format!("n{i}-{k}");
            publish(&net.nodes[i], "t", &p)?;
            w.push(p);
        }
    }
    // Node 1's consumer group reads its own messages before any sync.
    let mut delivered: BTreeSet<String> =
        consume_all(&net.nodes[1], "g", "t")?.into_iter().collect();
    assert_eq!(delivered.len(), 5);

    let first = net.sync(0)?;
    assert_eq!(first["topics"][0]["action"], "pushed", "{first}");
    let second = net.sync(1)?;
    assert_eq!(second["topics"][0]["action"], "reappended", "{second}");
    assert_eq!(second["topics"][0]["received"], 5, "{second}");
    assert_eq!(second["topics"][0]["sent"], 5, "{second}");
    assert_eq!(second["checkpoints_moved_back"], 1, "{second}");
    // Node 2 was offline all along; it catches up and adds its own.
    net.sync(2)?;
    net.sync(0)?;
    net.sync(1)?;

    let hub = net.hub_head("t")?.ok_or("no head at the hub")?;
    for i in 0..3 {
        assert_eq!(net.head(i, "t")?.as_deref(), Some(hub.as_str()), "node {i}");
        assert_each_once_in_order(&read_all(&net.nodes[i], "t")?, &written);
    }

    // The group saw its local messages before the sync; it still gets every remote one.
    delivered.extend(consume_all(&net.nodes[1], "g", "t")?);
    let all: BTreeSet<String> = written.iter().flatten().cloned().collect();
    assert_eq!(delivered, all, "the consumer group skipped a message");

    // Checkpoints travel: the furthest wins everywhere.
    let end = checkpoint_seq(&net.nodes[1], "g", "t")?;
    assert_eq!(end, 15);
    net.sync(1)?;
    net.sync(0)?;
    net.sync(2)?;
    for i in 0..3 {
        assert_eq!(checkpoint_seq(&net.nodes[i], "g", "t")?, 15, "node {i}");
    }
    // A sync with nothing new moves nothing.
    let idle = net.sync(2)?;
    assert_eq!(idle["topics"], json!([]), "{idle}");
    assert_eq!(idle["pushed"], 0, "{idle}");
    assert_eq!(idle["adopted"], 0, "{idle}");
    for n in &net.nodes {
        n.assert_fsck_strict()?;
    }
    net.hub.assert_fsck_strict()?;
    Ok(())
}

/// Copies a node's repository, as a node that crashed at a given moment would be found.
fn snapshot(node: &TempRepo, into: &Path) -> TestResult {
    let status = Command::new("cp")
        .args([
            "-a",
            &node.path().to_string_lossy(),
            &into.to_string_lossy(),
        ])
        .status()?;
    assert!(status.success());
    Ok(())
}

fn gatos_in(dir: &Path, home: &Path, args: &[&str]) -> TestResult<String> {
    let mut cmd = Command::new(bin("git-gatos"));
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    hermetic(&mut cmd, home);
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "git-gatos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn a_sync_interrupted_after_its_push_sends_nothing_twice() -> TestResult {
    let net = Net::new(2)?;
    for k in 0..3 {
        publish(&net.nodes[0], "t", &format!("a{k}"))?;
        publish(&net.nodes[1], "t", &format!("b{k}"))?;
    }
    net.sync(0)?;
    // Node 1 as it was before its sync: the sync re-appends and pushes, and then the node
    // "crashes" back to that state (its push landed, the answer and its local update lost).
    let before = net.nodes[1].root().join("before");
    snapshot(&net.nodes[1], &before)?;
    net.sync(1)?;
    let hub_after_first = net.hub_head("t")?;
    // The crashed copy syncs again: its messages are at the hub already (by ULID).
    let out = gatos_in(&before, &net.nodes[1].home(), &["sync", "--json"])?;
    let report: Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["topics"][0]["sent"], 0, "{report}");
    assert_eq!(net.hub_head("t")?, hub_after_first, "the hub moved");
    let read = gatos_in(
        &before,
        &net.nodes[1].home(),
        &["messages", "read", "t", "--json"],
    )?;
    let payloads: Vec<String> = json_lines(&read)?
        .into_iter()
        .map(|m| m["payload"]["p"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(payloads, ["a0", "a1", "a2", "b0", "b1", "b2"]);
    Ok(())
}

/// The sealed segments of topic `t` (`refs/gatos/messages/t/<date>/<ulid>`) at `repo`, by
/// name.
fn sealed_refs(repo: &TempRepo) -> TestResult<BTreeMap<String, String>> {
    Ok(repo
        .refs("refs/gatos/messages/t/")?
        .into_iter()
        .filter(|(n, _)| !n.ends_with("/head") && !n.ends_with("/summary"))
        .collect())
}

/// How many sealed segments topic `t` has at `r`.
fn sealed(r: &TempRepo) -> TestResult<usize> {
    Ok(sealed_refs(r)?.len())
}

/// A message commit moved onto a topic's summary ref outside gatos is no summary (ADR
/// 0047): sync neither pushes it to the hub as one nor takes its `Seq` for pruned
/// positions (which deleted the sealed segments at or below it on both sides); it rejects
/// the topic's refs from the hub with an error naming the summary, and syncs the rest.
#[test]
fn a_message_on_the_summary_ref_is_not_synced_as_a_summary() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    sealed_topic(a, "t", "m", 7)?;
    net.sync(0)?;
    let (here, there) = (sealed(a)?, sealed(&net.hub)?);
    assert!(
        here >= 3 && here == there,
        "{here} sealed here, {there} on the hub"
    );
    let head = net.head(0, "t")?.ok_or("no head")?;
    a.git(&["update-ref", "refs/gatos/messages/t/summary", &head])?;
    publish(a, "u", "other")?;
    let report = net.sync(0)?;
    let rejected = report["rejected"].as_array().ok_or("no rejected")?;
    assert_eq!(rejected.len(), 1, "{report}");
    assert_eq!(rejected[0]["code"], "InvalidEnvelope", "{report}");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("summary ref of topic 't'")),
        "{report}"
    );
    assert_eq!(report["deleted_local"], 0, "{report}");
    assert_eq!(report["deleted_remote"], 0, "{report}");
    assert_eq!((sealed(a)?, sealed(&net.hub)?), (here, there));
    assert_eq!(
        net.hub.rev_parse("refs/gatos/messages/t/summary")?,
        None,
        "pushed to the hub as a summary"
    );
    assert!(net.hub_head("u")?.is_some(), "the other topic synced");
    Ok(())
}

/// The refs a sync report rejected, each checked to be rejected as this node's own fault
/// (a topic damaged here): `InvalidEnvelope`, no remote value, the reason saying so.
fn rejected_here(report: &Value) -> TestResult<Vec<String>> {
    let rejected = report["rejected"].as_array().ok_or("no rejected")?;
    for r in rejected {
        assert_eq!(r["code"], "InvalidEnvelope", "{report}");
        assert_eq!(
            r["remote"], "0000000000000000000000000000000000000000",
            "nothing of the hub's was found wrong: {report}"
        );
        assert!(
            r["reason"]
                .as_str()
                .is_some_and(|x| x.contains("this node's own")),
            "{report}"
        );
    }
    Ok(rejected
        .iter()
        .filter_map(|r| r["ref"].as_str().map(str::to_owned))
        .collect())
}

/// A topic whose refs on this node do not read (its head moved outside gatos to no
/// message or to another topic's, or a message commit on its summary ref) is not handed on: it is rejected as
/// this node's own fault (no remote value), and nothing of it is pushed or adopted, its
/// checkpoints included, so the hub (and every node that syncs from it) keeps its own
/// history of the topic. Before, a head the hub did not have was queued for the push before
/// it was read, and the hub took the commit that is no message; and the hub's honest newer
/// messages were rejected with their value, which doctor then offered to delete at the hub.
#[test]
fn a_topic_damaged_here_is_not_pushed_to_the_hub() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(a, "old", "o0")?;
    publish(a, "sum", "s0")?;
    net.sync(0)?;
    net.sync(1)?;
    // The hub gets newer messages of both from the other node.
    publish(b, "old", "o1")?;
    publish(b, "sum", "s1")?;
    net.sync(1)?;
    let (hub_old, hub_sum) = (net.hub_head("old")?, net.hub_head("sum")?);
    publish(a, "new", "n0")?;
    gatos_ok(a, &["messages", "consume", "readers", "new"])?;
    assert!(a.rev_parse("refs/gatos/consumers/readers/new")?.is_some());
    publish(a, "good", "g0")?;
    for t in ["old", "new"] {
        crate::support::move_head_to_no_message(a, t)?;
    }
    let head = net.head(0, "sum")?.ok_or("no head")?;
    a.git(&["update-ref", "refs/gatos/messages/sum/summary", &head])?;
    // A head moved onto another topic's message.
    publish(a, "moved", "x0")?;
    let good = net.head(0, "good")?.ok_or("no head")?;
    a.git(&["update-ref", "refs/gatos/messages/moved/head", &good])?;
    assert_eq!(
        rejected_here(&net.sync(0)?)?,
        [
            "refs/gatos/messages/moved/head",
            "refs/gatos/messages/new/head",
            "refs/gatos/messages/old/head",
            "refs/gatos/messages/sum/head"
        ]
    );
    assert!(net.hub_head("good")?.is_some(), "the other topic synced");
    assert_eq!(net.hub_head("new")?, None, "the damaged head pushed");
    assert_eq!(
        net.hub_head("moved")?,
        None,
        "another topic's message pushed as its head"
    );
    assert_eq!(
        net.hub.rev_parse("refs/gatos/consumers/readers/new")?,
        None,
        "a checkpoint of the damaged topic pushed"
    );
    assert_eq!(net.hub_head("old")?, hub_old, "the hub's history moved");
    assert_eq!(net.hub_head("sum")?, hub_sum, "the hub's history moved");
    assert_eq!(net.hub.rev_parse("refs/gatos/messages/sum/summary")?, None);
    // Doctor names the damage here and does not advise removing the hub's refs.
    let doctor = gatos(a, &["doctor", "--json"])?;
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(!text.contains("sync-rejected"), "{text}");
    assert!(text.contains("chain-invalid"), "{text}");
    assert!(text.contains("summary-invalid"), "{text}");
    Ok(())
}

/// This node's own refs of every kind are read as the hub's are before anything of them is
/// pushed (ADR 0047, session 18): a job ref moved onto another job's commit, a topic's
/// settings onto a message, a checkpoint onto a job commit or onto another group's
/// checkpoint, a sealed segment's ref onto another topic's message. Each is rejected as this node's own fault (no remote value)
/// and nothing of its unit is pushed (a topic with a bad segment not at all), while the
/// rest is; once repaired here, they sync. Before, each was pushed, and every other node
/// then rejected the hub's copy.
#[test]
fn refs_damaged_here_of_any_kind_are_not_pushed_to_the_hub() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let good = id_of(&gatos_ok(a, &["jobs", "enqueue", "--json", "--", "true"])?)?;
    let other: Value =
        serde_json::from_str(gatos_ok(a, &["jobs", "enqueue", "--json", "--", "false"])?.trim())?;
    let other = other["commit"].as_str().ok_or("no commit")?.to_owned();
    publish(a, "t", "m0")?;
    let message = net.head(0, "t")?.ok_or("no head")?;
    gatos_ok(a, &["messages", "consume", "g1", "t"])?;
    let g1 = a
        .rev_parse("refs/gatos/consumers/g1/t")?
        .ok_or("no checkpoint")?;
    sealed_topic(a, "s", "s", 5)?;
    let sealed = a.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/gatos/messages/s/",
    ])?;
    let sealed = sealed
        .lines()
        .find(|n| !n.ends_with("/head") && !n.ends_with("/summary"))
        .ok_or("no sealed segment")?
        .to_owned();
    let fake = "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/job";
    let damaged = [
        (fake, other.as_str()),
        ("refs/gatos/config/topics/t", message.as_str()),
        ("refs/gatos/consumers/readers/t", other.as_str()),
        // Another group's checkpoint, which this sync checks (and finds good) first.
        ("refs/gatos/consumers/zz/t", g1.as_str()),
        (sealed.as_str(), message.as_str()),
    ];
    let mut kept = Vec::new();
    for (name, onto) in damaged {
        kept.push((name, a.rev_parse(name)?));
        a.git(&["update-ref", name, onto])?;
    }
    assert_eq!(
        rejected_here(&net.sync(0)?)?,
        [
            "refs/gatos/config/topics/t",
            "refs/gatos/consumers/readers/t",
            "refs/gatos/consumers/zz/t",
            fake,
            "refs/gatos/messages/s/head",
        ]
    );
    assert_eq!(
        net.hub.rev_parse("refs/gatos/consumers/g1/t")?.as_deref(),
        Some(g1.as_str()),
        "the good checkpoint"
    );
    for (name, _) in damaged {
        assert_eq!(net.hub.rev_parse(name)?, None, "{name} pushed");
    }
    assert_eq!(
        net.hub_head("s")?,
        None,
        "a topic with a bad segment pushed"
    );
    assert!(net.hub_head("t")?.is_some(), "the healthy topic");
    assert!(
        net.hub
            .rev_parse(&format!("refs/gatos/jobs/{good}/job"))?
            .is_some(),
        "the healthy job"
    );
    // Repaired here: put back, or removed where there was nothing.
    for (name, was) in kept {
        match was {
            Some(v) => a.git(&["update-ref", name, &v])?,
            None => a.git(&["update-ref", "-d", name])?,
        };
    }
    let report = net.sync(0)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(net.hub.rev_parse(&sealed)?, a.rev_parse(&sealed)?);
    assert_eq!(net.hub_head("s")?, net.head(0, "s")?);
    Ok(())
}

/// A revocation this node made with its own key reaches the hub even where that key is not
/// listed in `gatos.trust` (its own key counts as trusted, as for any signed commit): the
/// check of this node's refs before a push must not block a revocation.
#[test]
fn a_revocation_made_here_is_pushed_whatever_the_trust_list() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let shown: Value = serde_json::from_str(gatos_ok(b, &["keys", "show", "--json"])?.trim())?;
    let key = shown["key"].as_str().ok_or("no key")?;
    let own: Value = serde_json::from_str(gatos_ok(a, &["keys", "show", "--json"])?.trim())?;
    let own = own["key"].as_str().ok_or("no key")?;
    // Only b's key stays listed as trusted on a.
    a.git(&["config", "--unset-all", "gatos.trust", &regex_escape(own)])?;
    gatos_ok(a, &["keys", "revoke", key, "--reason", "compromised"])?;
    let report = net.sync(0)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    let at_hub = net
        .hub
        .git(&["for-each-ref", "--format=%(refname)", "refs/gatos/trust/"])?;
    assert!(
        at_hub
            .lines()
            .any(|n| n.starts_with("refs/gatos/trust/revocations/")),
        "{at_hub}"
    );
    Ok(())
}

/// A topic whose own refs this sync could not check within its bound waits whole for the
/// next sync, its checkpoints with it: a checkpoint is never pushed ahead of the messages
/// it stands on.
#[test]
fn a_topic_past_the_check_bound_keeps_its_checkpoints_back() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    sealed_topic(a, "t", "m", 5)?;
    gatos_ok(a, &["messages", "consume", "g", "t"])?;
    // The settings and the checkpoint are checked; the first sealed segment is past the bound.
    a.git(&["config", "gatos.sync.maxCheckedRefs", "2"])?;
    let report = net.sync(0)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert!(
        report["retry"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "refs/gatos/messages/t/head")),
        "{report}"
    );
    assert_eq!(net.hub_head("t")?, None, "the topic pushed past the bound");
    assert_eq!(
        net.hub.rev_parse("refs/gatos/consumers/g/t")?,
        None,
        "a checkpoint pushed without its messages"
    );
    a.git(&["config", "--unset", "gatos.sync.maxCheckedRefs"])?;
    net.sync(0)?;
    assert_eq!(net.hub_head("t")?, net.head(0, "t")?);
    assert_eq!(
        net.hub.rev_parse("refs/gatos/consumers/g/t")?,
        a.rev_parse("refs/gatos/consumers/g/t")?
    );
    Ok(())
}

/// A hub's head moved onto a message of another topic that this sync has just checked is
/// rejected all the same: a commit found valid in one topic's walk is not taken as another
/// topic's (before, the walk stopped at it unread).
#[test]
fn a_hub_head_moved_onto_another_topics_new_message_is_rejected() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(a, "b", "b0")?;
    net.sync(0)?;
    net.sync(1)?;
    publish(a, "a", "a0")?;
    net.sync(0)?;
    let moved = net.hub_head("a")?.ok_or("no head")?;
    let before = net.head(1, "b")?;
    net.hub
        .git(&["update-ref", "refs/gatos/messages/b/head", &moved])?;
    let report = net.sync(1)?;
    let rejected: Vec<&str> = report["rejected"]
        .as_array()
        .ok_or("no rejected")?
        .iter()
        .filter_map(|r| r["ref"].as_str())
        .collect();
    assert_eq!(rejected, ["refs/gatos/messages/b/head"], "{report}");
    assert_eq!(net.head(1, "b")?, before, "b's head moved");
    assert_eq!(read_all(b, "b")?, [(1, "b0".to_owned())]);
    Ok(())
}

/// A revocation at the hub is taken whatever else the hub holds: key records and
/// revocations are checked first, within the sync's bound, so refs that sort before
/// `trust/` (here junk jobs, more than the bound) cannot keep it out sync after sync.
#[test]
fn a_revocation_is_taken_before_a_flood_of_refs_past_the_bound() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let revoked = format!("ed25519:{}", "ab".repeat(32));
    gatos_ok(a, &["keys", "revoke", &revoked, "--reason", "compromised"])?;
    net.sync(0)?;
    let empty = net.hub.git(&["mktree"])?;
    let junk = net.hub.git(&["commit-tree", empty.trim(), "-m", "junk"])?;
    for i in 0..3 {
        let name = format!("refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FA{i}/job");
        net.hub.git(&["update-ref", &name, junk.trim()])?;
    }
    // Enough for the trust refs new to b (a's key record and the revocation), not for the junk.
    b.git(&["config", "gatos.sync.maxCheckedRefs", "2"])?;
    net.sync(1)?;
    let held = b.git(&["for-each-ref", "--format=%(refname)", "refs/gatos/trust/"])?;
    let prefix = format!("refs/gatos/trust/revocations/{}/", "ab".repeat(32));
    assert!(held.lines().any(|n| n.starts_with(&prefix)), "{held}");
    Ok(())
}

/// Whom to trust is each receiving node's decision: a job this node took while it trusted
/// its enqueuer, and an unsigned job, are pushed to a new hub after that trust is withdrawn
/// (the check of this node's refs before a push looks for damage, not for trust), while
/// the receiving nodes still apply their own trust to them.
#[test]
fn a_job_from_a_key_no_longer_trusted_here_is_still_pushed_to_a_new_hub() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let id = id_of(&gatos_ok(b, &["jobs", "enqueue", "--json", "--", "true"])?)?;
    net.sync(1)?;
    net.sync(0)?;
    let name = format!("refs/gatos/jobs/{id}/job");
    assert!(a.rev_parse(&name)?.is_some(), "taken while trusted");
    let shown: Value = serde_json::from_str(gatos_ok(b, &["keys", "show", "--json"])?.trim())?;
    let key = shown["key"].as_str().ok_or("no key")?;
    a.git(&["config", "--unset-all", "gatos.trust", &regex_escape(key)])?;
    let second = TempRepo::bare()?;
    a.git(&["remote", "add", "second", &second.path().to_string_lossy()])?;
    let out = gatos_ok(a, &["sync", "second", "--json"])?;
    let report: Value = serde_json::from_str(out.trim())?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(second.rev_parse(&name)?, a.rev_parse(&name)?);
    Ok(())
}

/// `git config --unset-all` takes a value pattern.
fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// Deletes the loose blob at `path` of `commit` (as a `git gc --prune` racing a writer
/// can); returns its id.
fn delete_blob_at(node: &TempRepo, commit: &str, path: &str) -> TestResult<String> {
    let blob = node.git(&["rev-parse", &format!("{commit}:{path}")])?;
    let blob = blob.trim().to_owned();
    let dir = node.git_dir().join("objects").join(&blob[..2]);
    std::fs::remove_file(dir.join(&blob[2..]))?;
    Ok(blob)
}

/// Checks that a sync report rejected exactly `name`, as this node's missing `blob`.
fn rejected_for_missing(report: &Value, name: &str, blob: &str) {
    let rejected = report["rejected"].as_array().cloned().unwrap_or_default();
    assert_eq!(rejected.len(), 1, "{report}");
    assert_eq!(rejected[0]["ref"], name, "{report}");
    assert_eq!(rejected[0]["code"], "NotFound", "{report}");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(blob)),
        "{report}"
    );
}

/// A ref whose objects are missing here (a topic's message blob deleted, as a `git gc
/// --prune` racing a writer can) is rejected as this node's fault, naming the object, and
/// the rest of the push lands. Before, git sent nothing at all (an "unpacker error" for
/// every ref), every sync retried and failed the same way, and one lost object stopped the
/// node's replication.
#[test]
fn a_ref_whose_objects_are_missing_here_does_not_stop_the_others() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    publish(a, "good", "g0")?;
    publish(a, "bad", "b0")?;
    let head = net.head(0, "bad")?.ok_or("no head")?;
    let blob = delete_blob_at(a, &head, "message/envelope.json")?;
    let report = net.sync(0)?;
    rejected_for_missing(&report, "refs/gatos/messages/bad/head", &blob);
    assert!(net.hub_head("good")?.is_some(), "the other topic synced");
    assert_eq!(net.hub_head("bad")?, None);
    assert_eq!(report["retry"], json!([]), "{report}");
    Ok(())
}

/// A topic whose sealed segment lacks an object here is held back whole: its head, segments
/// and summary are not pushed, so the hub never holds a head whose earlier segments it
/// cannot have (every other node would reject it). The other topics are pushed.
#[test]
fn a_topic_missing_an_object_of_a_segment_is_held_back_whole() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    sealed_topic(a, "t", "m", 7)?;
    publish(a, "good", "g0")?;
    let segments: Vec<(String, String)> = a
        .refs("refs/gatos/messages/t/")?
        .into_iter()
        .filter(|(n, _)| !n.ends_with("/head") && !n.ends_with("/summary"))
        .collect();
    let (_, first) = segments.first().ok_or("no sealed segment")?;
    let blob = delete_blob_at(a, first, "message/envelope.json")?;
    let report = net.sync(0)?;
    rejected_for_missing(&report, "refs/gatos/messages/t/head", &blob);
    let at_hub = net.hub.refs("refs/gatos/messages/t/")?;
    assert!(at_hub.is_empty(), "part of the topic pushed: {at_hub:?}");
    assert!(net.hub_head("good")?.is_some(), "the other topic synced");
    Ok(())
}

/// A job whose document's blob is missing here is held back whole, its claim and result
/// included (they are pushed apart, as a pair, and a first claim does not need the job's
/// commit): the hub never holds a result for a job it cannot have.
#[test]
fn a_job_missing_an_object_is_held_back_with_its_claim_and_result() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let out = gatos_ok(a, &["jobs", "enqueue", "--json", "--", "true"])?;
    let id = json_lines(&out)?[0]["id"]
        .as_str()
        .ok_or("no id")?
        .to_owned();
    let allow = jobs_shared(a).to_string_lossy().into_owned();
    gatos_ok(
        a,
        &[
            "worker",
            "--drain",
            "--quiet",
            "--sandbox-allow-write",
            &allow,
        ],
    )?;
    let prefix = format!("refs/gatos/jobs/{id}/");
    assert!(
        a.rev_parse(&format!("{prefix}result"))?.is_some(),
        "the job ran"
    );
    let job = a.rev_parse(&format!("{prefix}job"))?.ok_or("no job ref")?;
    let blob = delete_blob_at(a, &job, "job.json")?;
    publish(a, "good", "g0")?;
    let report = net.sync(0)?;
    rejected_for_missing(&report, &format!("{prefix}job"), &blob);
    let at_hub = net.hub.refs(&prefix)?;
    assert!(at_hub.is_empty(), "part of the job pushed: {at_hub:?}");
    assert!(net.hub_head("good")?.is_some(), "the rest synced");
    Ok(())
}

/// A topic whose head was moved outside gatos to no message while a publish to it waited in
/// its journal (a gatosd killed before its flusher ran, say) does not keep the node from
/// syncing (ADR 0047): the other topics are pushed, the damaged head is rejected as it is
/// without a journal, and the publish stays acknowledged in the journal for when the topic
/// is repaired. Before, the sync failed at its first step, making every journal commits.
#[test]
fn a_damaged_topics_journal_does_not_stop_a_sync() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    publish(a, "bad", "m0")?;
    {
        // A journaling handle, as gatosd's: its publish is acknowledged from the journal.
        let g = gatos::Gatos::open(a.path(), gatos::OpenOptions::default())?;
        g.messages().publish(
            &"bad".parse()?,
            json!("m1"),
            &gatos::messages::PublishOptions::default(),
        )?;
        crate::support::move_head_to_no_message(a, "bad")?;
    }
    let journal = a.git_dir().join("gatos/journal/messages.bad");
    let waiting = std::fs::metadata(&journal)?.len();
    assert!(waiting > 0, "the publish waits in the journal");
    publish(a, "good", "g0")?;
    assert_eq!(
        rejected_here(&net.sync(0)?)?,
        ["refs/gatos/messages/bad/head"]
    );
    assert!(net.hub_head("good")?.is_some(), "the other topic synced");
    assert_eq!(net.hub_head("bad")?, None, "the damaged head pushed");
    assert_eq!(std::fs::metadata(&journal)?.len(), waiting);
    Ok(())
}

/// Topic `t` of the first node, in segments of three messages, keeping three: ten messages
/// published there, both nodes synced.
fn retained_topic(net: &Net) -> TestResult {
    let a = &net.nodes[0];
    gatos_ok(
        a,
        &[
            "messages",
            "config",
            "t",
            "--max-messages",
            "3",
            "--retain-messages",
            "3",
        ],
    )?;
    for k in 0..10 {
        publish(a, "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    net.sync(1)?;
    Ok(())
}

#[test]
fn prune_on_one_node_is_not_undone_by_another() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    retained_topic(&net)?;
    let sealed_before = sealed(b)?;
    assert!(sealed_before >= 2, "expected sealed segments at b");
    // a prunes; b, which still holds the old segments, syncs after it.
    let row: Value = serde_json::from_str(
        gatos_ok(a, &["messages", "prune", "t", "--json", "--force"])?.trim(),
    )?;
    assert!(row["messages"].as_u64().unwrap_or(0) > 0, "{row}");
    net.sync(0)?;
    let report = net.sync(1)?;
    assert!(
        report["deleted_local"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    net.sync(0)?;
    for (name, r) in [("a", a), ("b", b), ("hub", &net.hub)] {
        assert_eq!(sealed(r)?, sealed(a)?, "{name}");
    }
    let first = read_all(b, "t")?.first().map(|(s, _)| *s).unwrap_or(0);
    assert!(
        first > 1,
        "pruned messages came back at b (first seq {first})"
    );
    assert_eq!(read_all(a, "t")?, read_all(b, "t")?);
    Ok(())
}

/// [`retained_topic`] keeping one message, synced; then each node publishes three messages
/// of its own at the same seqs, offline (`a0`… on the first, `b0`… on the second).
fn published_offline_on_both(net: &Net) -> TestResult {
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    retained_topic(net)?;
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "1"])?;
    net.sync(0)?;
    net.sync(1)?;
    for k in 0..3 {
        publish(a, "t", &format!("a{k}"))?;
        publish(b, "t", &format!("b{k}"))?;
    }
    Ok(())
}

/// The summary conflicts of a sync report: `(resolution, reason)` of the topic's summary.
fn summary_conflict(report: &Value) -> Option<(String, String)> {
    report["conflicts"].as_array()?.iter().find_map(|c| {
        (c["ref"] == "refs/gatos/messages/t/summary").then(|| {
            (
                c["resolution"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
    })
}

/// Asserts that both nodes and the hub hold one summary chain and the same messages of `t`,
/// and that nothing was rejected.
fn assert_pruned_alike(net: &Net, report: &Value) -> TestResult {
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let name = "refs/gatos/messages/t/summary";
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(a.rev_parse(name)?, net.hub.rev_parse(name)?);
    assert_eq!(b.rev_parse(name)?, net.hub.rev_parse(name)?);
    assert_eq!(read_all(a, "t")?, read_all(b, "t")?);
    a.assert_fsck_strict()?;
    b.assert_fsck_strict()
}

/// Both nodes pruned the same messages to other bounds: the node that syncs second takes
/// the hub's summaries, which prune further and record the same messages: nothing to report.
#[test]
fn the_same_messages_pruned_to_other_bounds_are_not_a_conflict() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    retained_topic(&net)?;
    for k in 10..13 {
        publish(b, "t", &format!("m{k}"))?;
    }
    gatos_ok(a, &["messages", "prune", "t"])?;
    gatos_ok(b, &["messages", "prune", "t"])?;
    net.sync(1)?;
    let report = net.sync(0)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    net.sync(1)?;
    assert_pruned_alike(&net, &report)
}

/// Both nodes pruned, and at the same seqs they had pruned other messages (each published
/// there offline): the node that syncs second takes the hub's summaries and its sync reports
/// that its own record was replaced (`hub-wins`), as for any CAS chain replaced on
/// divergence, once. Before, that was silent.
#[test]
fn a_summary_chain_replaced_on_divergence_is_reported() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    published_offline_on_both(&net)?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    gatos_ok(b, &["messages", "prune", "t"])?;
    let name = "refs/gatos/messages/t/summary";
    let ours = a.rev_parse(name)?.ok_or("no summary on a")?;
    net.sync(1)?;
    let report = net.sync(0)?;
    let (resolution, reason) =
        summary_conflict(&report).ok_or_else(|| format!("no conflict on the summary: {report}"))?;
    assert_eq!(resolution, "hub-wins", "{reason}");
    assert!(reason.contains(&ours), "{reason}");
    assert_eq!(a.rev_parse(name)?, net.hub.rev_parse(name)?);
    // Taken, it is reported once.
    let again = net.sync(0)?;
    assert_eq!(summary_conflict(&again), None, "{again}");
    net.sync(1)?;
    assert_pruned_alike(&net, &again)
}

/// A node pruned messages it had not synced yet (its head further than the hub's, the hub's
/// head among what it pruned), then synced: the hub takes its head, and a node still at the
/// hub's old head takes the hub's. Before, both syncs took the pruned head for a fork and
/// appended the node's messages again at seqs the summary had pruned, and the topic no
/// longer read on either node.
#[test]
fn messages_pruned_before_they_reached_the_hub_still_sync() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    retained_topic(&net)?;
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "1"])?;
    for k in 10..13 {
        publish(a, "t", &format!("m{k}"))?;
    }
    gatos_ok(a, &["messages", "prune", "t"])?;
    let kept = read_all(a, "t")?;
    let report = net.sync(0)?;
    let row = report["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|x| x["topic"] == "t"))
        .ok_or("no row of t")?;
    assert_eq!(row["action"], "pushed", "{report}");
    assert_eq!(read_all(a, "t")?, kept);
    let report = net.sync(1)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    assert_eq!(read_all(b, "t")?, kept);
    assert_pruned_alike(&net, &report)
}

/// Both nodes published at the same seqs offline and pruned; the second to sync (the first
/// node) had pruned further, over messages the hub does not hold, and with `gc` its pruned
/// commits are gone too. Returns the payloads the first node reads after its sync.
fn pruned_past_the_hubs_bound_over_other_messages(net: &Net, gc: bool) -> TestResult<Vec<String>> {
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    published_offline_on_both(net)?;
    gatos_ok(b, &["messages", "prune", "t"])?;
    net.sync(1)?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    for k in 3..6 {
        publish(a, "t", &format!("a{k}"))?;
    }
    // A group of a's has read up to a4, which the prune then drops.
    gatos_ok(
        a,
        &["messages", "consume", "g", "t", "--json", "--limit", "3"],
    )?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    if gc {
        a.git(&["gc", "-q", "--prune=now"])?;
    }
    // The histories parted below a's bound: the hub's summaries stand, reported.
    let report = net.sync(0)?;
    let (resolution, reason) =
        summary_conflict(&report).ok_or_else(|| format!("no conflict on the summary: {report}"))?;
    assert_eq!(resolution, "hub-wins", "{reason}");
    assert_eq!(report["rejected_count"], 0, "{report}");
    let name = "refs/gatos/messages/t/summary";
    assert_eq!(a.rev_parse(name)?, net.hub.rev_parse(name)?);
    let payloads = read_all(a, "t")?.into_iter().map(|(_, p)| p).collect();
    // Its checkpoint went back to the fork: it reads what now follows the hub's bound,
    // at least once, nothing skipped.
    let read = consume_all(a, "g", "t")?;
    assert!(
        read.iter().any(|p| p == "b2") && read.iter().any(|p| p == "a5"),
        "{read:?}"
    );
    let report = net.sync(1)?;
    assert_pruned_alike(net, &report)?;
    Ok(payloads)
}

/// The node that pruned past the hub's bound over messages the hub does not hold yields to
/// the hub's summaries, and its later messages go after the hub's head: those it pruned
/// included, while their commits are still in the repository. Before, its summaries were
/// put on top of the hub's and the topic no longer read there.
#[test]
fn a_prune_past_the_hubs_bound_over_other_messages_yields_to_the_hub() -> TestResult {
    let net = Net::new(2)?;
    let payloads = pruned_past_the_hubs_bound_over_other_messages(&net, false)?;
    assert_eq!(payloads, ["b2", "a2", "a3", "a4", "a5"]);
    Ok(())
}

/// The same after `git gc` removed what the node pruned: the walk to the fork point ends
/// at the first missing message, and only the messages it still holds go after the hub's
/// head. Before, the missing object made the node reject the hub's head, and the topic
/// synced no more.
#[test]
fn a_prune_past_the_hubs_bound_then_gc_yields_to_the_hub() -> TestResult {
    let net = Net::new(2)?;
    let payloads = pruned_past_the_hubs_bound_over_other_messages(&net, true)?;
    assert_eq!(payloads, ["b2", "a5"]);
    Ok(())
}

/// This node pruned further than the hub, past the hub's bound in one step: its summaries
/// cannot go on top of the hub's (the chain would not be contiguous), so its chain stands and
/// is put back at the hub. Before, it was put on top: the nodes that held the hub's first
/// summary took it, and a node that syncs the topic afresh rejected it.
#[test]
fn a_summary_past_the_hubs_bound_in_one_step_keeps_the_chain_whole() -> TestResult {
    let net = Net::new(3)?;
    let (a, b, c) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    retained_topic(&net)?;
    // a prunes one segment and syncs; b, offline, prunes two at once.
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "7"])?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    gatos_ok(b, &["messages", "prune", "t"])?;
    net.sync(0)?;
    let report = net.sync(1)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    let name = "refs/gatos/messages/t/summary";
    assert_eq!(b.rev_parse(name)?, net.hub.rev_parse(name)?);
    let report = net.sync(0)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    assert_pruned_alike(&net, &report)?;
    // A node new to the topic takes the hub's chain.
    let report = net.sync(2)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(c.rev_parse(name)?, net.hub.rev_parse(name)?);
    assert_eq!(read_all(c, "t")?, read_all(a, "t")?);
    Ok(())
}

/// This node pruned further than the hub in steps, one of them ending at the hub's bound
/// over the same messages: its later summaries go on top of the hub's chain (which every
/// node already holds), nothing is reported, and a node new to the topic takes the chain.
#[test]
fn a_summary_past_the_hubs_bound_in_steps_goes_on_top_of_the_hubs() -> TestResult {
    let net = Net::new(3)?;
    let (a, b, c) = (&net.nodes[0], &net.nodes[1], &net.nodes[2]);
    retained_topic(&net)?;
    let name = "refs/gatos/messages/t/summary";
    // b prunes one segment and syncs; a, offline, prunes the same segment, then one more.
    gatos_ok(b, &["messages", "config", "t", "--retain-messages", "7"])?;
    gatos_ok(b, &["messages", "prune", "t"])?;
    net.sync(1)?;
    let hubs = net.hub.rev_parse(name)?.ok_or("no summary at the hub")?;
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "7"])?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    let first = a.rev_parse(name)?.ok_or("no summary on a")?;
    assert_ne!(first, hubs, "a's first summary is its own");
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "3"])?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    let kept = read_all(a, "t")?;
    let report = net.sync(0)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    assert_eq!(report["rejected_count"], 0, "{report}");
    // One chain: a's second summary on top of the hub's first, a's first given up.
    let tip = a.rev_parse(name)?.ok_or("no summary on a")?;
    assert_eq!(net.hub.rev_parse(name)?.as_deref(), Some(tip.as_str()));
    assert_eq!(a.git(&["rev-parse", &format!("{tip}^")])?.trim(), hubs);
    assert_eq!(read_all(a, "t")?, kept);
    let report = net.sync(1)?;
    assert_eq!(summary_conflict(&report), None, "{report}");
    assert_pruned_alike(&net, &report)?;
    let report = net.sync(2)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(c.rev_parse(name)?.as_deref(), Some(tip.as_str()));
    assert_eq!(read_all(c, "t")?, kept);
    Ok(())
}

#[test]
fn create_only_conflicts_are_reported_never_overwritten_and_fail_strict() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let id = gatos_ok(a, &["jobs", "enqueue", "--json", "--", "true"])?;
    let id = id_of(&id)?;
    net.sync(0)?;
    net.sync(1)?;
    // Both nodes cancel the job while apart, each with its own reason: two valid cancel
    // commits under one create-only name. (A job ref moved onto another job's commit is
    // damage here, not a conflict: `refs_damaged_here_of_any_kind_are_not_pushed_to_the_hub`.)
    gatos_ok(a, &["jobs", "cancel", &id, "--reason", "on a"])?;
    gatos_ok(b, &["jobs", "cancel", &id, "--reason", "on b"])?;
    let name = format!("refs/gatos/jobs/{id}/cancel");
    let other = b.rev_parse(&name)?.ok_or("no cancel on b")?;
    net.sync(0)?;
    let report = net.sync(1)?;
    let conflicts = report["conflicts"].as_array().cloned().unwrap_or_default();
    assert!(
        conflicts
            .iter()
            .any(|c| c["ref"] == name.as_str() && c["resolution"] == "kept-both"),
        "{report}"
    );
    assert_eq!(
        b.rev_parse(&name)?.as_deref(),
        Some(other.as_str()),
        "overwritten here"
    );
    assert_ne!(
        net.hub.rev_parse(&name)?.as_deref(),
        Some(other.as_str()),
        "overwritten at the hub"
    );
    let strict = gatos(b, &["sync", "--strict"])?;
    assert!(!strict.status.success());
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("error[Conflict]"),
        "{strict:?}"
    );
    Ok(())
}

fn worker_rows(out: &Output) -> TestResult<Vec<Value>> {
    json_lines(&String::from_utf8_lossy(&out.stdout))
}

/// The one row of a worker that ran one job and exited 0.
fn only_row(out: &Output) -> TestResult<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = worker_rows(out)?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    Ok(rows.remove(0))
}

fn spawn_worker(node: &TempRepo, args: &[&str]) -> TestResult<Child> {
    let allow = jobs_shared(node).to_string_lossy().into_owned();
    let mut all = vec![
        "worker",
        "--json",
        "--remote",
        "origin",
        "--sandbox-allow-write",
        &allow,
    ];
    all.extend_from_slice(args);
    Ok(gatos_cmd(node, &all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn trust_each_other(net: &Net) -> TestResult {
    for n in &net.nodes {
        let keys = json_lines(&gatos_ok(n, &["keys", "ls", "--json"])?)?;
        for k in keys {
            if k["trusted"] != json!(true) {
                gatos_ok(n, &["keys", "trust", k["key"].as_str().unwrap_or("")])?;
            }
        }
    }
    Ok(())
}

#[test]
fn twenty_jobs_drained_by_workers_on_two_nodes_through_the_hub_run_once_each() -> TestResult {
    let net = Net::new(2)?;
    let mut ids = Vec::new();
    for k in 0..20 {
        let out = gatos_ok(
            &net.nodes[0],
            &[
                "jobs",
                "enqueue",
                "--json",
                "--",
                "sh",
                "-c",
                &format!("echo job {k}"),
            ],
        )?;
        ids.push(id_of(&out)?);
    }
    net.sync(0)?;
    net.sync(1)?;
    let a = spawn_worker(&net.nodes[0], &["--drain", "--id", "wa"])?;
    let b = spawn_worker(&net.nodes[1], &["--drain", "--id", "wb"])?;
    let (a, b) = (a.wait_with_output()?, b.wait_with_output()?);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let rows: Vec<Value> = worker_rows(&a)?
        .into_iter()
        .chain(worker_rows(&b)?)
        .collect();
    let ran: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ran.len(), 20, "{rows:?}");
    assert_eq!(
        ran.iter().collect::<HashSet<_>>().len(),
        20,
        "a job ran twice: {rows:?}"
    );
    // Results reached the hub before the workers reported them: exactly one each.
    for id in &ids {
        assert!(
            net.hub
                .rev_parse(&format!("refs/gatos/jobs/{id}/result"))?
                .is_some(),
            "{id}"
        );
    }
    net.sync(0)?;
    net.sync(1)?;
    net.sync(0)?;
    trust_each_other(&net)?;
    for n in &net.nodes {
        let out = gatos_ok(n, &["jobs", "verify", "--all", "--json"])?;
        let rows = json_lines(&out)?;
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|r| r["verified"] == json!(true)), "{out}");
        let ls = json_lines(&gatos_ok(
            n,
            &["jobs", "ls", "--json", "--state", "succeeded"],
        )?)?;
        assert_eq!(ls.len(), 20);
        n.assert_fsck_strict()?;
    }
    Ok(())
}

/// `count` jobs enqueued on the first node and run by the second (`worker --remote`), both
/// nodes synced after; their ids.
fn jobs_finished_by_the_second_node(net: &Net, count: usize) -> TestResult<Vec<String>> {
    let mut ids = Vec::new();
    for k in 0..count {
        let out = gatos_ok(
            &net.nodes[0],
            &["jobs", "enqueue", "--json", "--", "echo", &k.to_string()],
        )?;
        ids.push(id_of(&out)?);
    }
    net.sync(0)?;
    net.sync(1)?;
    let w = spawn_worker(&net.nodes[1], &["--drain", "--id", "wb"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    net.sync(1)?;
    net.sync(0)?;
    Ok(ids)
}

#[test]
fn jobs_archived_on_one_node_leave_the_live_namespace_everywhere() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let ids = jobs_finished_by_the_second_node(&net, 3)?;
    // a archives the finished jobs; the hub and then b drop their live refs.
    gatos_ok(
        a,
        &[
            "maintenance",
            "--archive-jobs",
            "--older-than",
            "0s",
            "--json",
        ],
    )?;
    let report = net.sync(0)?;
    assert!(
        report["deleted_remote"].as_u64().unwrap_or(0) >= 9,
        "{report}"
    );
    assert!(
        net.hub.refs("refs/gatos/jobs/")?.is_empty(),
        "live refs left at the hub"
    );
    let report = net.sync(1)?;
    assert!(
        report["deleted_local"].as_u64().unwrap_or(0) >= 9,
        "{report}"
    );
    assert!(
        b.refs("refs/gatos/jobs/")?.is_empty(),
        "live refs left at b"
    );
    trust_each_other(&net)?;
    for n in [a, b] {
        for id in &ids {
            let shown: Value =
                serde_json::from_str(gatos_ok(n, &["jobs", "show", id, "--json"])?.trim())?;
            assert_eq!(shown["state"], "succeeded", "{shown}");
        }
        n.assert_fsck_strict()?;
    }
    // Nothing comes back on the next round.
    net.sync(1)?;
    net.sync(0)?;
    assert!(net.hub.refs("refs/gatos/jobs/")?.is_empty());
    Ok(())
}

fn signal(pid: u32, sig: &str) -> TestResult {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn a_worker_whose_claim_was_taken_over_at_the_hub_cannot_land_its_result() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let flag = jobs_shared(a).join("ran");
    let out = gatos_ok(
        a,
        &[
            "jobs",
            "enqueue",
            "--json",
            "--max-attempts",
            "3",
            "--",
            "sh",
            "-c",
            &format!("touch {}; sleep 5; echo done", flag.display()),
        ],
    )?;
    let id = id_of(&out)?;
    net.sync(0)?;
    net.sync(1)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let result = format!("refs/gatos/jobs/{id}/result");
    // a claims at the hub, starts the job, and is frozen (a paused VM, a long GC): no
    // heartbeat reaches the hub.
    let wa = spawn_worker(a, &["--once", "--id", "wa", "--lease", "2s"])?;
    wait_for("a's claim at the hub", Duration::from_secs(60), || {
        flag.exists() && net.hub.rev_parse(&claim).ok().flatten().is_some()
    })?;
    signal(wa.id(), "-STOP")?;
    // b takes the expired claim over at the hub and finishes the job.
    wait_for("b to take the job over", Duration::from_secs(60), || {
        let out = gatos(
            b,
            &[
                "worker", "--json", "--remote", "origin", "--once", "--id", "wb", "--lease", "30s",
            ],
        );
        out.is_ok_and(|o| !worker_rows(&o).unwrap_or_default().is_empty())
    })?;
    let winner = net.hub.rev_parse(&result)?.ok_or("no result at the hub")?;
    // a wakes up: its job has long finished; its result must not land.
    signal(wa.id(), "-CONT")?;
    let row = only_row(&wa.wait_with_output()?)?;
    assert!(row["commit"].is_null(), "{row}");
    // Whether a heartbeat or the result push found out first, nothing of a's landed.
    assert!(!row["error"].as_str().unwrap_or("").is_empty(), "{row}");
    assert_eq!(
        net.hub.rev_parse(&result)?.as_deref(),
        Some(winner.as_str())
    );
    let shown: Value = serde_json::from_str(gatos_ok(b, &["jobs", "show", &id, "--json"])?.trim())?;
    assert_eq!(shown["state"], "succeeded", "{shown}");
    assert_eq!(shown["claim"]["worker"], "wb", "{shown}");
    // a, once synced, agrees with the hub.
    net.sync(0)?;
    assert_eq!(a.rev_parse(&result)?.as_deref(), Some(winner.as_str()));
    Ok(())
}

/// `git daemon --enable=receive-pack` on a free loopback port, serving `base`.
struct GitDaemon {
    child: Child,
    port: u16,
}

/// `git-daemon` in git's exec path.
fn git_daemon_bin() -> TestResult<std::path::PathBuf> {
    let out = Command::new("git").arg("--exec-path").output()?;
    let dir = String::from_utf8(out.stdout)?.trim().to_owned();
    Ok(Path::new(&dir).join("git-daemon"))
}

impl GitDaemon {
    fn start(base: &Path) -> TestResult<GitDaemon> {
        for _ in 0..20 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.local_addr()?.port()
            };
            // `git daemon` would run `git-daemon` as its child, which killing `git` leaves
            // behind: run the daemon binary itself, so the process we kill is the server.
            let child = Command::new(git_daemon_bin()?)
                .args([
                    "--reuseaddr",
                    "--export-all",
                    "--enable=receive-pack",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={}", base.display()),
                    &base.to_string_lossy(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut d = GitDaemon { child, port };
            let up = wait_for("git daemon to listen", Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    || d.child.try_wait().ok().flatten().is_some()
            });
            if up.is_ok() && d.child.try_wait()?.is_none() {
                return Ok(d);
            }
            // The port was taken meanwhile: another one.
            let _ = d.child.kill();
        }
        Err("git daemon did not start".into())
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_git_daemon_on_loopback_serves_as_the_hub() -> TestResult {
    let hub = TempRepo::bare()?;
    let base = hub.path().parent().ok_or("no parent")?.to_path_buf();
    let daemon = GitDaemon::start(&base)?;
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let net = Net::with_url(hub, &url, 2)?;
    publish(&net.nodes[0], "t", "a0")?;
    publish(&net.nodes[1], "t", "b0")?;
    let out = gatos_ok(
        &net.nodes[0],
        &["jobs", "enqueue", "--json", "--", "echo", "hi"],
    )?;
    let id = id_of(&out)?;
    net.sync(0)?;
    net.sync(1)?;
    net.sync(0)?;
    assert_eq!(read_all(&net.nodes[0], "t")?, read_all(&net.nodes[1], "t")?);
    assert_eq!(net.head(0, "t")?, net.hub_head("t")?);
    let w = spawn_worker(&net.nodes[1], &["--once", "--id", "wb"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(worker_rows(&w)?.len(), 1);
    assert!(
        net.hub
            .rev_parse(&format!("refs/gatos/jobs/{id}/result"))?
            .is_some()
    );
    net.hub.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn an_unreachable_hub_fails_cleanly_and_the_next_sync_catches_up() -> TestResult {
    let net = Net::new(1)?;
    let node = &net.nodes[0];
    publish(node, "t", "x")?;
    node.git(&["remote", "set-url", "origin", "/nonexistent/hub.git"])?;
    let out = gatos(node, &["sync"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error[Unavailable]"),
        "{out:?}"
    );
    assert_eq!(read_all(node, "t")?.len(), 1);
    node.git(&[
        "remote",
        "set-url",
        "origin",
        &net.hub.path().to_string_lossy(),
    ])?;
    net.sync(0)?;
    assert_eq!(net.head(0, "t")?, net.hub_head("t")?);
    // A user's own `git fetch --prune` never touches gatos refs.
    node.git(&["fetch", "--prune", "origin"])?;
    assert_eq!(net.head(0, "t")?, net.hub_head("t")?);
    Ok(())
}

/// A tiny deterministic generator (xorshift), seeded from `GATOS_TEST_SEED` or the clock.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_publishes_consumes_syncs_and_hostile_refs_on_three_nodes_lose_nothing() -> TestResult {
    let seed = std::env::var("GATOS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("random sync test seed: GATOS_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let net = Net::new(3)?;
    let mut written: Vec<Vec<String>> = vec![Vec::new(); 3];
    let groups = ["g0", "g1", "shared"];
    let mut delivered: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut n = 0;
    for step in 0..120 {
        let i = rng.below(3) as usize;
        // A hostile hub now and then (ADR 0018): honest messages still arrive once each.
        if rng.below(8) == 0 {
            let pick = rng.next();
            hostile::plant_junk(&net.hub, pick, step)?;
            continue;
        }
        match rng.below(10) {
            0..=4 => {
                let p = format!("n{i}-{n}");
                n += 1;
                publish(&net.nodes[i], "t", &p)?;
                written[i].push(p);
            }
            5..=6 => {
                let g = groups[rng.below(3) as usize];
                let limit = (1 + rng.below(4)).to_string();
                let run = crate::support::gatos(
                    &net.nodes[i],
                    &["messages", "consume", g, "t", "--json", "--limit", &limit],
                )?;
                let out = String::from_utf8(run.stdout)?;
                if !run.status.success() {
                    // A node that has not seen the topic yet (nothing published here, not
                    // synced yet) answers NotFound: nothing is delivered (DESIGN §4).
                    let err = &json_lines(&out)?[0]["error"];
                    assert_eq!(err["code"], "NotFound", "{out}");
                    continue;
                }
                delivered.entry(g).or_default().extend(
                    json_lines(&out)?
                        .into_iter()
                        .filter_map(|m| m["payload"]["p"].as_str().map(str::to_owned)),
                );
            }
            _ => {
                net.sync(i)?;
            }
        }
    }
    for i in [0, 1, 2, 0, 1] {
        net.sync(i)?;
    }
    let hub = net.hub_head("t")?;
    for i in 0..3 {
        assert_eq!(net.head(i, "t")?, hub, "node {i} (seed {seed})");
        assert_each_once_in_order(&read_all(&net.nodes[i], "t")?, &written);
        let adopted: Vec<(String, String)> = net.nodes[i]
            .refs("refs/gatos/")?
            .into_iter()
            .filter(|(n, _)| {
                n.starts_with("refs/gatos/unknown/")
                    || n.starts_with("refs/gatos/messages/junk")
                    || n.contains("/01KBQ")
                    || n.starts_with("refs/gatos/trust/revoked/")
            })
            .collect();
        assert!(
            adopted.is_empty(),
            "junk adopted: {adopted:?} (seed {seed})"
        );
        net.nodes[i].assert_fsck_strict()?;
    }
    let all: BTreeSet<String> = written.iter().flatten().cloned().collect();
    for g in groups {
        let seen = delivered.entry(g).or_default();
        seen.extend(consume_all(&net.nodes[0], g, "t")?);
        assert_eq!(*seen, all, "group {g} skipped a message (seed {seed})");
    }
    Ok(())
}

/// A client of a daemon's Unix socket.
/// A JSON-RPC connection to gatosd whose notifications are kept while a call waits for
/// its response: the daemon may send a subscription's events before or after the
/// response to a call that caused them.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    pending: std::collections::VecDeque<Value>,
}

impl Conn {
    fn new(stream: UnixStream) -> TestResult<Conn> {
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            stream,
            pending: std::collections::VecDeque::new(),
        })
    }

    fn line(&mut self) -> TestResult<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err("closed".into());
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn rpc(&mut self, id: u64, method: &str, params: Value) -> TestResult<Value> {
        writeln!(
            self.stream,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )?;
        loop {
            let v = self.line()?;
            if v["id"] == json!(id) {
                return Ok(v);
            }
            self.pending.push_back(v);
        }
    }

    /// Reads notifications until `n` message events arrived; returns their payloads.
    fn events(&mut self, n: usize) -> TestResult<Vec<String>> {
        let mut seen = Vec::new();
        while seen.len() < n {
            let v = match self.pending.pop_front() {
                Some(v) => v,
                None => self.line()?,
            };
            if v["method"] == "messages.event" {
                seen.push(
                    v["params"]["message"]["payload"]["p"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
        Ok(seen)
    }
}

#[test]
fn gatosd_syncs_in_the_background_and_subscribers_see_what_arrived() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(b, "t", "b1")?;
    let socket = b.root().join("d.sock");
    let mut cmd = Command::new(bin("gatosd"));
    // A long interval: the sync at start-up, then only `sync.run`, so the test decides
    // when b fetches.
    cmd.args([
        "--socket",
        &socket.to_string_lossy(),
        "--sync",
        "origin",
        "--sync-interval",
        "1h",
    ])
    .current_dir(b.path())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    hermetic(&mut cmd, &b.home());
    let mut daemon = cmd.spawn()?;
    let result = (|| -> TestResult {
        wait_for("gatosd", Duration::from_secs(30), || {
            UnixStream::connect(&socket).is_ok()
        })?;
        // The background sync at start pushed b1.
        wait_for("b1 at the hub", Duration::from_secs(60), || {
            net.hub_head("t").ok().flatten().is_some()
        })?;
        let s = UnixStream::connect(&socket)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut c = Conn::new(s)?;
        // sync.run writes: on the Unix socket it needs the token gatosd keeps in the git
        // directory (ADR 0023).
        let token = std::fs::read_to_string(b.git_dir().join("gatos/gatosd/token"))?;
        let auth = c.rpc(0, "gatos.auth", json!({"token": token.trim_end()}))?;
        assert_eq!(auth["result"]["authenticated"], true, "{auth}");
        let sub = c.rpc(
            1,
            "messages.subscribe",
            json!({"topic": "t", "since_seq": 0}),
        )?;
        assert!(sub["result"]["subscription"].is_string(), "{sub}");
        assert_eq!(c.events(1)?, ["b1"]);
        // b appends b2 locally while a appends a2 after b1 and syncs first.
        publish(b, "t", "b2")?;
        assert_eq!(c.events(1)?, ["b2"]);
        net.sync(0)?;
        publish(a, "t", "a2")?;
        net.sync(0)?;
        // b syncs: a2 arrives by fetch and b2 goes after it; the subscriber resumes from
        // the fork point (after b1) and sees a2, then b2 again (at-least-once).
        let run = c.rpc(2, "sync.run", json!({}))?;
        assert_eq!(run["result"]["remote"], "origin", "{run}");
        assert_eq!(run["result"]["topics"][0]["action"], "reappended", "{run}");
        assert_eq!(c.events(2)?, ["a2", "b2"]);
        let bad = c.rpc(3, "sync.run", json!({"remote": "nope"}))?;
        assert_eq!(bad["error"]["data"]["code"], "NotFound", "{bad}");
        let wrong = c.rpc(4, "sync.run", json!({"strict": "yes"}))?;
        assert_eq!(wrong["error"]["code"], -32602, "{wrong}");
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    result?;
    let payloads: Vec<String> = read_all(b, "t")?.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, ["b1", "a2", "b2"]);
    Ok(())
}

/// Queue admission (ADR 0027): the limit replicates with the queue's settings and holds on
/// each node; across nodes it is soft — two nodes that each admitted up to the limit before
/// a sync hold twice the limit after it, and both refuse until the depth falls.
#[test]
fn a_queue_limit_replicates_and_is_soft_across_nodes() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    gatos_ok(a, &["jobs", "config", "build", "--max-pending", "1"])?;
    net.sync(0)?;
    net.sync(1)?;
    let depth = |n: &TempRepo| -> TestResult<Value> {
        Ok(json_lines(&gatos_ok(n, &["jobs", "config", "build", "--json"])?)?.remove(0))
    };
    assert_eq!(depth(b)?["max_pending"], 1, "the limit came with sync");
    let enqueue = [
        "jobs",
        "enqueue",
        "--json",
        "--queue",
        "build",
        "--no-checkout",
        "--",
        "true",
    ];
    // Each node admits one job while it knows only its own.
    for n in [a, b] {
        gatos_ok(n, &enqueue)?;
        assert_eq!(
            gatos(n, &enqueue)?.status.code(),
            Some(4),
            "exact on a node"
        );
    }
    net.sync(0)?;
    net.sync(1)?;
    net.sync(0)?;
    for n in [a, b] {
        assert_eq!(depth(n)?["pending"], 2, "soft across nodes");
        let out = gatos(n, &enqueue)?;
        assert_eq!(out.status.code(), Some(4));
        let e = &json_lines(&String::from_utf8(out.stdout)?)?[0]["error"];
        assert_eq!(
            (e["pending"].as_u64(), e["max_pending"].as_u64()),
            (Some(2), Some(1))
        );
    }
    Ok(())
}
