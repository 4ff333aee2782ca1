//! A replica's durable state in its data directory: what raft must keep across a crash (its
//! log entries, its hard state: term, vote and commit index) and the latest snapshot.
//!
//! - `log`: one append-only file of records (`tag u8, length u32, CRC-32 u32, payload`), each
//!   an entry or a hard state, in the order raft produced them; one `fsync` per
//!   [`Disk::append`] (raft's `Ready`), before the replica sends its votes and acknowledgements,
//!   unless all it keeps is a newer commit index (as etcd's `MustSync`: the term and the vote
//!   must survive a crash, the commit index is learned again from the leader; a later `fsync`
//!   keeps it too). That spares the leader a second `fsync` per request, after the majority
//!   acknowledged and before it answers.
//!   Replayed at start: an entry at an index already seen replaces it and everything after it
//!   (raft overwrote a conflicting suffix), the last hard state wins, and a torn or corrupt
//!   record ends the log (a crash in the middle of a write; nothing after it was acknowledged).
//! - `snapshot`: the latest snapshot (metadata and the machine's state), replaced atomically
//!   (written aside, synced, renamed, directory synced). A compaction writes it, then rewrites
//!   `log` with the entries after it, the same way.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};

use crate::error::{Error, Result};

const ENTRY: u8 = 1;
const HARD: u8 = 2;
/// Largest record accepted when replaying (a snapshot is not a record).
const MAX_RECORD: usize = 64 << 20;

/// What a data directory held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The latest snapshot, if one was taken.
    pub snapshot: Option<Snapshot>,
    /// Entries after it, in index order.
    pub entries: Vec<Entry>,
    /// The last hard state kept.
    pub hard: Option<HardState>,
}

/// A replica's data directory, open for appending.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    log: File,
    /// Where each entry's record starts in `log`, to cut a conflicting suffix.
    offsets: BTreeMap<u64, u64>,
    len: u64,
    /// The hard state last kept (written again after a cut, which may have removed it).
    hard: HardState,
    /// `fsync`s done (for tests).
    syncs: u64,
}

fn io(doing: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Network(format!("{doing} {}: {e}", path.display()))
}

fn encode<M: protobuf::Message>(m: &M) -> Result<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| Error::Protocol(format!("encoding raft state: {e}")))
}

fn record(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(9 + payload.len());
    r.push(tag);
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// Writes `bytes` to `path` atomically: aside, synced, renamed, directory synced.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename", &tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync", dir, e))
}

impl Disk {
    /// Opens (or creates) the data directory `dir` and reads back what it holds.
    pub fn open(dir: &Path) -> Result<(Disk, Loaded)> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let mut loaded = Loaded::default();
        let snap_path = dir.join("snapshot");
        if snap_path.exists() {
            let bytes = std::fs::read(&snap_path).map_err(|e| io("cannot read", &snap_path, e))?;
            let mut s = Snapshot::default();
            s.merge_from_bytes(&bytes)
                .map_err(|e| Error::Protocol(format!("{} is corrupt: {e}", snap_path.display())))?;
            loaded.snapshot = Some(s);
        }
        let log_path = dir.join("log");
        let mut bytes = Vec::new();
        if log_path.exists() {
            File::open(&log_path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io("cannot read", &log_path, e))?;
        }
        let mut offsets = BTreeMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut pos = 0usize;
        while let Some((tag, payload)) = next_record(&bytes[pos..]) {
            match tag {
                ENTRY => {
                    let mut e = Entry::default();
                    if e.merge_from_bytes(payload).is_err() {
                        break;
                    }
                    // An entry at an index already seen cuts the log there.
                    while entries.last().is_some_and(|l| l.index >= e.index) {
                        let l = entries.pop().expect("last");
                        offsets.remove(&l.index);
                    }
                    offsets.insert(e.index, pos as u64);
                    entries.push(e);
                }
                HARD => {
                    let mut h = HardState::default();
                    if h.merge_from_bytes(payload).is_err() {
                        break;
                    }
                    loaded.hard = Some(h);
                }
                _ => break,
            }
            pos += 9 + payload.len();
        }
        if pos < bytes.len() {
            tracing::warn!(
                "{}: {} bytes after the last whole record dropped (a write cut by a crash)",
                log_path.display(),
                bytes.len() - pos
            );
        }
        // Entries the snapshot already covers are not needed.
        let covered = loaded
            .snapshot
            .as_ref()
            .map_or(0, |s| s.get_metadata().index);
        entries.retain(|e| e.index > covered);
        loaded.entries = entries;
        let log = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&log_path)
            .map_err(|e| io("cannot open", &log_path, e))?;
        log.set_len(pos as u64)
            .map_err(|e| io("cannot cut", &log_path, e))?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            log,
            offsets,
            len: pos as u64,
            syncs: 0,
            hard: loaded.hard.clone().unwrap_or_default(),
        };
        Ok((disk, loaded))
    }

    /// Keeps `entries` (cutting any kept suffix they replace) and the new hard state, synced
    /// unless only the commit index moved.
    pub fn append(&mut self, entries: &[Entry], hard: Option<&HardState>) -> Result<()> {
        if entries.is_empty() && hard.is_none() {
            return Ok(());
        }
        let sync = !entries.is_empty()
            || hard.is_some_and(|h| h.term != self.hard.term || h.vote != self.hard.vote);
        let mut buf = Vec::new();
        if let Some(first) = entries.first() {
            if let Some((&_, &at)) = self.offsets.range(first.index..).next() {
                // raft replaces a conflicting suffix: cut it, and keep the hard state again
                // (the cut may have removed its last record).
                let path = self.dir.join("log");
                self.log
                    .set_len(at)
                    .map_err(|e| io("cannot cut", &path, e))?;
                self.len = at;
                self.offsets.retain(|&i, _| i < first.index);
                if hard.is_none() {
                    buf.extend(record(HARD, &encode(&self.hard)?));
                }
            }
        }
        for e in entries {
            self.offsets.insert(e.index, self.len + buf.len() as u64);
            buf.extend(record(ENTRY, &encode(e)?));
        }
        if let Some(h) = hard {
            self.hard = h.clone();
            buf.extend(record(HARD, &encode(h)?));
        }
        self.write(&buf, sync)
    }

    fn write(&mut self, buf: &[u8], sync: bool) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let path = self.dir.join("log");
        self.log
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.log.write_all(buf))
            .and_then(|()| if sync { self.log.sync_data() } else { Ok(()) })
            .map_err(|e| io("cannot write", &path, e))?;
        self.syncs += u64::from(sync);
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Keeps `snapshot` as the latest, and the log as `rest` (the entries after it) with the
    /// current hard state: the snapshot first, so that a crash between the two leaves a
    /// snapshot and a log that overlaps it (harmless).
    pub fn compact(&mut self, snapshot: &Snapshot, rest: &[Entry]) -> Result<()> {
        replace(&self.dir.join("snapshot"), &encode(snapshot)?)?;
        let mut buf = record(HARD, &encode(&self.hard)?);
        let mut offsets = BTreeMap::new();
        for e in rest {
            offsets.insert(e.index, buf.len() as u64);
            buf.extend(record(ENTRY, &encode(e)?));
        }
        let path = self.dir.join("log");
        replace(&path, &buf)?;
        self.log = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, e))?;
        self.offsets = offsets;
        self.len = buf.len() as u64;
        Ok(())
    }

    /// Bytes in the log file (for tests and status).
    pub fn log_bytes(&self) -> u64 {
        self.len
    }
}

/// The record at the start of `bytes`, if it is whole and its checksum holds.
fn next_record(bytes: &[u8]) -> Option<(u8, &[u8])> {
    if bytes.len() < 9 {
        return None;
    }
    let len = u32::from_le_bytes(bytes[1..5].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[5..9].try_into().ok()?);
    if len > MAX_RECORD || bytes.len() < 9 + len {
        return None;
    }
    let payload = &bytes[9..9 + len];
    (crc32fast::hash(payload) == crc).then_some((bytes[0], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("juxmem-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn hard(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    #[test]
    fn a_hard_state_that_only_moves_the_commit_index_is_kept_without_an_fsync() {
        let d = dir("commit-only");
        {
            let (mut disk, _) = Disk::open(&d).unwrap();
            disk.append(&[entry(1, 1, b"a")], Some(&hard(1, 1, 0)))
                .unwrap();
            assert_eq!(disk.syncs, 1);
            disk.append(&[], Some(&hard(1, 1, 1))).unwrap();
            assert_eq!(disk.syncs, 1, "a newer commit index alone is not synced");
            disk.append(&[], Some(&hard(2, 1, 1))).unwrap();
            assert_eq!(disk.syncs, 2, "a new term is");
            disk.append(&[], Some(&hard(2, 3, 1))).unwrap();
            assert_eq!(disk.syncs, 3, "a new vote is");
            disk.append(&[entry(2, 2, b"b")], None).unwrap();
            assert_eq!(disk.syncs, 4, "entries are");
            disk.append(&[], Some(&hard(2, 3, 2))).unwrap();
        }
        // The process stopped (the host did not): the unsynced record is there too.
        let (_, loaded) = Disk::open(&d).unwrap();
        assert_eq!(loaded.hard, Some(hard(2, 3, 2)));
        assert_eq!(loaded.entries.len(), 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_and_hard_state_come_back_with_conflicts_resolved() {
        let d = dir("replay");
        {
            let (mut disk, loaded) = Disk::open(&d).unwrap();
            assert!(loaded.entries.is_empty() && loaded.hard.is_none());
            disk.append(
                &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
                Some(&hard(1, 1, 1)),
            )
            .unwrap();
            // A new leader's entries replace 3 onward; the hard state stays.
            disk.append(&[entry(3, 2, b"C"), entry(4, 2, b"D")], None)
                .unwrap();
        }
        let (_, loaded) = Disk::open(&d).unwrap();
        let got: Vec<(u64, u64, Vec<u8>)> = loaded
            .entries
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, b"a".to_vec()),
                (2, 1, b"b".to_vec()),
                (3, 2, b"C".to_vec()),
                (4, 2, b"D".to_vec())
            ]
        );
        assert_eq!(loaded.hard, Some(hard(1, 1, 1)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let d = dir("torn");
        {
            let (mut disk, _) = Disk::open(&d).unwrap();
            disk.append(
                &[entry(1, 1, b"a"), entry(2, 1, b"b")],
                Some(&hard(1, 1, 2)),
            )
            .unwrap();
        }
        let log = d.join("log");
        let full = std::fs::read(&log).unwrap();
        // Cut in the middle of the last record (the hard state): the entries stay.
        std::fs::write(&log, &full[..full.len() - 3]).unwrap();
        let (mut disk, loaded) = Disk::open(&d).unwrap();
        assert_eq!(loaded.entries.len(), 2);
        assert_eq!(loaded.hard, None);
        // And appending goes on after the last whole record.
        disk.append(&[entry(3, 1, b"c")], Some(&hard(1, 1, 3)))
            .unwrap();
        drop(disk);
        // A flipped byte in an entry ends the log there.
        let (_, loaded) = Disk::open(&d).unwrap();
        assert_eq!(loaded.entries.len(), 3);
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[12] ^= 0x40; // inside the first entry's payload
        std::fs::write(&log, &bytes).unwrap();
        let (_, loaded) = Disk::open(&d).unwrap();
        assert!(loaded.entries.is_empty() && loaded.hard.is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_compaction_keeps_the_snapshot_and_the_entries_after_it() {
        let d = dir("compact");
        {
            let (mut disk, _) = Disk::open(&d).unwrap();
            let es: Vec<Entry> = (1..=10).map(|i| entry(i, 1, b"x")).collect();
            disk.append(&es, Some(&hard(1, 2, 10))).unwrap();
            let before = disk.log_bytes();
            let mut s = Snapshot {
                data: b"state at 8".to_vec().into(),
                ..Default::default()
            };
            s.mut_metadata().index = 8;
            s.mut_metadata().term = 1;
            disk.compact(&s, &es[8..]).unwrap();
            assert!(disk.log_bytes() < before);
            disk.append(&[entry(11, 1, b"y")], None).unwrap();
        }
        let (_, loaded) = Disk::open(&d).unwrap();
        let s = loaded.snapshot.unwrap();
        assert_eq!(s.get_metadata().index, 8);
        assert_eq!(&s.data[..], b"state at 8");
        let idx: Vec<u64> = loaded.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![9, 10, 11]);
        assert_eq!(loaded.hard, Some(hard(1, 2, 10)));
        let _ = std::fs::remove_dir_all(&d);
    }
}
