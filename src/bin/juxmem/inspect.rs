//! `juxmem get` and `juxmem show`: read an array (or a 2-D slice of it) out of the federation
//! for inspection, as a NumPy `.npy` file or a PNG heat map.
//!
//! Both join the federation as a one-process client (the `Solo` group, the environment's
//! configuration) and open the array with a layout holding the whole shape on that process.
//! `get` reads the whole array with `acquire_read`; `show` reads only the slice it draws, with
//! the per-process `acquire_region_read`. Either holds the version (pinned) while it reads, and
//! registers as a reader of the array while it runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use juxmem::config::Config;
use juxmem::error::{Error, Result};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::{ArrayMeta, VersionReq};
use juxmem::{Element, Federation, Solo};

use crate::picture;
use crate::Args;

/// `NAME` or `NAME@VERSION`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The array's name.
    pub name: String,
    /// The version asked for; `None`: the latest.
    pub version: Option<u64>,
}

impl Target {
    /// Parses `NAME`, `NAME@VERSION` (a whole number) or `NAME@latest`.
    pub fn parse(s: &str) -> Result<Target> {
        let (name, version) = match s.split_once('@') {
            None => (s, None),
            Some((name, v)) => {
                let version = match v {
                    "latest" => None,
                    _ if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                        Some(v.parse::<u64>().map_err(|_| bad_target(s))?)
                    }
                    _ => return Err(bad_target(s)),
                };
                (name, version)
            }
        };
        juxmem::service::protocol::check_name(name)?;
        Ok(Target {
            name: name.to_string(),
            version,
        })
    }

    fn describe(&self) -> String {
        match self.version {
            Some(v) => format!("{}@{v}", self.name),
            None => self.name.clone(),
        }
    }
}

fn bad_target(s: &str) -> Error {
    Error::InvalidArgument(format!(
        "bad array reference {s:?}: expected NAME or NAME@VERSION, VERSION a whole number \
         (a released version) or \"latest\""
    ))
}

/// An element type as NumPy names it, with its values as numbers for pictures.
trait Value: Element {
    /// The `.npy` `descr` (little-endian; one-byte types have no byte order).
    const DESCR: &'static str;
    fn to_f64(self) -> f64;
    fn put_le(self, out: &mut Vec<u8>);
}

macro_rules! value {
    ($($t:ty => $descr:literal),* $(,)?) => {
        $(
            impl Value for $t {
                const DESCR: &'static str = $descr;
                fn to_f64(self) -> f64 {
                    self as f64
                }
                fn put_le(self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
            }
        )*
    };
}

value!(i8 => "|i1", u8 => "|u1", i16 => "<i2", u16 => "<u2", i32 => "<i4", u32 => "<u4",
       i64 => "<i8", u64 => "<u8", f32 => "<f4", f64 => "<f8");

/// The `.npy` (format version 1.0) encoding of a C-order array of `shape`.
fn npy<T: Value>(shape: &[u64], data: &[T]) -> Result<Vec<u8>> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        T::DESCR
    );
    // Magic (6), version (2), header length (2), then the dictionary padded with spaces and
    // ended by a newline so that the data starts at a multiple of 64 bytes.
    let unpadded = 10 + dict.len() + 1;
    let header_len = unpadded.div_ceil(64) * 64 - 10;
    let header_len = u16::try_from(header_len)
        .map_err(|_| Error::InvalidArgument(format!("shape {shape:?}: .npy header too long")))?;
    let mut out = Vec::with_capacity(10 + header_len as usize + std::mem::size_of_val(data));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(10 + header_len as usize - 1, b' ');
    out.push(b'\n');
    for &v in data {
        v.put_le(&mut out);
    }
    Ok(out)
}

/// Writes through a temporary file next to the destination, renamed at the end: a failed read
/// leaves no partial file (and an existing one intact), and an unwritable destination is found
/// before anything is read.
struct Output {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl Output {
    fn create(path: &Path) -> Result<Output> {
        let cannot = |e: std::io::Error| {
            Error::InvalidArgument(format!("cannot write {}: {e}", path.display()))
        };
        if path.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "cannot write {}: it is a directory",
                path.display()
            )));
        }
        let name = path.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} is not a file name", path.display()))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".juxmem-{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let file = std::fs::File::create(&tmp).map_err(cannot)?;
        Ok(Output {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    fn finish(mut self, bytes: &[u8]) -> Result<()> {
        let cannot = |e: std::io::Error| {
            Error::InvalidArgument(format!("cannot write {}: {e}", self.path.display()))
        };
        let mut file = self.file.take().expect("not finished yet");
        file.write_all(bytes).map_err(cannot)?;
        file.sync_all().map_err(cannot)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(cannot)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Options shared by `get` and `show`.
struct Common {
    target: Target,
    wait: Duration,
    file: PathBuf,
}

fn common(args: &Args, flag: &str) -> Result<Common> {
    let what = if flag == "npy" { "get" } else { "show" };
    let usage = || {
        Error::InvalidArgument(format!(
            "usage: juxmem {what} NAME[@VERSION] --{flag} FILE (see juxmem help)"
        ))
    };
    let [reference] = args.positional.as_slice() else {
        return Err(usage());
    };
    let file = args.options.get(flag).ok_or_else(usage)?;
    let wait = match args.options.get("wait") {
        None => Duration::ZERO,
        Some(w) => w
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| Error::InvalidArgument(format!("bad --wait {w:?}: seconds")))?,
    };
    Ok(Common {
        target: Target::parse(reference)?,
        wait,
        file: PathBuf::from(file),
    })
}

/// What to ask the array's manager for; a version not released yet is an error unless the
/// caller waits for it.
fn request(meta: &ArrayMeta, target: &Target, wait: Duration) -> Result<VersionReq> {
    match target.version {
        None => Ok(VersionReq::Latest),
        Some(v) if v > meta.committed && wait.is_zero() => Err(Error::NotFound(format!(
            "version {v} is not released yet (latest: {}); --wait SECONDS waits for it",
            meta.committed
        ))),
        Some(v) => Ok(VersionReq::Exactly(v)),
    }
}

/// Names the array in an error from reading it (if the message does not), keeping its kind. An error that
/// crossed the wire (and a collective) carries its kind's prefix once per hop
/// ("version gone: version gone: ..."): the repeats go.
fn about(target: &Target, e: Error) -> Error {
    fn inner<'m>(m: &'m str, prefix: &str) -> &'m str {
        let mut m = m;
        while let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
        m
    }
    let with_name = |m: &str| {
        if m.contains(&target.name) {
            m.to_string()
        } else {
            format!("{}: {m}", target.describe())
        }
    };
    match e {
        Error::VersionGone(m) => Error::VersionGone(with_name(inner(&m, "version gone: "))),
        Error::NotFound(m) => Error::NotFound(with_name(inner(&m, "not found: "))),
        other => other,
    }
}

/// The layout holding all of `shape` on one process.
fn whole(shape: &[u64]) -> Result<Layout> {
    Layout::new(
        shape,
        &vec![Dist::Block; shape.len()],
        &vec![1; shape.len()],
    )
}

fn timeout(fed: &Federation, wait: Duration) -> Duration {
    if wait.is_zero() {
        fed.config().timeout()
    } else {
        wait
    }
}

/// Reads the whole array: (version, data in C order).
fn read_whole<T: Value>(fed: &Federation, meta: &ArrayMeta, c: &Common) -> Result<(u64, Vec<T>)> {
    let req = request(meta, &c.target, c.wait)?;
    let mut a = fed.inspect::<T, _>(&Solo, &c.target.name, whole(&meta.spec.layout.shape())?)?;
    let version = a.acquire_read_timeout(req, timeout(fed, c.wait))?;
    let data = a.local()?.to_vec();
    a.release_read()?;
    Ok((version, data))
}

/// `juxmem get NAME[@VERSION] --npy FILE`.
pub fn run_get(cfg: Config, args: &Args) -> Result<()> {
    let c = common(args, "npy")?;
    let out = Output::create(&c.file)?;
    let fed = Federation::join_as(cfg, "get")?;
    let meta = fed
        .lookup(&c.target.name)
        .map_err(|e| about(&c.target, e))?;
    let shape = meta.spec.layout.shape();
    let elem = meta.spec.elem;
    let (version, bytes) = juxmem::with_elem_type!(elem, T => {
        let (v, data) = read_whole::<T>(&fed, &meta, &c).map_err(|e| about(&c.target, e))?;
        (v, npy(&shape, &data)?)
    });
    out.finish(&bytes)?;
    println!(
        "wrote {}: {} version {version}, shape {shape:?} {elem} ({} bytes, .npy 1.0)",
        c.file.display(),
        c.target.name,
        bytes.len()
    );
    Ok(())
}

/// Parses `--slice I,J,...` against the leading dimensions of `shape` (all but the last two).
fn parse_slice(arg: Option<&String>, shape: &[u64]) -> Result<Vec<u64>> {
    let lead = shape.len() - 2;
    let Some(s) = arg else {
        return Ok(vec![0; lead]);
    };
    let idx: Vec<u64> = if s.trim().is_empty() {
        vec![]
    } else {
        s.split(',')
            .map(|p| p.trim().parse::<u64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "bad --slice {s:?}: indices of the leading dimensions, e.g. --slice 3 or \
                     --slice 3,0"
                ))
            })?
    };
    if idx.len() != lead {
        return Err(Error::InvalidArgument(format!(
            "--slice {s:?} gives {} index(es); shape {shape:?} has {lead} leading dimension(s) \
             before the two drawn",
            idx.len()
        )));
    }
    for (d, (&i, &n)) in idx.iter().zip(shape).enumerate() {
        if i >= n {
            return Err(Error::OutOfBounds(format!(
                "--slice index {i} along dimension {d} of shape {shape:?}"
            )));
        }
    }
    Ok(idx)
}

fn parse_range(arg: Option<&String>) -> Result<Option<(f64, f64)>> {
    let Some(s) = arg else { return Ok(None) };
    let bad = || Error::InvalidArgument(format!("bad --range {s:?}: LO,HI with LO < HI"));
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    let (lo, hi) = (
        lo.trim().parse::<f64>().map_err(|_| bad())?,
        hi.trim().parse::<f64>().map_err(|_| bad())?,
    );
    if lo.is_finite() && hi.is_finite() && lo < hi {
        Ok(Some((lo, hi)))
    } else {
        Err(bad())
    }
}

/// Reads the region `[lo, hi)`: (version, values).
fn read_region<T: Value>(
    fed: &Federation,
    meta: &ArrayMeta,
    c: &Common,
    lo: &[u64],
    hi: &[u64],
) -> Result<(u64, Vec<f64>)> {
    let req = request(meta, &c.target, c.wait)?;
    let a = fed.inspect::<T, _>(&Solo, &c.target.name, whole(&meta.spec.layout.shape())?)?;
    let r = a.acquire_region_read(lo, hi, req, timeout(fed, c.wait))?;
    let n = lo.iter().zip(hi).map(|(l, h)| (h - l) as usize).product();
    let mut buf = vec![T::default(); n];
    r.get(&mut buf)?;
    let version = r.version();
    r.release()?;
    Ok((version, buf.into_iter().map(Value::to_f64).collect()))
}

/// `juxmem show NAME[@VERSION] --png FILE [--slice I,...] [--range LO,HI]`.
pub fn run_show(cfg: Config, args: &Args) -> Result<()> {
    let c = common(args, "png")?;
    let range = parse_range(args.options.get("range"))?;
    let out = Output::create(&c.file)?;
    let fed = Federation::join_as(cfg, "show")?;
    let meta = fed
        .lookup(&c.target.name)
        .map_err(|e| about(&c.target, e))?;
    let shape = meta.spec.layout.shape();
    let elem = meta.spec.elem;
    if shape.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{} is 1-D (shape {shape:?}): show draws 2-D fields and slices of n-D ones; \
             juxmem get --npy reads it",
            c.target.name
        )));
    }
    let slice = parse_slice(args.options.get("slice"), &shape)?;
    let n = shape.len();
    let (rows, cols) = (shape[n - 2], shape[n - 1]);
    let mut lo = slice.clone();
    lo.extend([0, 0]);
    let mut hi: Vec<u64> = slice.iter().map(|i| i + 1).collect();
    hi.extend([rows, cols]);
    let (version, field) = juxmem::with_elem_type!(elem, T => {
        read_region::<T>(&fed, &meta, &c, &lo, &hi).map_err(|e| about(&c.target, e))?
    });
    let dims = shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" x ");
    let title = if slice.is_empty() {
        format!("{} version {version} ({dims} {elem})", c.target.name)
    } else {
        let at: Vec<String> = slice.iter().map(u64::to_string).collect();
        format!(
            "{}[{}, :, :] version {version} ({dims} {elem})",
            c.target.name,
            at.join(", ")
        )
    };
    let map = picture::HeatMap {
        field: &field,
        rows: rows as usize,
        cols: cols as usize,
        range,
        title,
        row_label: format!("axis {}", n - 2),
        col_label: format!("axis {}", n - 1),
    };
    let pic = picture::render(&map);
    let mut bytes = Vec::new();
    pic.image
        .encode_png(&mut bytes)
        .map_err(|e| Error::InvalidArgument(format!("encoding {}: {e}", c.file.display())))?;
    out.finish(&bytes)?;
    let (p, b) = (pic.plot, pic.bar);
    println!(
        "wrote {}: {} x {} pixels; {} version {version}{}; field {rows} x {cols} at ({}, {}) \
         size {} x {}; colour bar at ({}, {}) size {} x {}; range [{}, {}]",
        c.file.display(),
        pic.image.width,
        pic.image.height,
        c.target.name,
        if slice.is_empty() {
            String::new()
        } else {
            format!(" slice {slice:?}")
        },
        p.x,
        p.y,
        p.w,
        p.h,
        b.x,
        b.y,
        b.w,
        b.h,
        pic.range.0,
        pic.range.1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("a/b@12").unwrap();
        assert_eq!((t.name.as_str(), t.version), ("a/b", Some(12)));
        assert_eq!(Target::parse("a/b").unwrap().version, None);
        assert_eq!(Target::parse("a/b@latest").unwrap().version, None);
        for bad in ["a@", "a@x", "a@-1", "a@1.5", "a@1@2", "@3", "a@ 1"] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.code(), juxmem::ErrorCode::InvalidArgument, "{bad}: {e}");
        }
    }

    #[test]
    fn npy_header_is_padded_to_64_bytes() {
        for shape in [vec![3u64], vec![13, 17], vec![4, 13, 17]] {
            let n: u64 = shape.iter().product();
            let data: Vec<i32> = (0..n as i32).collect();
            let bytes = npy(&shape, &data).unwrap();
            let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hl) % 64, 0);
            assert_eq!(bytes[10 + hl - 1], b'\n');
            assert_eq!(bytes.len(), 10 + hl + 4 * n as usize);
            let header = std::str::from_utf8(&bytes[10..10 + hl]).unwrap();
            assert!(header.starts_with("{'descr': '<i4', 'fortran_order': False, 'shape': ("));
        }
        let bytes = npy(&[3], &[1u8, 2, 3]).unwrap();
        assert!(
            std::str::from_utf8(&bytes[10..64])
                .unwrap()
                .contains("'descr': '|u1'")
                && bytes.ends_with(&[1, 2, 3])
        );
    }

    #[test]
    fn slices_and_ranges_parse() {
        let s = |a: &str| Some(a.to_string());
        assert_eq!(parse_slice(None, &[4, 5, 6]).unwrap(), vec![0]);
        assert_eq!(parse_slice(s("3").as_ref(), &[4, 5, 6]).unwrap(), vec![3]);
        assert!(parse_slice(s("4").as_ref(), &[4, 5, 6]).is_err());
        assert!(parse_slice(s("1,1").as_ref(), &[4, 5, 6]).is_err());
        assert!(parse_slice(s("1").as_ref(), &[5, 6]).is_err());
        assert_eq!(
            parse_range(s("-1,2.5").as_ref()).unwrap(),
            Some((-1.0, 2.5))
        );
        assert!(parse_range(s("2,1").as_ref()).is_err());
        assert!(parse_range(s("x").as_ref()).is_err());
    }
}
