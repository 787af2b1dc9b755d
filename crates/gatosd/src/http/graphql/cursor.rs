//! Signed cursors (ADR 0044 §3): `c1.` + base64url (no padding) of `payload ‖ tag`, the
//! tag the first 16 bytes of keyed BLAKE3 of the payload under a key made at start and
//! kept in memory only (a restart invalidates every cursor).
//!
//! Payload, version 1: `boot` (16 B), the state id (32 B), the connection kind (1 B),
//! `args` (16 B: BLAKE3 of the connection's filter and parent), then the position.

use base64::Engine as _;
use gatos::state::StateId;
use gatos_types::ErrorCode;

const PREFIX: &str = "c1.";
const TAG: usize = 16;
const HEAD: usize = 16 + 32 + 1 + 16;

/// Which connection a cursor pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `Ledger.jobs`.
    Jobs = 1,
    /// `Topic.messages`.
    Messages = 2,
    /// `Ledger.topics`.
    Topics = 3,
    /// `Ledger.consumerGroups`.
    Groups = 4,
    /// `Ledger.manifests`.
    Manifests = 5,
    /// `Ledger.keys`.
    Keys = 6,
    /// `Manifest.versions`.
    Versions = 7,
}

/// The daemon's cursor key and run id.
pub struct Codec {
    key: [u8; 32],
    boot: [u8; 16],
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

/// Why a cursor was refused: its code, message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `InvalidInput` or `Gone`.
    pub code: ErrorCode,
    /// What to tell the client.
    pub message: String,
    /// The cursor's state, when it was readable and differs from the request's.
    pub state: Option<String>,
}

fn tampered() -> Refused {
    Refused {
        code: ErrorCode::InvalidInput,
        message: "the cursor is not one this daemon made (tampered or malformed); start again from the first page".to_owned(),
        state: None,
    }
}

/// BLAKE3 of a connection's arguments other than the page's (first, after), truncated.
pub fn args_digest(parts: &[&str]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(p.as_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

impl Codec {
    /// A codec with a fresh random key.
    pub fn new() -> Codec {
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        let mut boot = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut key);
        rand::rngs::OsRng.fill_bytes(&mut boot);
        Codec { key, boot }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG] {
        let mut t = [0u8; TAG];
        t.copy_from_slice(&blake3::keyed_hash(&self.key, payload).as_bytes()[..TAG]);
        t
    }

    /// The cursor of `position` in connection `kind` with `args`, at `state`.
    pub fn encode(&self, state: &StateId, kind: Kind, args: &[u8; 16], position: &[u8]) -> String {
        let mut p = Vec::with_capacity(HEAD + position.len() + TAG);
        p.extend_from_slice(&self.boot);
        p.extend_from_slice(state.as_bytes());
        p.push(kind as u8);
        p.extend_from_slice(args);
        p.extend_from_slice(position);
        let t = self.tag(&p);
        p.extend_from_slice(&t);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(p)
        )
    }

    /// The position a cursor names, checked against the request's state, connection and
    /// arguments.
    ///
    /// # Errors
    /// `InvalidInput` for a tampered or malformed cursor, or one of another state,
    /// connection or filter; `Gone` for one from an earlier run of the daemon.
    pub fn decode(
        &self,
        cursor: &str,
        state: &StateId,
        kind: Kind,
        args: &[u8; 16],
    ) -> Result<Vec<u8>, Refused> {
        let body = cursor.strip_prefix(PREFIX).ok_or_else(tampered)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| tampered())?;
        if bytes.len() < HEAD + TAG {
            return Err(tampered());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG);
        let want = blake3::Hash::from(self.full_tag(payload));
        let mut got = [0u8; 32];
        got[..TAG].copy_from_slice(tag);
        got[TAG..].copy_from_slice(&want.as_bytes()[TAG..]);
        // Constant-time comparison (blake3::Hash's ==) of the truncated tag.
        if blake3::Hash::from(got) != want {
            if payload[..16] != self.boot {
                // Made under another key: most likely an earlier run of the daemon.
                return Err(gone());
            }
            return Err(tampered());
        }
        let mut st = [0u8; 32];
        st.copy_from_slice(&payload[16..48]);
        let st = StateId(st);
        if st != *state {
            return Err(Refused {
                code: ErrorCode::InvalidInput,
                message: format!(
                    "the cursor pages state {st}, not {state}: pass stateRef: \"{st}\" to go on paging it"
                ),
                state: Some(st.to_string()),
            });
        }
        if payload[48] != kind as u8 || payload[49..65] != args[..] {
            return Err(Refused {
                code: ErrorCode::InvalidInput,
                message: "the cursor pages another list or another filter: pass the same arguments as the page it came from".to_owned(),
                state: None,
            });
        }
        Ok(payload[HEAD..].to_vec())
    }

    fn full_tag(&self, payload: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, payload).as_bytes()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

fn gone() -> Refused {
    Refused {
        code: ErrorCode::Gone,
        message: "the cursor is from an earlier run of gatosd (cursors do not outlive a restart); start again from the first page".to_owned(),
        state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_any_change_is_refused() {
        let c = Codec::new();
        let s = StateId([3; 32]);
        let args = args_digest(&["q"]);
        let cur = c.encode(&s, Kind::Jobs, &args, b"POS");
        assert_eq!(c.decode(&cur, &s, Kind::Jobs, &args), Ok(b"POS".to_vec()));
        // Every flipped character is refused.
        for i in PREFIX.len()..cur.len() {
            let mut b = cur.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(b).unwrap();
            if bad == cur {
                continue;
            }
            let e = c.decode(&bad, &s, Kind::Jobs, &args).unwrap_err();
            assert!(
                matches!(e.code, ErrorCode::InvalidInput | ErrorCode::Gone),
                "{i}: {e:?}"
            );
        }
        assert_eq!(
            c.decode("c2.xx", &s, Kind::Jobs, &args).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        let other = StateId([4; 32]);
        let e = c.decode(&cur, &other, Kind::Jobs, &args).unwrap_err();
        assert_eq!(e.state, Some(s.to_string()));
        assert!(c.decode(&cur, &s, Kind::Messages, &args).is_err());
        assert!(
            c.decode(&cur, &s, Kind::Jobs, &args_digest(&["r"]))
                .is_err()
        );
        // Another run (another key and boot): Gone.
        let later = Codec::new();
        assert_eq!(
            later.decode(&cur, &s, Kind::Jobs, &args).unwrap_err().code,
            ErrorCode::Gone
        );
    }
}
