//! Arbitrary lines through request parsing and the typed params of the operations.
#![no_main]
use gatos_rpc::message::{self, Entry, Incoming};
use gatos_api::types as m;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(incoming) = message::parse(line) else { return };
    let entries = match incoming {
        Incoming::Single(e) => vec![e],
        Incoming::Batch(v) => v,
    };
    for e in entries {
        if let Entry::Request(r) = e {
            let _ = r.params.clone().parse::<m::PublishParams>();
            let _ = r.params.clone().parse::<m::PublishBatchParams>();
            let _ = r.params.clone().parse::<m::ReadParams>();
            let _ = r.params.clone().parse::<m::SubscribeParams>();
            let _ = r.params.clone().parse::<m::CheckpointSetParams>();
            let _ = r.params.parse::<m::AuthParams>();
        }
    }
});
