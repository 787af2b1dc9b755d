//! zlib streams for the objects gatos writes, loose or packed.
//!
//! gix makes a fresh deflate state per object, and zlib-rs zeroes a 128 KiB hash table for
//! each: that was 85% of a batch's time and 20% of a one-message publish (profiled). We keep
//! compressors in a pool and reuse them, and skip deflate for tiny objects (trees, small
//! payloads), where it saves a few dozen bytes at the price of a reset. Git reads both forms
//! alike (stored blocks are plain RFC 1950/1951); `git repack -F` recompresses everything if
//! space ever matters more than speed.

/// Objects smaller than this are stored in their zlib stream without compression.
pub const STORE_BELOW: usize = 256;

/// A reusable zlib encoder.
pub(crate) struct Zlib {
    compress: gix::zlib::stream::deflate::Compress,
    buf: Vec<u8>,
}

impl Zlib {
    pub(crate) fn new() -> Zlib {
        Zlib {
            compress: gix::zlib::stream::deflate::Compress::new(gix::zlib::Compression::BEST_SPEED),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Encodes `data` as one zlib stream.
    pub(crate) fn encode(&mut self, data: &[u8]) -> Result<Vec<u8>, gix::Error> {
        if data.len() < STORE_BELOW {
            return Ok(stored(data));
        }
        self.compress.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            let (in_before, out_before) = (self.compress.total_in(), self.compress.total_out());
            let status = self.compress.compress(
                input,
                &mut self.buf,
                gix::zlib::stream::deflate::FlushCompress::Finish,
            )?;
            let consumed = usize::try_from(self.compress.total_in() - in_before).unwrap_or(0);
            let produced = usize::try_from(self.compress.total_out() - out_before).unwrap_or(0);
            out.extend_from_slice(&self.buf[..produced]);
            input = &input[consumed..];
            if matches!(status, gix::zlib::Status::StreamEnd) {
                return Ok(out);
            }
        }
    }
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): no compression.
pub(crate) fn stored(data: &[u8]) -> Vec<u8> {
    const MAX_BLOCK: usize = 65_535;
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(data.len() + 2 + blocks * 5 + 4);
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
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    // The largest n such that 255·n·(n+1)/2 + (n+1)·(MOD−1) fits in 32 bits.
    const NMAX: usize = 5_552;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(NMAX) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
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
    fn stored_and_compressed_streams_inflate_back() {
        let mut z = Zlib::new();
        for data in [
            Vec::new(),
            b"x".to_vec(),
            vec![7u8; 255],
            vec![1u8; 256],
            (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        ] {
            let enc = z.encode(&data).expect("encodes");
            assert_eq!(inflate(&enc, data.len()), data, "len {}", data.len());
            let st = stored(&data);
            assert_eq!(inflate(&st, data.len()), data, "stored len {}", data.len());
        }
    }

    #[test]
    fn adler32_matches_the_reference() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }
}
