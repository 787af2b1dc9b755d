//! Arbitrary bytes, cut at arbitrary places, through the JSONL decoder: no panic, memory
//! bounded by the line limit, every line shorter than the limit.
#![no_main]
use gatos_rpc::frame::{Decoder, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let max = 64 + usize::from(cut) * 4;
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    for chunk in rest.chunks(usize::from(cut % 17) + 1) {
        d.feed(chunk, &mut out);
        assert!(d.buffered() <= max);
    }
    d.finish(&mut out);
    for f in out {
        if let Frame::Line(l) = f {
            assert!(l.len() <= max && !l.contains('\n'));
        }
    }
});
