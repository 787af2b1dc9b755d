//! Redaction of resolved secret values from what a job printed (DESIGN §4, docs/jobs.md
//! "Redaction").
//!
//! A [`Redactor`] is built once per attempt from the secrets the worker resolved for it, and
//! replaces, in one pass over the bytes, every occurrence of each value and of its common
//! encodings:
//!
//! | form | mark |
//! |---|---|
//! | the value itself | `[REDACTED:NAME]` |
//! | base64 (standard alphabet, with or without padding) | `[REDACTED:NAME:base64]` |
//! | base64url (URL-safe alphabet, with or without padding) | `[REDACTED:NAME:base64url]` |
//! | hex, lower and upper case | `[REDACTED:NAME:hex]` |
//! | URL-encoded (percent-encoding, upper or lower case hex, `+` for space) | `[REDACTED:NAME:url]` |
//!
//! Base64 is caught wherever the value sits in a longer encoded stream (`echo "$X" |
//! base64` encodes the value and a newline; `printf "ab$X" | base64` shifts it by two
//! bytes): for each of the three byte alignments the characters that depend on the value's
//! bytes alone (the alignment's stable core) are redacted; the one or two characters at
//! each edge that mix in neighbouring bytes stay. A core broken across lines by a tool
//! that wraps its output (76 characters: `base64`; 64: `openssl base64`, PEM) is caught at
//! every column it may start at.
//!
//! Values shorter than [`MIN_ENCODED_LEN`] bytes are redacted only in their exact form:
//! their encodings are short enough to turn up by chance in ordinary output. An empty
//! value is never redacted.
//!
//! Occurrences that overlap (two secrets sharing bytes, or one value inside another) are
//! merged: every byte inside any occurrence of any form is replaced, and the merged span
//! carries the mark of each secret found in it, so nothing of either value survives between
//! the marks. (A plain leftmost-longest pass would leave the tail of the second of two
//! overlapping values in clear.)
//!
//! A [`StreamRedactor`] redacts output as it arrives (the worker's live log spool,
//! `jobs::logs`) and gives exactly the bytes [`Redactor::redact`] gives over the whole
//! stream: it holds back only the bytes that could still become part of an occurrence —
//! a tail that begins some form, or a run of overlapping occurrences that more input could
//! extend — and lets everything before them out.
//!
//! This guards against accidents — a value echoed by a verbose tool, a debug dump, a
//! header in a trace — not against a job that wants to leak a secret: a job can split,
//! reverse, compress or encrypt it, and no redactor can recognise that.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Values shorter than this many bytes are redacted only in their exact form.
pub const MIN_ENCODED_LEN: usize = 8;

/// How a value appeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Exact,
    Base64,
    Base64Url,
    Hex,
    Url,
}

impl Form {
    fn suffix(self) -> &'static str {
        match self {
            Form::Exact => "",
            Form::Base64 => ":base64",
            Form::Base64Url => ":base64url",
            Form::Hex => ":hex",
            Form::Url => ":url",
        }
    }
}

/// Replaces secret values and their encodings with marks naming the secret and the form.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// `None` when there is nothing to redact.
    searcher: Option<AhoCorasick>,
    /// For each needle: the secret's index in `names` and the form.
    needles: Vec<(usize, Form)>,
    names: Vec<String>,
    longest: usize,
    /// Every form searched for (what a held-back tail may begin).
    patterns: Vec<Vec<u8>>,
    /// Whether some form starts with this byte.
    first: [bool; 256],
}

impl Default for Redactor {
    fn default() -> Redactor {
        Redactor::new(&[])
    }
}

impl Redactor {
    /// Builds a redactor for `(name, value)` pairs. Empty values are ignored.
    pub fn new(secrets: &[(String, String)]) -> Redactor {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut needles: Vec<(usize, Form)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (name, value) in secrets {
            let v = value.as_bytes();
            if v.is_empty() {
                continue;
            }
            let idx = names.len();
            names.push(name.clone());
            let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
            let mut add = |p: Vec<u8>, form: Form| {
                if !p.is_empty() && seen.insert(p.clone()) {
                    patterns.push(p);
                    needles.push((idx, form));
                }
            };
            add(v.to_vec(), Form::Exact);
            if v.len() < MIN_ENCODED_LEN {
                continue;
            }
            for (full, bare, form) in [
                (&STANDARD, &STANDARD_NO_PAD, Form::Base64),
                (&URL_SAFE, &URL_SAFE_NO_PAD, Form::Base64Url),
            ] {
                // The value alone: padded and unpadded (leftmost-longest in the merge below
                // prefers the whole form to its core where both are present).
                add(full.encode(v).into_bytes(), form);
                add(bare.encode(v).into_bytes(), form);
                for offset in 0..3 {
                    let core = base64_core(bare, v, offset);
                    if form == Form::Base64 && v.len() <= MAX_WRAPPED_LEN {
                        // `base64` wraps its lines at 76 characters, `openssl base64` and
                        // PEM at 64: a core that crosses a line end, wherever it starts.
                        for wrapped in wrapped_cores(&core) {
                            add(wrapped, form);
                        }
                    }
                    add(core, form);
                }
            }
            add(hex(v, b"0123456789abcdef"), Form::Hex);
            add(hex(v, b"0123456789ABCDEF"), Form::Hex);
            for (upper, plus) in [(true, false), (false, false), (true, true), (false, true)] {
                let u = percent_encode(v, upper, plus);
                if u != v {
                    add(u, Form::Url);
                }
            }
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let searcher = if patterns.is_empty() {
            None
        } else {
            // Standard semantics: every occurrence, overlapping ones included, so the
            // spans below cover all of them.
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .ok()
        };
        let mut first = [false; 256];
        for p in &patterns {
            if let Some(&b) = p.first() {
                first[usize::from(b)] = true;
            }
        }
        Redactor {
            searcher,
            needles,
            names,
            longest,
            patterns,
            first,
        }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.searcher.is_none()
    }

    /// The longest form searched for, in bytes: a capture that keeps this many bytes past
    /// its cap redacts a secret that straddles the cap whole.
    pub fn longest_form(&self) -> usize {
        self.longest
    }

    /// Returns `bytes` with every occurrence of every form replaced by its mark.
    pub fn redact(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        self.write_redacted(bytes, &self.spans(bytes), &mut out);
        out
    }

    /// Every occurrence of every form in `bytes`, merged into spans of overlapping ones,
    /// in order.
    fn spans(&self, bytes: &[u8]) -> Vec<Span> {
        let Some(ac) = &self.searcher else {
            return Vec::new();
        };
        // Every occurrence (overlapping ones are reported in order of their ends), sorted by
        // start and merged into spans, each with the secrets found in it.
        let mut found: Vec<(usize, usize, (usize, Form))> = ac
            .find_overlapping_iter(bytes)
            .map(|m| (m.start(), m.end(), self.needles[m.pattern().as_usize()]))
            .collect();
        found.sort_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
        let mut merged: Vec<Span> = Vec::new();
        for (start, end, needle) in found {
            match merged.last_mut() {
                Some(last) if start < last.end => {
                    last.end = last.end.max(end);
                    last.add(needle, end - start);
                }
                _ => {
                    let mut s = Span {
                        start,
                        end,
                        found: Vec::new(),
                    };
                    s.add(needle, end - start);
                    merged.push(s);
                }
            }
        }
        merged
    }

    /// Appends `bytes` to `out` with each of `spans` (which lie inside `bytes`) replaced by
    /// its marks.
    fn write_redacted(&self, bytes: &[u8], spans: &[Span], out: &mut Vec<u8>) {
        let mut at = 0;
        for s in spans {
            out.extend_from_slice(&bytes[at..s.start]);
            for (secret, form) in s.marks() {
                out.extend_from_slice(b"[REDACTED:");
                out.extend_from_slice(self.names[secret].as_bytes());
                out.extend_from_slice(form.suffix().as_bytes());
                out.push(b']');
            }
            at = s.end;
        }
        out.extend_from_slice(&bytes[at..]);
    }

    /// Where the part of `bytes` that more input cannot change ends: before the earliest
    /// tail that begins some form (an occurrence may still complete there), and before a
    /// span of occurrences reaching past that point (a later occurrence could still merge
    /// into it). Returns that length and the spans before it.
    fn settled(&self, bytes: &[u8]) -> (usize, Vec<Span>) {
        if self.searcher.is_none() {
            return (bytes.len(), Vec::new());
        }
        let len = bytes.len();
        let from = len.saturating_sub(self.longest.saturating_sub(1));
        let open = (from..len).find(|&p| {
            self.first[usize::from(bytes[p])]
                && self
                    .patterns
                    .iter()
                    .any(|pat| pat.len() > len - p && pat.starts_with(&bytes[p..]))
        });
        let mut cut = open.unwrap_or(len);
        let mut spans = self.spans(bytes);
        if let Some(crossing) = spans.iter().position(|s| s.end > cut) {
            cut = cut.min(spans[crossing].start);
            spans.truncate(crossing);
        }
        (cut, spans)
    }
}

/// The most bytes a [`StreamRedactor`] holds back before it lets out a run of
/// overlapping occurrences that input keeps extending (only a job printing one secret's
/// forms back to back, overlapping, for this long gets here).
pub const MAX_HELD: usize = 1024 * 1024;

/// Redacts a stream as it arrives: the concatenation of what [`StreamRedactor::push`] and
/// [`StreamRedactor::finish`] return is what [`Redactor::redact`] returns for the whole
/// stream (unless a single run of overlapping occurrences outgrows [`MAX_HELD`]: it is then
/// let out as marks, and an occurrence overlapping its end may leave a few characters of a
/// form in clear).
#[derive(Debug, Clone)]
pub struct StreamRedactor {
    redactor: Redactor,
    /// Input not let out yet: a tail that may begin an occurrence.
    held: Vec<u8>,
}

impl StreamRedactor {
    /// Starts a stream.
    pub fn new(redactor: Redactor) -> StreamRedactor {
        StreamRedactor {
            redactor,
            held: Vec::new(),
        }
    }

    /// Takes the next input; appends to `out` what no later input can change.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.redactor.is_empty() {
            out.extend_from_slice(bytes);
            return;
        }
        self.held.extend_from_slice(bytes);
        let (mut cut, mut spans) = self.redactor.settled(&self.held);
        if self.held.len() - cut > MAX_HELD {
            // A run of overlapping occurrences that keeps growing: let it out as marks.
            if let Some(run) = self
                .redactor
                .spans(&self.held)
                .into_iter()
                .find(|s| s.start == cut)
            {
                cut = run.end;
                spans.push(run);
            }
        }
        self.redactor.write_redacted(&self.held[..cut], &spans, out);
        self.held.drain(..cut);
    }

    /// Ends the stream: appends what was held back, redacted.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        let spans = self.redactor.spans(&held);
        self.redactor.write_redacted(&held, &spans, out);
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// A run of bytes covered by overlapping occurrences.
struct Span {
    start: usize,
    end: usize,
    /// Each secret found, with its longest form's needle and length, in order of discovery.
    found: Vec<((usize, Form), usize)>,
}

impl Span {
    fn add(&mut self, needle: (usize, Form), len: usize) {
        match self.found.iter_mut().find(|(n, _)| n.0 == needle.0) {
            Some(f) if f.1 < len => *f = (needle, len),
            Some(_) => {}
            None => self.found.push((needle, len)),
        }
    }

    /// One mark per secret, in order of its first occurrence in the span.
    fn marks(&self) -> impl Iterator<Item = (usize, Form)> + '_ {
        self.found.iter().map(|(n, _)| *n)
    }
}

/// The characters of the base64 encoding of `offset` unknown bytes followed by `v` that
/// depend on `v` alone (character `j` covers bits `6j..6j+6`).
fn base64_core(engine: &base64::engine::GeneralPurpose, v: &[u8], offset: usize) -> Vec<u8> {
    let mut input = vec![0u8; offset];
    input.extend_from_slice(v);
    let encoded = engine.encode(&input).into_bytes();
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + v.len())) / 6;
    encoded
        .get(first..end)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// The longest value whose wrapped base64 forms are matched (3 alignments × 140 columns of
/// patterns each: a longer secret, a key or a certificate, is caught unwrapped only, and its
/// patterns stay small).
const MAX_WRAPPED_LEN: usize = 512;

/// The line widths at which base64 tools wrap their output: 76 (`base64`, MIME) and 64
/// (`openssl base64`, PEM).
const WRAP_WIDTHS: [usize; 2] = [76, 64];

/// `core` as it reads when a wrapped base64 stream breaks it across lines: for each width
/// and each column the core may start at, with a newline wherever a line ends inside it.
fn wrapped_cores(core: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for w in WRAP_WIDTHS {
        for column in 0..w {
            if column + core.len() <= w {
                // Ends on its first line: the core itself.
                continue;
            }
            let mut v = Vec::with_capacity(core.len() + core.len() / w + 1);
            for (k, &c) in core.iter().enumerate() {
                if k > 0 && (column + k) % w == 0 {
                    v.push(b'\n');
                }
                v.push(c);
            }
            out.push(v);
        }
    }
    out
}

fn hex(v: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 2);
    for b in v {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
}

/// Percent-encodes every byte but RFC 3986's unreserved ones; `plus` writes space as `+`
/// (form encoding).
fn percent_encode(v: &[u8], upper: bool, plus: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else if plus && b == b' ' {
            out.push(b'+');
        } else {
            out.push(b'%');
            out.push(digits[usize::from(b >> 4)]);
            out.push(digits[usize::from(b & 0xf)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(pairs: &[(&str, &str)]) -> Redactor {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        Redactor::new(&pairs)
    }

    fn text(r: &Redactor, s: &[u8]) -> String {
        String::from_utf8_lossy(&r.redact(s)).into_owned()
    }

    const VALUE: &str = "s3cr3t-Value/with+chars?";

    #[test]
    fn the_exact_value_is_replaced() {
        let r = redactor(&[("TOKEN", VALUE)]);
        assert_eq!(
            text(&r, format!("token={VALUE}; again {VALUE}\n").as_bytes()),
            "token=[REDACTED:TOKEN]; again [REDACTED:TOKEN]\n"
        );
    }

    #[test]
    fn base64_and_base64url_with_and_without_padding_are_replaced() {
        let r = redactor(&[("TOKEN", VALUE)]);
        for (engine, mark) in [
            (&STANDARD, "[REDACTED:TOKEN:base64]"),
            (&STANDARD_NO_PAD, "[REDACTED:TOKEN:base64]"),
            (&URL_SAFE, "[REDACTED:TOKEN:base64url]"),
            (&URL_SAFE_NO_PAD, "[REDACTED:TOKEN:base64url]"),
        ] {
            let enc = engine.encode(VALUE);
            assert_eq!(text(&r, format!("<{enc}>").as_bytes()), format!("<{mark}>"));
        }
    }

    #[test]
    fn base64_is_caught_at_every_alignment_inside_a_longer_stream() {
        let r = redactor(&[("TOKEN", VALUE)]);
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            for suffix in ["", "\n", "xy", "tail of the stream"] {
                let plain = format!("{prefix}{VALUE}{suffix}");
                for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                    let enc = engine.encode(&plain);
                    let out = text(&r, enc.as_bytes());
                    assert!(
                        out.contains("[REDACTED:TOKEN:base64"),
                        "{prefix:?}+{suffix:?}: {out}"
                    );
                    for core_offset in 0..3 {
                        let core = base64_core(&STANDARD_NO_PAD, VALUE.as_bytes(), core_offset);
                        assert!(
                            !out.contains(std::str::from_utf8(&core).unwrap_or("")),
                            "{out}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wrapped_base64_is_caught_wherever_its_lines_break() {
        // 73 bytes: its encoding is longer than one line of `base64` (76) and `openssl` (64).
        let value = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxyz-LONGSECRET";
        let r = redactor(&[("LONG", value)]);
        for width in [76usize, 64] {
            for prefix in 0..80usize {
                let mut input = "p".repeat(prefix).into_bytes();
                input.extend_from_slice(value.as_bytes());
                input.push(b'\n');
                let encoded = STANDARD.encode(&input);
                let mut wrapped = Vec::new();
                for line in encoded.as_bytes().chunks(width) {
                    wrapped.extend_from_slice(line);
                    wrapped.push(b'\n');
                }
                let out = text(&r, &wrapped);
                assert!(
                    out.contains("[REDACTED:LONG:base64]"),
                    "width {width}, prefix {prefix}: {out}"
                );
                let plain = out.replace('\n', "");
                let core = base64_core(&STANDARD_NO_PAD, value.as_bytes(), prefix % 3);
                assert!(
                    !plain.contains(std::str::from_utf8(&core[..20]).unwrap_or("")),
                    "width {width}, prefix {prefix}: {out}"
                );
            }
        }
    }

    #[test]
    fn hex_in_both_cases_is_replaced() {
        let r = redactor(&[("TOKEN", VALUE)]);
        let lower = hex(VALUE.as_bytes(), b"0123456789abcdef");
        let upper = hex(VALUE.as_bytes(), b"0123456789ABCDEF");
        for h in [lower, upper] {
            let mut s = b"0x".to_vec();
            s.extend_from_slice(&h);
            assert_eq!(text(&r, &s), "0x[REDACTED:TOKEN:hex]");
        }
    }

    #[test]
    fn url_encoded_forms_are_replaced() {
        let r = redactor(&[("PW", "p@ss word/with:colon")]);
        for s in [
            "p%40ss%20word%2Fwith%3Acolon",
            "p%40ss%20word%2fwith%3acolon",
            "p%40ss+word%2Fwith%3Acolon",
        ] {
            assert_eq!(
                text(&r, format!("https://x/?pw={s}&a=1").as_bytes()),
                "https://x/?pw=[REDACTED:PW:url]&a=1"
            );
        }
    }

    #[test]
    fn short_values_are_redacted_only_exactly() {
        let r = redactor(&[("PIN", "1234")]);
        assert_eq!(
            text(&r, b"pin 1234 MTIzNA== 31323334"),
            "pin [REDACTED:PIN] MTIzNA== 31323334"
        );
    }

    #[test]
    fn empty_values_and_no_secrets_change_nothing() {
        let r = redactor(&[("EMPTY", "")]);
        assert!(r.is_empty());
        assert_eq!(r.redact(b"anything"), b"anything");
        assert_eq!(Redactor::default().redact(b""), b"");
    }

    #[test]
    fn overlapping_secrets_leave_nothing_of_either() {
        let r = redactor(&[("A", "abcdefgh12"), ("B", "defgh12345")]);
        assert_eq!(text(&r, b"[abcdefgh12345]"), "[[REDACTED:A][REDACTED:B]]");
        // One value inside another: both marks, in order of where each starts.
        let r = redactor(&[("INNER", "cdefghij"), ("OUTER", "abcdefghijkl")]);
        assert_eq!(
            text(&r, b"-abcdefghijkl-"),
            "-[REDACTED:OUTER][REDACTED:INNER]-"
        );
        assert_eq!(text(&r, b"-cdefghij-"), "-[REDACTED:INNER]-");
    }

    #[test]
    fn an_encoded_secret_straddling_a_chunk_boundary_is_redacted() {
        // Output read in 8 KiB chunks and joined before redaction, with the encoded value
        // across the join at every split point.
        let r = redactor(&[("TOKEN", VALUE)]);
        let enc = STANDARD.encode(VALUE);
        for split in 0..=enc.len() {
            let mut first = vec![b'.'; 8192 - split];
            first.extend_from_slice(&enc.as_bytes()[..split]);
            let second = [&enc.as_bytes()[split..], b"\n"].concat();
            let joined = [first, second].concat();
            let out = r.redact(&joined);
            assert!(out.ends_with(b"[REDACTED:TOKEN:base64]\n"), "split {split}");
        }
        assert!(r.longest_form() >= 3 * VALUE.len() / 2);
    }

    #[test]
    fn non_utf8_input_passes_through_untouched_around_the_marks() {
        let r = redactor(&[("TOKEN", VALUE)]);
        let mut s = vec![0xff, 0xfe, 0x00];
        s.extend_from_slice(VALUE.as_bytes());
        s.extend_from_slice(&[0xc3, 0x28]);
        let mut want = vec![0xff, 0xfe, 0x00];
        want.extend_from_slice(b"[REDACTED:TOKEN]");
        want.extend_from_slice(&[0xc3, 0x28]);
        assert_eq!(r.redact(&s), want);
    }

    /// Redacts `input` through a stream fed in `pieces` (split points).
    fn streamed(r: &Redactor, input: &[u8], splits: &[usize]) -> Vec<u8> {
        let mut s = StreamRedactor::new(r.clone());
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in splits {
            let cut = cut.clamp(at, input.len());
            s.push(&input[at..cut], &mut out);
            at = cut;
        }
        s.push(&input[at..], &mut out);
        s.finish(&mut out);
        out
    }

    #[test]
    fn a_stream_redacts_as_the_whole_does_at_every_split() {
        let r = redactor(&[("A", VALUE), ("B", "abcdefgh12"), ("C", "defgh12345")]);
        let input = format!(
            "x {VALUE} {} [abcdefgh12345] {} {VALUE}{VALUE} tail",
            STANDARD.encode(format!("ab{VALUE}\n")),
            hex(VALUE.as_bytes(), b"0123456789abcdef")
                .into_iter()
                .map(char::from)
                .collect::<String>(),
        );
        let input = input.as_bytes();
        let whole = r.redact(input);
        for a in 0..=input.len() {
            assert_eq!(streamed(&r, input, &[a]), whole, "split at {a}");
            for b in (a..=input.len()).step_by(7) {
                assert_eq!(streamed(&r, input, &[a, b]), whole, "split at {a}, {b}");
            }
        }
        let bytewise: Vec<usize> = (0..=input.len()).collect();
        assert_eq!(streamed(&r, input, &bytewise), whole);
    }

    #[test]
    fn a_stream_holds_back_only_what_may_begin_a_secret() {
        let r = redactor(&[("TOKEN", VALUE)]);
        let mut s = StreamRedactor::new(r);
        let mut out = Vec::new();
        s.push(b"hello\n", &mut out);
        assert_eq!(out, b"hello\n", "nothing here begins a form");
        assert_eq!(s.held(), 0);
        out.clear();
        s.push(format!("say {}", &VALUE[..6]).as_bytes(), &mut out);
        assert_eq!(out, b"say ", "the start of the value waits");
        out.clear();
        s.push(format!("{}!", &VALUE[6..]).as_bytes(), &mut out);
        assert_eq!(out, b"[REDACTED:TOKEN]!");
        out.clear();
        s.push(&VALUE.as_bytes()[..3], &mut out);
        s.finish(&mut out);
        assert_eq!(
            out,
            &VALUE.as_bytes()[..3],
            "at the end, the rest goes out as it is"
        );
        // Without secrets nothing is ever held.
        let mut none = StreamRedactor::new(Redactor::default());
        let mut out = Vec::new();
        none.push(b"s3cr", &mut out);
        assert_eq!(out, b"s3cr");
    }

    #[test]
    fn a_run_longer_than_the_hold_limit_is_let_out_as_marks() {
        let r = redactor(&[("R", "aaaaaaaaaa")]);
        let mut s = StreamRedactor::new(r);
        let mut out = Vec::new();
        let run = vec![b'a'; MAX_HELD + 4096];
        s.push(&run, &mut out);
        assert!(s.held() <= MAX_HELD, "held {}", s.held());
        assert_eq!(out, b"[REDACTED:R]");
    }

    proptest::proptest! {
        #[test]
        fn a_stream_equals_the_whole(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("[a-z0-9 \n%+/=]{0,12}").expect("regex"),
                    proptest::strategy::Just(VALUE.to_owned()),
                    proptest::strategy::Just(STANDARD.encode(VALUE)),
                    proptest::strategy::Just("abcdefgh12345".to_owned()),
                ],
                0..12,
            ),
            splits in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let r = redactor(&[("A", VALUE), ("B", "abcdefgh12"), ("C", "defgh12345")]);
            let input = parts.concat();
            let mut splits = splits;
            splits.sort_unstable();
            proptest::prop_assert_eq!(streamed(&r, input.as_bytes(), &splits), r.redact(input.as_bytes()));
        }
    }

    #[test]
    fn several_secrets_in_one_pass() {
        let r = redactor(&[("A", "alpha-secret-1"), ("B", "bravo-secret-2")]);
        let b64 = STANDARD.encode("bravo-secret-2");
        assert_eq!(
            text(&r, format!("alpha-secret-1 {b64} x").as_bytes()),
            "[REDACTED:A] [REDACTED:B:base64] x"
        );
    }
}
