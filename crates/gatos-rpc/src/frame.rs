//! JSONL framing without a runtime: bytes in, frames out, bounded memory.
//!
//! A frame is a line, or the note that a line was too long (its bytes are skipped up to the
//! next newline without being kept), or the note that it was not UTF-8. The stream goes on
//! after each, unlike tokio-util's `LinesCodec`, which ends the stream at its first error.

/// The default longest line, in bytes (DESIGN §6).
pub const DEFAULT_MAX_LINE: usize = 8 * 1024 * 1024;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line (without its newline), valid UTF-8.
    Line(String),
    /// A line longer than the limit; it was discarded.
    TooLong,
    /// A line that was not UTF-8.
    NotUtf8,
}

/// Splits a byte stream into frames, holding at most `max` bytes of a partial line.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    buf: Vec<u8>,
    skipping: bool,
}

impl Decoder {
    /// A decoder for lines of at most `max` bytes.
    pub fn new(max: usize) -> Decoder {
        Decoder {
            max,
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// Returns the bytes of an unfinished line currently held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; appends every frame they complete to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (head, rest) = (&data[..i], &data[i + 1..]);
                    if self.skipping {
                        self.skipping = false;
                    } else if self.buf.len() + head.len() > self.max {
                        self.buf.clear();
                        out.push(Frame::TooLong);
                    } else {
                        self.buf.extend_from_slice(head);
                        self.emit(out);
                    }
                    data = rest;
                }
                None => {
                    if !self.skipping {
                        if self.buf.len() + data.len() > self.max {
                            // Report at once and drop what we held; skip to the next newline.
                            self.buf = Vec::new();
                            self.skipping = true;
                            out.push(Frame::TooLong);
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
    }

    /// Ends the stream: an unfinished last line counts as a line.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if !self.skipping && !self.buf.is_empty() {
            self.emit(out);
        }
        self.skipping = false;
        self.buf = Vec::new();
    }

    fn emit(&mut self, out: &mut Vec<Frame>) {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        // Blank lines between messages are not messages.
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match String::from_utf8(line) {
            Ok(s) => out.push(Frame::Line(s)),
            Err(_) => out.push(Frame::NotUtf8),
        }
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
            assert!(d.buffered() <= max);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn lines_split_anywhere_come_out_whole() {
        assert_eq!(
            frames(100, &[b"{\"a\"", b":1}\n{\"b\":2}\r\n", b"\n  \n", b"last"]),
            vec![
                Frame::Line("{\"a\":1}".into()),
                Frame::Line("{\"b\":2}".into()),
                Frame::Line("last".into())
            ]
        );
    }

    #[test]
    fn a_long_line_is_reported_once_and_skipped_without_being_kept() {
        let long = vec![b'x'; 50];
        assert_eq!(
            frames(10, &[b"ok\n", &long, &long, b"yy\nnext\n"]),
            vec![
                Frame::Line("ok".into()),
                Frame::TooLong,
                Frame::Line("next".into())
            ]
        );
        assert_eq!(
            frames(4, &[b"12345\nab\n"]),
            vec![Frame::TooLong, Frame::Line("ab".into())]
        );
        assert_eq!(frames(4, &[b"1234\n"]), vec![Frame::Line("1234".into())]);
    }

    #[test]
    fn invalid_utf8_is_a_frame_and_the_stream_goes_on() {
        assert_eq!(
            frames(100, &[b"\xff\xfe\n", b"{}\n"]),
            vec![Frame::NotUtf8, Frame::Line("{}".into())]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(data in prop::collection::vec(any::<u8>(), 0..4096), cut in 1usize..64, max in 1usize..256) {
            let mut d = Decoder::new(max);
            let mut out = Vec::new();
            for chunk in data.chunks(cut) {
                d.feed(chunk, &mut out);
                prop_assert!(d.buffered() <= max);
            }
            d.finish(&mut out);
            for f in out {
                if let Frame::Line(l) = f {
                    prop_assert!(l.len() <= max);
                    prop_assert!(!l.contains('\n'));
                }
            }
        }
    }
}
