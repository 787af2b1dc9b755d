//! Framing and request decoding over arbitrary input (the proptest counterpart of the
//! cargo-fuzz targets in `fuzz/`, bounded so it runs in the test suite).
#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

use gatos_api::types as m;
use gatos_rpc::frame::{Decoder, Frame};
use gatos_rpc::message::{self, Entry, Incoming};
use proptest::prelude::*;

fn decode_everything(data: &[u8], cut: usize, max: usize) -> Vec<Frame> {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    for chunk in data.chunks(cut.max(1)) {
        d.feed(chunk, &mut out);
        assert!(d.buffered() <= max);
    }
    d.finish(&mut out);
    out
}

fn exercise(line: &str) {
    let Ok(incoming) = message::parse(line) else {
        return;
    };
    let entries = match incoming {
        Incoming::Single(e) => vec![e],
        Incoming::Batch(v) => v,
    };
    for e in entries {
        if let Entry::Request(r) = e {
            let _ = r.params.clone().parse::<m::PublishParams>();
            let _ = r.params.clone().parse::<m::ReadParams>();
            let _ = r.params.clone().parse::<m::CheckpointSetParams>();
            let _ = r.params.parse::<m::PublishBatchParams>();
        }
    }
}

/// JSON-shaped text: requests with random members, so decoding gets past the syntax.
fn json_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        "[a-zA-Z0-9 _.:-]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"".to_owned()),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("topic"),
                        Just("payload"),
                        Just("since"),
                        Just("limit"),
                        Just("x")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|v| format!(
                "{{{}}}",
                v.iter()
                    .map(|(k, v)| format!("{k:?}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    });
    (
        prop_oneof![
            Just("messages.publish"),
            Just("messages.read"),
            Just("nope")
        ],
        value,
        any::<bool>(),
    )
        .prop_map(|(method, params, with_id)| {
            let id = if with_id { r#","id":7"# } else { "" };
            format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params}{id}}}"#)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_frame_and_parse_without_panics(data in prop::collection::vec(any::<u8>(), 0..2048), cut in 1usize..50, max in 16usize..512) {
        for f in decode_everything(&data, cut, max) {
            if let Frame::Line(l) = f {
                prop_assert!(l.len() <= max);
                exercise(&l);
            }
        }
    }

    #[test]
    fn json_like_requests_decode_without_panics(line in json_like()) {
        exercise(&line);
        // And as a batch of two.
        exercise(&format!("[{line},{line}]"));
    }
}
