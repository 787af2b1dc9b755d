//! zlib streams for the objects gatos writes, loose or packed: stored blocks, not deflate.
//!
//! Deflating cost a third of a batch's time (setting up a deflate state zeroes a 128 KiB
//! hash table; then the compression itself; profiled, issue #21): a batch of 100,000
//! messages went from 44k to 67k a second. Stored blocks are plain RFC 1950/1951: git reads
//! them like any other, and inflating them is a copy (reads are unchanged). The cost is
//! disk: that batch's pack is 86 MB instead of 76 MB, and maintenance's repack reuses
//! entries as they are. `git repack -a -d -F` recompresses everything when space matters
//! more than speed.

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): no compression.
pub(crate) fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len()));
    stored_into(&mut out, data);
    out
}

/// The length of [`stored`]'s stream for `len` bytes.
pub(crate) fn stored_len(len: usize) -> usize {
    len + 2 + len.div_ceil(MAX_BLOCK).max(1) * 5 + 4
}

const MAX_BLOCK: usize = 65_535;

/// Appends [`stored`]'s stream of `data` to `out` (a pack's entries are written in place).
pub(crate) fn stored_into(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(stored_len(data.len()));
    out.extend_from_slice(&[0x78, 0x01]); // deflate, 32 KiB window, fastest level; header check ok
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]); // one final empty block
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = u16::try_from(chunk.len()).expect("chunks are at most 65535 bytes");
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    // zlib-rs's Adler-32 (vectorized where the CPU allows; the byte-at-a-time loop was most
    // of this function's time in a batch).
    out.extend_from_slice(&zlib_rs::adler32::adler32(1, data).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(z: &[u8], size: usize) -> Vec<u8> {
        let mut out = vec![0u8; size];
        let mut d = gix::zlib::Decompress::new();
        d.decompress(z, &mut out, gix::zlib::FlushDecompress::Finish)
            .expect("valid zlib stream");
        assert_eq!(d.total_out() as usize, size);
        out
    }

    #[test]
    fn stored_streams_inflate_back() {
        for data in [
            Vec::new(),
            b"x".to_vec(),
            vec![7u8; 255],
            vec![1u8; 256],
            (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        ] {
            let st = stored(&data);
            assert_eq!(inflate(&st, data.len()), data, "stored len {}", data.len());
        }
    }

    #[test]
    fn the_stream_ends_with_the_reference_adler32_and_is_as_long_as_said() {
        let tail = |d: &[u8]| {
            let s = stored(d);
            assert_eq!(s.len(), stored_len(d.len()));
            u32::from_be_bytes(s[s.len() - 4..].try_into().expect("4 bytes"))
        };
        assert_eq!(tail(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(tail(b""), 1);
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &big {
            a = (a + u32::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(tail(&big), (b << 16) | a);
    }
}
