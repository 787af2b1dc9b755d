use gatos_testutil::{TempRepo, TestResult};

use super::store;

#[test]
fn records_round_trip_and_a_torn_tail_is_cut_off() -> TestResult {
    let repo = TempRepo::new()?;
    let store = store(&repo)?;
    let mut j = store.open_journal("messages.a")?;
    let s1 = j.append(b"one")?;
    let s2 = j.append(b"two two")?;
    assert_ne!(s1, s2);
    let len = j.file_len()?;
    assert_eq!(j.checksum_at(len)?, s2);
    assert_eq!(store.journal_len("messages.a")?, len);
    assert_eq!(store.journal_families()?, vec!["messages.a"]);
    // Every cut inside the last record leaves the first one only.
    let full = std::fs::read(j.path())?;
    for cut in (3 + 20 + 1)..len {
        std::fs::write(j.path(), &full[..usize::try_from(cut)?])?;
        let r = j.records()?;
        assert_eq!(r.bodies, vec![b"one".to_vec()], "cut at {cut}");
        assert_eq!((r.good_len, r.file_len), (3 + 20, cut));
    }
    // A flipped byte in the second body fails its checksum.
    let mut bad = full.clone();
    bad[3 + 20 + 4 + 1] ^= 1;
    std::fs::write(j.path(), &bad)?;
    assert_eq!(j.records()?.bodies.len(), 1);
    j.truncate(0)?;
    assert!(store.journal_families()?.is_empty());
    assert!(j.records()?.bodies.is_empty());
    assert_eq!(store.journal_len("absent")?, 0);
    Ok(())
}

#[test]
fn a_huge_length_field_is_a_torn_tail_not_an_allocation() -> TestResult {
    let repo = TempRepo::new()?;
    let store = store(&repo)?;
    let j = store.open_journal("messages.b")?;
    std::fs::write(j.path(), u32::MAX.to_le_bytes())?;
    let r = j.records()?;
    assert!(r.bodies.is_empty());
    assert_eq!((r.good_len, r.file_len), (0, 4));
    Ok(())
}
