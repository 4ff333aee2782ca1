//! Checkpoint and restart of arrays (P3's `p3checkpoint`/`p3restart`): a released version
//! written to a directory in a portable, documented format, and restored into a running
//! federation under any name and layout.
//!
//! # Format (version 1)
//!
//! A checkpoint directory holds one file per block of the layout it was written in, and a
//! manifest:
//!
//! - `block-<b>.bin`: block `b`'s elements in that layout's local order (row-major over the
//!   block's local shape), little-endian, nothing else.
//! - `manifest`: text, one `key=value` per line after the first line `juxmem-checkpoint 1`:
//!   `name`, `type` (`f64`, `i32`, ...), `shape` (comma-separated extents), `dists` (one per
//!   dimension: `block`, `cyclic`, `block-cyclic(<b>)`), `grid` (processes per dimension),
//!   `version` (the version checkpointed), one `attribute.<key>=<value>` per attribute of the
//!   array, then for each block `block.<b>=<file> <bytes> <crc32 in hex>` (CRC-32, IEEE).
//!
//! The manifest is written last (each block file is written aside, synced and renamed first):
//! a directory without a manifest is an unfinished checkpoint. Every block file is checked
//! against its size and CRC before anything is restored; a mismatch is a typed error naming
//! the file, and no array is left behind.
//!
//! # A namespace's checkpoint (version 1)
//!
//! A directory holding one array checkpoint (above) per array under the namespace, in the
//! subdirectory of its path relative to the namespace (`day1/t` for `fc/day1/t` of `fc`), and
//! `namespace-manifest`, written last: text, the first line `juxmem-namespace-checkpoint 1`,
//! then `name=<the namespace>`, one `namespace=<relative path>` per namespace under it, and one
//! `array=<relative path> <type> <version>` per array. Relative paths are names (see
//! [`check_name`](crate::service::protocol::check_name)) with no `.` or `..` segment.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::element::{as_bytes, as_bytes_mut, ElemType, Element};
use crate::error::{Error, Result};
use crate::layout::{Dist, Layout};
use crate::plan::Plan;

use super::group::{agree, Group};

/// The manifest's file name.
pub const MANIFEST: &str = "manifest";
const MAGIC: &str = "juxmem-checkpoint 1";
/// Largest manifest read (a block line is ~40 bytes: a million blocks fit).
const MAX_MANIFEST: u64 = 64 << 20;

/// One block's file, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFile {
    /// File name, inside the checkpoint directory.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// CRC-32 (IEEE) of its contents.
    pub crc32: u32,
}

/// A checkpoint's manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The array's name when it was checkpointed.
    pub name: String,
    /// Element type.
    pub elem: ElemType,
    /// The layout the block files are in.
    pub layout: Layout,
    /// The version checkpointed.
    pub version: u64,
    /// The array's attributes.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// One per block of `layout`.
    pub blocks: Vec<BlockFile>,
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

impl Manifest {
    /// The manifest's text.
    pub fn render(&self) -> String {
        let dists: Vec<String> = self.layout.dists().iter().map(Dist::to_string).collect();
        let mut s = format!(
            "{MAGIC}\nname={}\ntype={}\nshape={}\ndists={}\ngrid={}\nversion={}\n",
            self.name,
            self.elem,
            join(&self.layout.shape()),
            dists.join(","),
            join(&self.layout.grid()),
            self.version
        );
        for (k, v) in &self.attributes {
            s += &format!("attribute.{k}={v}\n");
        }
        for (b, f) in self.blocks.iter().enumerate() {
            s += &format!("block.{b}={} {} {:08x}\n", f.file, f.bytes, f.crc32);
        }
        s
    }

    /// Parses a manifest (`origin` names it in errors); checks it is whole and consistent.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let bad = |why: String| Error::InvalidArgument(format!("{origin}: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(format!(
                "not a juxmem checkpoint manifest (no {MAGIC:?} line)"
            )));
        }
        let mut kv = std::collections::BTreeMap::new();
        for line in lines {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("a line without '=': {line:?}")))?;
            if kv.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(format!("{k} given twice")));
            }
        }
        let get = |k: &str| {
            kv.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("no {k} line")))
        };
        let nums = |k: &str| -> Result<Vec<u64>> {
            get(k)?
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<u64>()
                        .map_err(|e| bad(format!("{k}: {x:?}: {e}")))
                })
                .collect()
        };
        let ty = get("type")?;
        let elem = ElemType::ALL
            .iter()
            .copied()
            .find(|t| t.name() == ty)
            .ok_or_else(|| bad(format!("unknown element type {ty:?}")))?;
        let dists: Vec<Dist> = get("dists")?
            .split(',')
            .map(|d| d.parse::<Dist>().map_err(|e| bad(format!("dists: {e}"))))
            .collect::<Result<_>>()?;
        let layout = Layout::new(&nums("shape")?, &dists, &nums("grid")?)
            .map_err(|e| bad(format!("layout: {e}")))?;
        let version = get("version")?
            .parse::<u64>()
            .map_err(|e| bad(format!("version: {e}")))?;
        let mut blocks = Vec::new();
        for b in 0..layout.nprocs() {
            let line = get(&format!("block.{b}"))?;
            let parts: Vec<&str> = line.split(' ').collect();
            let [file, bytes, crc] = parts[..] else {
                return Err(bad(format!(
                    "block.{b}: want 'file bytes crc32', got {line:?}"
                )));
            };
            if file.contains('/') || file.starts_with('.') || file.is_empty() {
                return Err(bad(format!(
                    "block.{b}: file {file:?} outside the directory"
                )));
            }
            let bytes = bytes
                .parse::<u64>()
                .map_err(|e| bad(format!("block.{b} size: {e}")))?;
            let want = layout.local_len(b)? * elem.size() as u64;
            if bytes != want {
                return Err(bad(format!(
                    "block.{b}: {bytes} bytes listed, its layout holds {want}"
                )));
            }
            let crc32 =
                u32::from_str_radix(crc, 16).map_err(|e| bad(format!("block.{b} crc: {e}")))?;
            blocks.push(BlockFile {
                file: file.to_string(),
                bytes,
                crc32,
            });
        }
        let attributes: std::collections::BTreeMap<String, String> = kv
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("attribute.")?.to_string(), v.clone())))
            .collect();
        crate::service::protocol::check_attributes(&attributes)
            .map_err(|e| bad(format!("attributes: {e}")))?;
        if kv.len() != 6 + blocks.len() + attributes.len() {
            return Err(bad(
                "lines this version does not know (block lines beyond the layout's?)".into(),
            ));
        }
        Ok(Manifest {
            name: get("name")?,
            elem,
            layout,
            version,
            attributes,
            blocks,
        })
    }
}

/// A namespace checkpoint's manifest file name.
pub const NAMESPACE_MANIFEST: &str = "namespace-manifest";
const NAMESPACE_MAGIC: &str = "juxmem-namespace-checkpoint 1";

/// One array of a namespace's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceArray {
    /// Its path relative to the namespace (and the subdirectory of its checkpoint).
    pub path: String,
    /// Element type.
    pub elem: ElemType,
    /// The version checkpointed.
    pub version: u64,
}

/// A namespace checkpoint's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceManifest {
    /// The namespace checkpointed.
    pub name: String,
    /// The namespaces under it, relative to it, by name.
    pub namespaces: Vec<String>,
    /// The arrays under it, by path.
    pub arrays: Vec<NamespaceArray>,
}

impl NamespaceManifest {
    /// The manifest's text.
    pub fn render(&self) -> String {
        let mut s = format!("{NAMESPACE_MAGIC}\nname={}\n", self.name);
        for n in &self.namespaces {
            s += &format!("namespace={n}\n");
        }
        for a in &self.arrays {
            s += &format!("array={} {} {}\n", a.path, a.elem, a.version);
        }
        s
    }

    /// Parses and checks a namespace manifest (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<NamespaceManifest> {
        let bad = |why: String| Error::InvalidArgument(format!("{origin}: {why}"));
        let mut lines = text.lines();
        if lines.next() != Some(NAMESPACE_MAGIC) {
            return Err(bad(format!(
                "not a juxmem namespace checkpoint (no {NAMESPACE_MAGIC:?} line)"
            )));
        }
        let mut m = NamespaceManifest::default();
        let mut named = false;
        for line in lines {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("a line without '=': {line:?}")))?;
            match k {
                "name" if !named => {
                    crate::service::protocol::check_name(v).map_err(|e| bad(e.to_string()))?;
                    m.name = v.to_string();
                    named = true;
                }
                "namespace" => {
                    relative_dir(v).map_err(|e| bad(e.to_string()))?;
                    m.namespaces.push(v.to_string());
                }
                "array" => {
                    let [path, ty, version] = v.split(' ').collect::<Vec<_>>()[..] else {
                        return Err(bad(format!("array: want 'path type version', got {v:?}")));
                    };
                    relative_dir(path).map_err(|e| bad(e.to_string()))?;
                    let elem = ElemType::ALL
                        .iter()
                        .copied()
                        .find(|t| t.name() == ty)
                        .ok_or_else(|| bad(format!("unknown element type {ty:?}")))?;
                    let version = version
                        .parse::<u64>()
                        .map_err(|e| bad(format!("version of {path}: {e}")))?;
                    m.arrays.push(NamespaceArray {
                        path: path.to_string(),
                        elem,
                        version,
                    });
                }
                other => return Err(bad(format!("an unknown or repeated line {other:?}"))),
            }
        }
        if !named {
            return Err(bad("no name line".into()));
        }
        let mut paths: Vec<&str> = m.arrays.iter().map(|a| a.path.as_str()).collect();
        paths.extend(m.namespaces.iter().map(String::as_str));
        paths.sort_unstable();
        if let Some(w) = paths.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("{} listed twice", w[0])));
        }
        Ok(m)
    }

    /// Reads and checks the manifest of the namespace checkpoint in `dir`.
    pub fn read(dir: &Path) -> Result<NamespaceManifest> {
        let (text, origin) = read_manifest_text(dir, NAMESPACE_MANIFEST, "namespace checkpoint")?;
        NamespaceManifest::parse(&text, &origin)
    }

    /// Writes it into `dir` (last, atomically: a directory without it did not finish).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        write_file(dir, NAMESPACE_MANIFEST, self.render().as_bytes())?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", dir, e))
    }
}

/// The subdirectory of the relative path `rel` in a namespace checkpoint: a name with no `.`
/// or `..` segment, so that it stays inside the checkpoint's directory.
pub fn relative_dir(rel: &str) -> Result<PathBuf> {
    crate::service::protocol::check_name(rel)?;
    if rel.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Error::InvalidArgument(format!(
            "{rel:?}: a path with a '.' or '..' segment would leave the checkpoint's directory"
        )));
    }
    // A segment named as a checkpoint's own files would land on one of them.
    let own_file = |seg: &str| {
        seg == MANIFEST
            || seg == NAMESPACE_MANIFEST
            || (seg.starts_with("block-") && seg.ends_with(".bin"))
            || seg.ends_with(".tmp")
    };
    if rel.split('/').any(own_file) {
        return Err(Error::InvalidArgument(format!(
            "{rel:?}: a segment named as a checkpoint's files ({MANIFEST}, {NAMESPACE_MANIFEST}, \
             block-<b>.bin) cannot be checkpointed with its namespace"
        )));
    }
    Ok(rel.split('/').collect())
}

fn io(doing: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Network(format!("{doing} {}: {e}", path.display()))
}

/// Writes `bytes` to `dir/name` atomically (aside, synced, renamed).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, e))
}

/// Writes this member's part of a checkpoint of `name` at `version` into `dir` (collective
/// over `group`): its local part `local` in `layout` as its block file, then (the root) the
/// manifest, once every member's block is written.
pub(crate) fn write<T: Element, G: Group + ?Sized>(
    group: &G,
    dir: &Path,
    name: &str,
    layout: &Layout,
    version: u64,
    attributes: &std::collections::BTreeMap<String, String>,
    local: &[T],
) -> Result<()> {
    if cfg!(target_endian = "big") {
        return Err(Error::InvalidArgument(
            "checkpoints are little-endian; this host is big-endian".into(),
        ));
    }
    let rank = group.rank() as u64;
    let file = format!("block-{rank}.bin");
    let mine: Result<BlockFile> = (|| {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
        let bytes = as_bytes(local);
        write_file(dir, &file, bytes)?;
        Ok(BlockFile {
            file: file.clone(),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        })
    })();
    let said = match &mine {
        Ok(b) => format!("{} {} {}", b.file, b.bytes, b.crc32),
        Err(_) => String::new(),
    };
    agree(group, mine.map(|_| ()))?;
    let all = group.all_gather_bytes(said.as_bytes());
    let root: Result<()> = if rank == 0 {
        (|| {
            let mut blocks = Vec::new();
            for (r, b) in all.iter().enumerate() {
                let t = String::from_utf8_lossy(b);
                let p: Vec<&str> = t.split(' ').collect();
                let [file, bytes, crc] = p[..] else {
                    return Err(Error::Protocol(format!("member {r}'s block line {t:?}")));
                };
                blocks.push(BlockFile {
                    file: file.to_string(),
                    bytes: bytes.parse().map_err(|_| Error::Protocol(t.to_string()))?,
                    crc32: crc.parse().map_err(|_| Error::Protocol(t.to_string()))?,
                });
            }
            let m = Manifest {
                name: name.to_string(),
                elem: T::TYPE,
                layout: layout.clone(),
                version,
                attributes: attributes.clone(),
                blocks,
            };
            write_file(dir, MANIFEST, m.render().as_bytes())?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("cannot sync", dir, e))
        })()
    } else {
        Ok(())
    };
    agree(group, root)
}

/// Reads and checks a checkpoint's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let (text, origin) = read_manifest_text(dir, MANIFEST, "checkpoint")?;
    Manifest::parse(&text, &origin)
}

/// The text of the manifest `file` in `dir` (of a `what`), bounded by [`MAX_MANIFEST`], and
/// its path for messages.
fn read_manifest_text(dir: &Path, file: &str, what: &str) -> Result<(String, String)> {
    let path = dir.join(file);
    let meta = std::fs::metadata(&path).map_err(|e| {
        Error::NotFound(format!(
            "{}: {e} (not a {what}, or one that did not finish)",
            path.display()
        ))
    })?;
    if meta.len() > MAX_MANIFEST {
        return Err(Error::InvalidArgument(format!(
            "{}: {} bytes, more than a manifest's {MAX_MANIFEST}",
            path.display(),
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io("cannot read", &path, e))?;
    Ok((text, path.display().to_string()))
}

/// Fills `local` (this member's part in `target`) from the checkpoint in `dir`, whose type and
/// shape the caller checked against `T` and `target`: every block file it needs is read whole
/// and checked against the manifest's size and CRC first.
pub(crate) fn read_into<T: Element>(
    dir: &Path,
    m: &Manifest,
    target: &Layout,
    rank: u64,
    local: &mut [T],
) -> Result<()> {
    let plan = Plan::new(&m.layout, target)?;
    for t in plan.sources(rank)? {
        let f = &m.blocks[t.peer as usize];
        let path: PathBuf = dir.join(&f.file);
        let n = (f.bytes / T::TYPE.size() as u64) as usize;
        let mut file = std::fs::File::open(&path).map_err(|e| io("cannot open", &path, e))?;
        // A whole source block landing in one run of the local part (same layout, or block
        // to block): read straight into place, no staging buffer. A bad file then leaves
        // garbage in `local`, which the caller discards with the whole array.
        let whole = plan.contiguous_src(t.peer, rank)?.filter(|r| r.len() == n);
        if let (Some(_), Some(dst)) = (whole, plan.contiguous_dst(t.peer, rank)?) {
            check_len(&file, &path, f.bytes)?;
            let place = &mut local[dst];
            std::io::Read::read_exact(&mut file, as_bytes_mut(place))
                .map_err(|e| io("cannot read", &path, e))?;
            check_crc(as_bytes(place), &path, f.crc32)?;
            continue;
        }
        let mut data = crate::element::try_zeroed::<T>(n, &|| path.display().to_string())?;
        check_len(&file, &path, f.bytes)?;
        std::io::Read::read_exact(&mut file, as_bytes_mut(&mut data))
            .map_err(|e| io("cannot read", &path, e))?;
        check_crc(as_bytes(&data), &path, f.crc32)?;
        plan.copy(t.peer, rank, &data, local)?;
    }
    Ok(())
}

fn check_len(file: &std::fs::File, path: &Path, want: u64) -> Result<()> {
    let len = file
        .metadata()
        .map_err(|e| io("cannot read", path, e))?
        .len();
    if len != want {
        return Err(Error::InvalidArgument(format!(
            "checkpoint file {} has {len} bytes, its manifest says {want}: torn or replaced",
            path.display()
        )));
    }
    Ok(())
}

fn check_crc(bytes: &[u8], path: &Path, want: u32) -> Result<()> {
    let crc = crc32fast::hash(bytes);
    if crc != want {
        return Err(Error::InvalidArgument(format!(
            "checkpoint file {} is corrupt: CRC-32 {crc:08x}, its manifest says {want:08x}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_manifest_reads_back_and_bad_ones_are_refused() {
        let m = NamespaceManifest {
            name: "fc".into(),
            namespaces: vec!["day1".into()],
            arrays: vec![NamespaceArray {
                path: "day1/t".into(),
                elem: ElemType::F64,
                version: 3,
            }],
        };
        assert_eq!(NamespaceManifest::parse(&m.render(), "m").unwrap(), m);
        let text = m.render();
        for bad in [
            text.replace("juxmem-namespace-checkpoint 1", "juxmem-checkpoint 1"),
            text.replace("name=fc\n", ""),
            text.replace("name=fc", "name=fc\nname=gc"),
            text.replace("day1/t f64", "day1/../t f64"),
            text.replace("namespace=day1", "namespace=/day1"),
            text.replace(" f64 ", " f65 "),
            text.replace(" 3\n", " x\n"),
            text.replace("day1/t f64 3", "day1/t f64"),
            text.clone() + "array=day1/t f64 4\n",
            text.clone() + "colour=red\n",
        ] {
            let e = NamespaceManifest::parse(&bad, "m").unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{bad}: {e}");
        }
    }

    fn manifest() -> Manifest {
        let layout = Layout::new(&[10, 7], &[Dist::Block, Dist::BlockCyclic(2)], &[2, 1]).unwrap();
        Manifest {
            name: "a/b".into(),
            elem: ElemType::F32,
            blocks: (0..2)
                .map(|b| BlockFile {
                    file: format!("block-{b}.bin"),
                    bytes: layout.local_len(b).unwrap() * 4,
                    crc32: 0xdead_beef + b as u32,
                })
                .collect(),
            layout,
            version: 9,
            attributes: [("units".to_string(), "K".to_string())].into(),
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let m = manifest();
        assert_eq!(Manifest::parse(&m.render(), "test").unwrap(), m);
    }

    #[test]
    fn malformed_manifests_are_typed_errors() {
        let text = manifest().render();
        let cases = [
            (
                "no magic",
                text.replacen("juxmem-checkpoint 1", "something else", 1),
            ),
            (
                "a wrong size",
                text.replace("block.1=block-1.bin 140", "block.1=block-1.bin 141"),
            ),
            (
                "a path outside",
                text.replace("block.0=block-0.bin", "block.0=../etc/passwd"),
            ),
            ("an unknown type", text.replace("type=f32", "type=f128")),
            (
                "a missing block",
                text.lines()
                    .filter(|l| !l.starts_with("block.1="))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            ("an extra line", format!("{text}block.2=block-2.bin 4 0\n")),
            (
                "a bad attribute",
                text.replace("attribute.units=K", "attribute.un its=K"),
            ),
            ("a zero grid", text.replace("grid=2,1", "grid=0,1")),
        ];
        for (what, t) in cases {
            let e = Manifest::parse(&t, "test").expect_err(what);
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{what}: {e}");
        }
    }
}
