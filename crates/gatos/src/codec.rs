//! Reading the binary records of gatos's journals (ADR 0046) field by field.

use gatos_store::objects::Kind;
use gatos_types::{ErrorCode, Oid, Ulid};

use crate::error::{Error, Result};

/// Reads a record body field by field.
pub(crate) struct Cur<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    /// A reader at the start of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Cur<'a> {
        Cur { data, at: 0 }
    }

    /// Whether every byte was read.
    pub(crate) fn done(&self) -> bool {
        self.at == self.data.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .data
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidEnvelope,
                    "a journal record does not decode: it ends early",
                )
            })?;
        self.at += n;
        Ok(s)
    }
    pub(crate) fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub(crate) fn oid(&mut self) -> Result<Oid> {
        Ok(Oid::from_bytes(self.arr()?))
    }
    pub(crate) fn opt_oid(&mut self) -> Result<Option<Oid>> {
        let flag = self.arr::<1>()?[0];
        let o = self.oid()?;
        Ok((flag == 1).then_some(o))
    }
    pub(crate) fn ulid(&mut self) -> Result<Ulid> {
        Ok(Ulid::from_u128(u128::from_be_bytes(self.arr()?)))
    }
}

/// Appends a record's objects: their count, then each object's kind, length and bytes.
pub(crate) fn put_objects(out: &mut Vec<u8>, objects: &[(Oid, Kind, Vec<u8>)]) {
    out.extend_from_slice(
        &u32::try_from(objects.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (_, kind, data) in objects {
        out.push(kind.code());
        out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(data);
    }
}

/// Reads what [`put_objects`] wrote, at most `cap` objects held in advance; with `copy`
/// false the objects are checked but not copied. Fails on an unknown kind or a short body.
pub(crate) fn objects(c: &mut Cur<'_>, copy: bool, cap: usize) -> Result<Vec<(Kind, Vec<u8>)>> {
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(if copy { n.min(cap) } else { 0 });
    for _ in 0..n {
        let kind = Kind::from_code(c.arr::<1>()?[0]).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidEnvelope,
                "a journal record does not decode: an unknown object kind",
            )
        })?;
        let len = c.u32()? as usize;
        let data = c.take(len)?;
        if copy {
            out.push((kind, data.to_vec()));
        }
    }
    Ok(out)
}
