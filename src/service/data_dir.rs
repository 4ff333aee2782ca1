//! A provider daemon's data directory (`juxmem provider --data-dir DIR`): who the provider is
//! and the blocks it holds, on disk, so that a whole cluster (manager replicas and providers)
//! can stop and start again with its data. The provider's [`Store`](super::store::Store) writes
//! it after every change of a block and reads it back at start.
//!
//! Files, all in DIR: `provider` (the provider's identity: name, incarnation, address),
//! `a<id>.meta` (an array's entry), `a<id>.b<block>.state` (a block copy's [`CopyState`], its
//! known home and the stamps it holds), `a<id>.b<block>.v<version>.e<epoch>` (one snapshot's
//! bytes, immutable). Each file is written under a temporary name and renamed into place, a
//! snapshot before the state that lists it, so a provider killed at any point leaves a
//! directory that reads back consistently (orphan snapshots are removed at start). Nothing is
//! fsynced: a killed process loses nothing (the kernel holds its pages); a host that loses
//! power may lose its last writes, which the block's copies on other hosts cover, as they
//! cover a host that never comes back. A lock file keeps two providers out of one directory.
//! Only files named as above are ever touched: the directory may hold others. What a provider
//! held when its manager refused it (it was declared dead while stopped) is not deleted but
//! moved aside, to `stale-<seconds since 1970>/`, for an operator to recover or remove.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::copy::CopyState;
use crate::service::protocol::{ArrayId, ArrayMeta, NodeInfo, Stamp};
use crate::service::store::Data;

/// Largest identity, entry or state file read back (an entry names every block's copies).
const MAX_RECORD: u64 = 64 << 20;

/// Who a provider is, kept so that it comes back as the same member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Its name, incarnation and address.
    pub node: NodeInfo,
}

/// A block copy as its state file keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedBlock {
    /// Bytes of the block.
    pub bytes: u64,
    /// Term, role and epochs.
    pub copy: CopyState,
    /// The home at a term, as the block's manager said.
    pub home: Option<(u64, NodeInfo)>,
    /// Snapshots held, ascending.
    pub stamps: Vec<Stamp>,
}

/// An array read back: its entry and the blocks held, each with its snapshots.
pub struct Loaded {
    /// The entry.
    pub meta: ArrayMeta,
    /// Block -> its state and its snapshots' data.
    pub blocks: BTreeMap<u32, (SavedBlock, Vec<(Stamp, Data)>)>,
}

/// An open data directory (locked for this process).
pub struct DataDir {
    path: PathBuf,
    /// Holds the `flock` while open.
    _lock: File,
}

/// The array a file of ours belongs to: `a<id>.meta`, `a<id>.b<block>.state`,
/// `a<id>.b<block>.v<version>.e<epoch>`, or one of those being written (`.<name>.tmp`).
fn array_of(name: &str) -> Option<ArrayId> {
    let name = match name.strip_prefix('.') {
        Some(n) => n.strip_suffix(".tmp")?,
        None => name,
    };
    let (id, rest) = name.strip_prefix('a')?.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let id: ArrayId = id.parse().ok().filter(|_| digits(id))?;
    if rest == "meta" {
        return Some(id);
    }
    let (block, rest) = rest.strip_prefix('b')?.split_once('.')?;
    if !digits(block) {
        return None;
    }
    if rest == "state" {
        return Some(id);
    }
    let (v, e) = rest.strip_prefix('v')?.split_once(".e")?;
    (digits(v) && digits(e)).then_some(id)
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::Capacity(format!(
        "cannot write {} (the provider's data directory): {e}",
        path.display()
    ))
}

fn read_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Protocol(format!(
        "cannot read {} (the provider's data directory): {why}",
        path.display()
    ))
}

impl DataDir {
    /// Opens (creating) `path`, or `Busy` if another provider has it open.
    pub fn open(path: &Path) -> Result<DataDir> {
        std::fs::create_dir_all(path).map_err(|e| write_error(path, e))?;
        let lock_path = path.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| write_error(&lock_path, e))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Busy(format!(
                "data directory {} is in use by another provider",
                path.display()
            )));
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_file(
        &self,
        name: &str,
        f: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<()> {
        let tmp = self.path.join(format!(".{name}.tmp"));
        let dest = self.path.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| write_error(&tmp, e))?;
        f(&mut file).map_err(|e| write_error(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &dest).map_err(|e| write_error(&dest, e))
    }

    fn write_record<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(value)
            .map_err(|e| Error::Protocol(format!("cannot encode {name}: {e}")))?;
        self.write_file(name, |f| f.write_all(&bytes))
    }

    fn read_record<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path.join(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(&path, e))?;
        if bytes.len() as u64 > MAX_RECORD {
            return Err(read_error(&path, format!("larger than {MAX_RECORD} bytes")));
        }
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| read_error(&path, e))
    }

    /// The identity kept here, if any.
    pub fn identity(&self) -> Result<Option<Identity>> {
        self.read_record("provider")
    }

    /// Keeps `identity`.
    pub fn set_identity(&self, identity: &Identity) -> Result<()> {
        self.write_record("provider", identity)
    }

    /// Forgets the identity (the provider starts as a new member).
    pub fn forget_identity(&self) {
        let _ = std::fs::remove_file(self.path.join("provider"));
    }

    /// Keeps an array's entry.
    pub fn save_meta(&self, meta: &ArrayMeta) -> Result<()> {
        self.write_record(&format!("a{}.meta", meta.id), meta)
    }

    fn snapshot_name(array: ArrayId, block: u32, s: Stamp) -> String {
        format!("a{array}.b{block}.v{}.e{}", s.version, s.epoch)
    }

    /// Keeps one snapshot's bytes (the initial zeros as a sparse file).
    pub fn save_snapshot(
        &self,
        array: ArrayId,
        block: u32,
        stamp: Stamp,
        data: &Data,
    ) -> Result<()> {
        self.write_file(&Self::snapshot_name(array, block, stamp), |f| {
            if stamp == Stamp::default() {
                f.set_len(data.len() as u64)
            } else {
                f.write_all(data.as_bytes())
            }
        })
    }

    /// Removes one snapshot's bytes.
    pub fn remove_snapshot(&self, array: ArrayId, block: u32, stamp: Stamp) {
        let _ = std::fs::remove_file(self.path.join(Self::snapshot_name(array, block, stamp)));
    }

    /// Keeps a block copy's state (after the snapshots it lists).
    pub fn save_block(&self, array: ArrayId, block: u32, saved: &SavedBlock) -> Result<()> {
        self.write_record(&format!("a{array}.b{block}.state"), saved)
    }

    /// Removes every file of an array, its entry first (so that a provider killed meanwhile
    /// drops the rest when it starts again).
    pub fn remove_array(&self, array: ArrayId) {
        let _ = std::fs::remove_file(self.path.join(format!("a{array}.meta")));
        for name in self.names() {
            if array_of(&name) == Some(array) {
                let _ = std::fs::remove_file(self.path.join(name));
            }
        }
    }

    /// Moves every array's files aside (to `stale-<seconds>/`, returned) for an operator to
    /// recover or remove; the identity stays until replaced. `None` if there were none.
    pub fn set_aside(&self) -> Result<Option<PathBuf>> {
        let names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| array_of(n).is_some())
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = self.path.join(format!("stale-{secs}"));
        std::fs::create_dir_all(&aside).map_err(|e| write_error(&aside, e))?;
        for n in names {
            let to = aside.join(&n);
            std::fs::rename(self.path.join(&n), &to).map_err(|e| write_error(&to, e))?;
        }
        Ok(Some(aside))
    }

    /// The names in the directory that are ours (entries, states, snapshots, temporaries).
    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.path)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| array_of(n).is_some() || n == ".provider.tmp")
                    .collect()
            })
            .unwrap_or_default()
    }

    fn read_snapshot(&self, array: ArrayId, block: u32, stamp: Stamp, bytes: u64) -> Result<Data> {
        let path = self.path.join(Self::snapshot_name(array, block, stamp));
        let mut file = File::open(&path).map_err(|e| read_error(&path, e))?;
        let len = file.metadata().map_err(|e| read_error(&path, e))?.len();
        if len != bytes {
            return Err(read_error(
                &path,
                format!("{len} bytes; the block has {bytes}"),
            ));
        }
        let mut data = Data::for_overwrite(bytes as usize)?;
        file.read_exact(data.as_bytes_mut())
            .map_err(|e| read_error(&path, e))?;
        Ok(data)
    }

    /// Every array kept here with its blocks' snapshots; files no state lists (left by a
    /// process killed between writing a snapshot and its state, or after dropping one) are
    /// removed. A state whose snapshot is missing or of the wrong size is an error: the
    /// directory was damaged, and the copy it describes cannot be trusted.
    pub fn load(&self) -> Result<Vec<Loaded>> {
        let names = self.names();
        let mut arrays: BTreeMap<ArrayId, Loaded> = BTreeMap::new();
        for name in &names {
            let Some(id) = name
                .strip_prefix('a')
                .and_then(|r| r.strip_suffix(".meta"))
                .and_then(|r| r.parse::<ArrayId>().ok())
            else {
                continue;
            };
            if let Some(meta) = self.read_record::<ArrayMeta>(name)? {
                arrays.insert(
                    id,
                    Loaded {
                        meta,
                        blocks: BTreeMap::new(),
                    },
                );
            }
        }
        let mut wanted: Vec<String> = Vec::new();
        for name in &names {
            let Some((id, block)) = name
                .strip_prefix('a')
                .and_then(|r| r.strip_suffix(".state"))
                .and_then(|r| r.split_once(".b"))
                .and_then(|(a, b)| Some((a.parse::<ArrayId>().ok()?, b.parse::<u32>().ok()?)))
            else {
                continue;
            };
            let Some(array) = arrays.get_mut(&id) else {
                continue; // its entry went first: the array was being dropped
            };
            let Some(saved) = self.read_record::<SavedBlock>(name)? else {
                continue;
            };
            let mut snaps = Vec::with_capacity(saved.stamps.len());
            for &s in &saved.stamps {
                snaps.push((s, self.read_snapshot(id, block, s, saved.bytes)?));
                wanted.push(Self::snapshot_name(id, block, s));
            }
            wanted.push(name.clone());
            array.blocks.insert(block, (saved, snaps));
        }
        // An entry with no block held (its array was being dropped) goes too.
        arrays.retain(|_, a| !a.blocks.is_empty());
        for a in arrays.values() {
            wanted.push(format!("a{}.meta", a.meta.id));
        }
        for name in &names {
            if !wanted.contains(name) {
                let _ = std::fs::remove_file(self.path.join(name));
            }
        }
        Ok(arrays.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_files_are_ever_removed_or_moved() {
        assert_eq!(array_of("a7.meta"), Some(7));
        assert_eq!(array_of("a7.b0.state"), Some(7));
        assert_eq!(array_of("a7.b12.v3.e4"), Some(7));
        assert_eq!(array_of(".a7.b12.v3.e4.tmp"), Some(7));
        for foreign in [
            "abc.txt",
            "a.meta",
            "a7",
            "a7.b.state",
            "a7.b0.v3",
            "a7.b0.v.e1",
            ".bashrc",
            "a-1.meta",
            "a7.b0.v3.e4.old",
            "notes",
        ] {
            assert_eq!(array_of(foreign), None, "{foreign}");
        }
        let d = std::env::temp_dir().join(format!("juxmem-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let dir = DataDir::open(&d).unwrap();
        for f in ["abc.txt", ".bashrc", "a7.b0.v3.e4.old", "a9.b0.v1.e1"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::write(d.join("a8.meta"), b"\xff\xff\xff").unwrap();
        // The stray snapshot (no state lists it) goes; the others are not ours.
        let e = dir.load().err();
        assert!(
            e.is_some_and(|e| e.to_string().contains("a8.meta")),
            "a damaged entry is named"
        );
        std::fs::remove_file(d.join("a8.meta")).unwrap();
        assert!(dir.load().unwrap().is_empty());
        assert!(!d.join("a9.b0.v1.e1").exists());
        for f in ["abc.txt", ".bashrc", "a7.b0.v3.e4.old"] {
            assert!(d.join(f).exists(), "{f} was removed");
        }
        // Set aside: ours move, the others stay.
        std::fs::write(d.join("a5.b0.v1.e1"), b"y").unwrap();
        let aside = dir.set_aside().unwrap().expect("moved");
        assert!(aside.join("a5.b0.v1.e1").exists() && !d.join("a5.b0.v1.e1").exists());
        assert!(d.join("abc.txt").exists());
        assert_eq!(dir.set_aside().unwrap(), None, "nothing left to move");
        drop(dir);
        let _ = std::fs::remove_dir_all(&d);
    }
}
