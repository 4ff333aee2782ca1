//! Shared memory on one host.
//!
//! A process keeps large array data (every block copy of at least [`MIN_SEGMENT`] bytes) in a
//! *segment*: an unnamed file in `JUXMEM_SHM_DIR` (`/dev/shm` by default, `O_TMPFILE`), mapped
//! into its memory. Another process of the same host reads a snapshot by mapping that file
//! (read-only) and copying its pieces straight out of the mapping: no socket, no packing, no
//! TLS. It opens the file through `/proc/<pid>/fd/<fd>` of the holder, which only processes
//! of the same user may do, and checks that it got the file announced (device, inode and the
//! segment's nonce).
//!
//! Why unnamed files rather than named `/dev/shm` entries: a process killed by a signal leaves
//! nothing behind (the file lives while a descriptor or a mapping does), and no name can be
//! guessed or reused.
//!
//! The space is reserved when a segment is made (`fallocate`), so a full `/dev/shm` is a typed
//! [`Error::Capacity`] naming the sizes there, never a `SIGBUS` at a later write. Where
//! segments cannot be made at all (no `O_TMPFILE`, out of descriptors), data stays in process
//! memory and is read over the network, as between hosts: a warning says so, once per reason.
//!
//! Segments are reused: a dropped copy's segment goes to a small per-process pool
//! ([`POOL_SEGMENTS`], [`POOL_BYTES`]) and backs the next copy of that size, and readers keep
//! their mappings ([`Reader`]), so that a pipeline handing over a version per step touches
//! mapped pages only (a fresh 4 KiB-page mapping costs more than the copy). A segment carries,
//! in a page after its data, a unique *nonce* (which segment this is) and a *generation*
//! (bumped each time it is reused). A snapshot never changes while its stamp is held, and a
//! reader maps only stamps whose version it pinned; still, a copy can be dropped under a pin
//! (its block handed over after a failure), so a reader checks after copying that the
//! generation is the one announced with the stamp (a sequence lock: the holder bumps it
//! before writing), and reads over the network otherwise.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;

use memmap2::{Mmap, MmapMut, MmapOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Blocks smaller than this stay in process memory: a segment costs a descriptor, and a
/// mapping costs more than a small read over a socket.
pub const MIN_SEGMENT: usize = 1 << 20;

/// Pieces smaller than this are read over the network even from a holder on this host (the
/// mapping's set-up costs more than the socket then).
pub const MIN_READ: u64 = 256 << 10;

/// Segments a process keeps for reuse, at most.
pub const POOL_SEGMENTS: usize = 8;

/// Bytes of segments a process keeps for reuse, at most.
pub const POOL_BYTES: usize = 1 << 30;

/// Mappings of other processes' segments a reader keeps, at most.
pub const READER_MAPPINGS: usize = 32;

/// Bytes of other processes' segments a reader keeps mapped, at most (a kept mapping of a
/// segment its holder freed keeps those pages until it is dropped).
pub const READER_BYTES: usize = 1 << 30;

const PAGE: usize = 4096;

/// Shared-memory settings: `JUXMEM_SHM` (`1` by default, `0` keeps array data in process
/// memory and reads everything over the network) and `JUXMEM_SHM_DIR` (`/dev/shm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Array data in segments, read through them on one host.
    pub enabled: bool,
    /// Where segments are made (a tmpfs).
    pub dir: PathBuf,
}

impl Settings {
    /// From the environment; a malformed value is an error (reported by
    /// [`crate::config::Config::from_env`]).
    pub fn from_env() -> Result<Settings> {
        let enabled = match std::env::var("JUXMEM_SHM").ok().as_deref() {
            None | Some("1") => true,
            Some("0") => false,
            Some(other) => {
                return Err(Error::InvalidArgument(format!(
                    "JUXMEM_SHM={other:?}: expected 1 (shared memory on one host) or 0"
                )))
            }
        };
        let dir = std::env::var_os("JUXMEM_SHM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Settings::default().dir);
        Ok(Settings { enabled, dir })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            enabled: true,
            dir: PathBuf::from("/dev/shm"),
        }
    }
}

/// This process's settings (read once; a malformed value means the defaults here, and an error
/// from `Config::from_env`).
pub fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        Settings::from_env().unwrap_or_else(|e| {
            tracing::warn!("{e}; shared memory keeps its defaults");
            Settings::default()
        })
    })
}

/// Which host's shared memory a process sees: the kernel's boot id, the segment directory's
/// device and inode, and the network and pid namespaces. Two processes with the same `HostId`
/// can map each other's segments (if also the same user, which opening the segment checks): a
/// pid one names is the same process for both. A network namespace counts as a host of its
/// own: processes there have their own addresses and links (the test lab's hosts are
/// namespaces of one machine), so their data crosses the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostId {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot: String,
    /// Device of the segment directory.
    pub dev: u64,
    /// Inode of the segment directory.
    pub ino: u64,
    /// Inode of the network namespace (`/proc/self/ns/net`).
    pub net: u64,
    /// Inode of the pid namespace (`/proc/self/ns/pid`).
    pub pids: u64,
}

/// This process's host, or `None` when shared memory is off or unusable here.
pub fn host_id() -> Option<&'static HostId> {
    static H: OnceLock<Option<HostId>> = OnceLock::new();
    H.get_or_init(|| {
        let s = settings();
        if !s.enabled {
            return None;
        }
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let meta = std::fs::metadata(&s.dir).ok()?;
        let ns = |name: &str| std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| m.ino());
        Some(HostId {
            boot: boot.trim().to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
            net: ns("net").ok()?,
            pids: ns("pid").ok()?,
        })
    })
    .as_ref()
}

/// Where a holder's segment can be opened from the same host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// The holder's process id.
    pub pid: u32,
    /// The segment's descriptor in the holder.
    pub fd: i32,
    /// The file's device.
    pub dev: u64,
    /// The file's inode.
    pub ino: u64,
    /// Bytes of data.
    pub bytes: u64,
    /// Which segment this is (unique, in its header).
    pub nonce: u64,
    /// How many times it had been reused when this was said.
    pub generation: u64,
}

/// A segment this process made and writes: array data in shared memory, followed by a
/// header page (nonce, generation).
pub struct Segment {
    file: File,
    map: MmapMut,
    /// Bytes of data (the file is larger: page-rounded, plus the header page).
    bytes: usize,
    dev: u64,
    ino: u64,
    nonce: u64,
}

/// Warns once per reason that data stays in process memory.
fn warn_once(what: &'static str, dir: &Path, e: &dyn std::fmt::Display) {
    static WARNED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.contains(&what) {
        warned.push(what);
        tracing::warn!(
            "shared memory: {what} in {}: {e}; such array data stays in process memory and is \
             read over the network on this host too",
            dir.display()
        );
    }
}

/// The `Capacity` error of a full segment directory, with its sizes.
fn full(dir: &Path, bytes: usize) -> Error {
    let sizes = free_and_total(dir)
        .map(|(free, total)| format!("{free} bytes free of {total}"))
        .unwrap_or_else(|| "its free space unknown".into());
    Error::Capacity(format!(
        "shared memory {} is full ({sizes}); {bytes} bytes of array data do not fit (make room \
         there, mount it larger, or set JUXMEM_SHM=0 to keep array data in process memory)",
        dir.display()
    ))
}

/// Free and total bytes of the file system holding `dir`.
fn free_and_total(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path and a zeroed out-structure statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Where the header of a segment of `bytes` data bytes starts.
fn header_at(bytes: usize) -> usize {
    bytes.next_multiple_of(PAGE)
}

/// The file length of a segment of `bytes` data bytes (`None` past the address space).
fn file_len(bytes: usize) -> Option<usize> {
    bytes.checked_next_multiple_of(PAGE)?.checked_add(PAGE)
}

/// A fresh nonce: unique per segment of a host (process id, a counter, the
/// clock), which is all it must be.
fn fresh_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finalizer, so that nearby inputs give unrelated nonces.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The header words of a mapping whose data has `bytes` bytes: (nonce, generation).
///
/// # Safety
/// `base` must be a mapping of at least `file_len(bytes)` bytes.
unsafe fn header<'a>(base: *const u8, bytes: usize) -> (&'a AtomicU64, &'a AtomicU64) {
    let h = base.add(header_at(bytes)).cast::<AtomicU64>();
    (&*h, &*h.add(1))
}

impl Segment {
    /// A segment of `bytes` zero bytes, its pages reserved; `Ok(None)` when shared memory is
    /// off, `bytes` is below [`MIN_SEGMENT`], or segments cannot be made here (the caller keeps
    /// the data in process memory); a `Capacity` error when the directory is full. A pooled
    /// segment of that size is reused first (`zero`: cleared; otherwise its old bytes stay,
    /// for a caller that overwrites them all).
    pub fn create(bytes: usize, zero: bool) -> Result<Option<Segment>> {
        let s = settings();
        if !s.enabled || bytes < MIN_SEGMENT {
            return Ok(None);
        }
        if let Some(mut seg) = pool_take(bytes) {
            seg.bump_generation();
            if zero {
                // SAFETY: the segment's own data, which no reader trusts any more (its
                // generation moved on).
                unsafe { std::ptr::write_bytes(seg.as_mut_ptr(), 0, bytes) };
            }
            return Ok(Some(seg));
        }
        let Some(len) = file_len(bytes).filter(|&l| libc::off_t::try_from(l).is_ok()) else {
            return Ok(None); // larger than a file can be: process memory says what it can
        };
        if !descriptors_left() {
            warn_once(
                "segments would take most of this process's descriptors",
                &s.dir,
                &"the limit of open files",
            );
            return Ok(None);
        }
        let made = match Segment::make(&s.dir, bytes, len) {
            // Room may be held by segments kept for reuse, or queued to be freed.
            Err(Made::Full) => {
                empty_pool();
                flush_frees();
                Segment::make(&s.dir, bytes, len)
            }
            other => other,
        };
        match made {
            Ok(seg) => Ok(Some(seg)),
            Err(Made::Full) => Err(full(&s.dir, bytes)),
            Err(Made::Unusable(what, e)) => {
                warn_once(what, &s.dir, &e);
                Ok(None)
            }
        }
    }

    /// A new segment file of `len` bytes holding `bytes` of data.
    fn make(dir: &Path, bytes: usize, len: usize) -> std::result::Result<Segment, Made> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .mode(0o600)
            .open(dir)
            .map_err(|e| Made::Unusable("cannot make an unnamed file", e))?;
        // Reserve every page now: a full tmpfs fails here (ENOSPC), where a lazily allocated
        // page would raise SIGBUS at some later write. `len` fits an off_t (checked).
        // SAFETY: a valid descriptor we own; fallocate only changes the file.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::ENOMEM) => Made::Full,
                _ => Made::Unusable("cannot reserve pages", e),
            });
        }
        // SAFETY: the file is ours, unnamed, and never truncated; other processes map it
        // read-only (a process of this user could truncate it through /proc: the same trust
        // as ptrace, which such a process has anyway).
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| Made::Unusable("cannot map a segment", e))?;
        let meta = file
            .metadata()
            .map_err(|e| Made::Unusable("cannot stat a segment", e))?;
        let nonce = fresh_nonce();
        // SAFETY: the mapping has file_len(bytes) bytes.
        unsafe { header(map.as_ptr(), bytes) }
            .0
            .store(nonce, Ordering::Release);
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Segment {
            file,
            map,
            bytes,
            dev: meta.dev(),
            ino: meta.ino(),
            nonce,
        })
    }

    fn generation(&self) -> &AtomicU64 {
        // SAFETY: the mapping has file_len(bytes) bytes.
        unsafe { header(self.map.as_ptr(), self.bytes) }.1
    }

    /// Marks the data as changing: a reader that copied while (or after) it changes sees
    /// another generation than it was told, and throws its copy away.
    fn bump_generation(&mut self) {
        self.generation().fetch_add(1, Ordering::Relaxed);
        // Orders the bump before every later write of the data (a sequence lock's writer).
        fence(Ordering::Release);
    }

    /// Where another process of this host opens it.
    pub fn share(&self) -> SegmentRef {
        SegmentRef {
            pid: std::process::id(),
            fd: self.file.as_raw_fd(),
            dev: self.dev,
            ino: self.ino,
            bytes: self.bytes as u64,
            nonce: self.nonce,
            generation: self.generation().load(Ordering::Acquire),
        }
    }

    /// The data (page-aligned).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// The data, to write.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Bytes of data.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// True when empty (never: segments have at least [`MIN_SEGMENT`] bytes).
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a segment was not made.
enum Made {
    /// The directory is full (or the host out of memory).
    Full,
    /// Segments cannot be made here: what failed, and how.
    Unusable(&'static str, std::io::Error),
}

/// Segments alive in this process (one descriptor each).
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Whether another segment leaves this process at least half its descriptors for sockets and
/// files. The first call raises the soft limit of open files to the hard limit, as runtimes
/// that hold many descriptors do (the default soft limit is often 1024).
fn descriptors_left() -> bool {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    let limit = *LIMIT.get_or_init(|| {
        // SAFETY: getrlimit/setrlimit with a valid out-structure.
        unsafe {
            let mut r: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return 512;
            }
            if r.rlim_cur < r.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: r.rlim_max,
                    rlim_max: r.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    r = raised;
                }
            }
            r.rlim_cur
        }
    });
    LIVE.load(Ordering::Relaxed) < limit / 2
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({} bytes, inode {})", self.bytes, self.ino)
    }
}

/// The process's segments kept for reuse.
fn pool() -> &'static std::sync::Mutex<Vec<Segment>> {
    static POOL: OnceLock<std::sync::Mutex<Vec<Segment>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

fn pool_take(bytes: usize) -> Option<Segment> {
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    let i = p.iter().position(|s| s.bytes == bytes)?;
    Some(p.remove(i))
}

/// Gives back a segment whose data is no longer needed: kept for reuse (its generation bumped
/// at reuse), the longest kept ones freed to make room for it; freed off the caller's thread
/// if it is larger than the pool.
pub fn recycle(seg: Segment) {
    if seg.bytes > POOL_BYTES {
        return drop_later(Box::new(seg));
    }
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    while !p.is_empty()
        && (p.len() >= POOL_SEGMENTS
            || p.iter().map(|s| s.bytes).sum::<usize>() + seg.bytes > POOL_BYTES)
    {
        drop_later(Box::new(p.remove(0)));
    }
    p.push(seg);
}

/// Frees every segment kept for reuse (the directory is full).
fn empty_pool() {
    let kept = std::mem::take(&mut *pool().lock().unwrap_or_else(|e| e.into_inner()));
    drop(kept);
}

/// Waits (at most 10 s) until what [`drop_later`] was given so far is freed.
fn flush_frees() {
    struct Marker(std::sync::mpsc::Sender<()>);
    impl Drop for Marker {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    drop_later(Box::new(Marker(tx)));
    let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
}

/// Frees `what` on a thread of its own: unmapping a large segment and releasing its pages
/// takes milliseconds (4 KiB pages, one by one), which a release retiring a version or a read
/// must not wait for. Freed inline if that thread cannot be had.
pub fn drop_later(what: Box<dyn Send>) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;
    type Garbage = Box<dyn Send>;
    static REAPER: OnceLock<Option<Mutex<Sender<Garbage>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<Garbage>();
        std::thread::Builder::new()
            .name("juxmem-shm-free".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let Some(tx) = reaper else {
        return drop(what);
    };
    if let Err(back) = tx.lock().unwrap_or_else(|e| e.into_inner()).send(what) {
        drop(back.0);
    }
}

/// Another process's segment, mapped read-only.
pub struct Mapping {
    map: Mmap,
    bytes: usize,
}

impl Mapping {
    /// Maps the segment `r` names; an error if it cannot be opened from here (another host or
    /// user, a holder gone) or is not the segment announced.
    pub fn open(r: &SegmentRef) -> std::io::Result<Mapping> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let bytes = usize::try_from(r.bytes).map_err(|_| bad("size".into()))?;
        let len = file_len(bytes).ok_or_else(|| bad("size".into()))?;
        if r.fd < 0 {
            return Err(bad(format!("descriptor {} announced", r.fd)));
        }
        let path = format!("/proc/{}/fd/{}", r.pid, r.fd);
        let is_it = |m: &std::fs::Metadata| m.is_file() && m.dev() == r.dev && m.ino() == r.ino;
        let not_it = || {
            bad(format!(
                "{path} is not the segment announced (the holder closed it meanwhile?)"
            ))
        };
        // Looked at before it is opened: a descriptor number the holder reused for a device
        // or a FIFO must not be opened (opening a device can have effects, a FIFO can block).
        if !is_it(&std::fs::metadata(&path)?) {
            return Err(not_it());
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)?;
        let meta = file.metadata()?;
        if !is_it(&meta) {
            return Err(not_it());
        }
        if meta.len() != len as u64 {
            return Err(bad(format!(
                "segment file of {} bytes; {len} expected for {bytes} bytes of data",
                meta.len()
            )));
        }
        // SAFETY: a read-only mapping of a file its holder never truncates (see the module's
        // note on trust); its data changes only after a generation bump, which readers check.
        let map = unsafe { MmapOptions::new().len(len).map(&file)? };
        let m = Mapping { map, bytes };
        if m.nonce() != r.nonce {
            return Err(bad(format!(
                "/proc/{}/fd/{} is not the segment announced (nonce)",
                r.pid, r.fd
            )));
        }
        Ok(m)
    }

    fn nonce(&self) -> u64 {
        // SAFETY: the mapping has file_len(bytes) bytes.
        unsafe { header(self.map.as_ptr(), self.bytes) }
            .0
            .load(Ordering::Acquire)
    }

    /// Whether the data is still what it was at `generation`, for everything read before
    /// this call (a sequence lock's reader: call it after copying).
    pub fn unchanged_since(&self, generation: u64) -> bool {
        fence(Ordering::Acquire);
        // SAFETY: the mapping has file_len(bytes) bytes.
        unsafe { header(self.map.as_ptr(), self.bytes) }
            .1
            .load(Ordering::Relaxed)
            == generation
    }

    /// The data as elements of `T` (page-aligned, whole elements only).
    pub fn typed<T: crate::element::Element>(&self) -> &[T] {
        let n = self.bytes / std::mem::size_of::<T>();
        // SAFETY: page-aligned, at least n * size_of::<T>() bytes, and every bit pattern is a
        // valid `Element`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), n) }
    }
}

static READS: AtomicU64 = AtomicU64::new(0);
static OPENED: AtomicU64 = AtomicU64::new(0);

/// What this process read through shared memory so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Pieces copied out of other processes' segments.
    pub reads: u64,
    /// Mappings made for them (fewer than `reads` when kept mappings were reused).
    pub mappings: u64,
}

/// This process's [`Counters`].
pub fn counters() -> Counters {
    Counters {
        reads: READS.load(Ordering::Relaxed),
        mappings: OPENED.load(Ordering::Relaxed),
    }
}

/// Counts a piece read through shared memory.
pub(crate) fn count_read() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// What a process knows for reading other processes' segments: the peers (by address) whose
/// segments it cannot map (another host, user or pid namespace; learned once, then read over
/// the network), and the mappings it keeps (at most [`READER_MAPPINGS`] and [`READER_BYTES`],
/// the least recently used dropped first).
#[derive(Default)]
pub struct Reader {
    state: std::sync::Mutex<ReaderState>,
}

#[derive(Default)]
struct ReaderState {
    remote: std::collections::HashSet<String>,
    /// The mappings kept and when each was last used.
    maps: std::collections::HashMap<Key, (u64, std::sync::Arc<Mapping>)>,
    clock: u64,
}

/// A segment of a process: (pid, fd, dev, ino, nonce).
type Key = (u32, i32, u64, u64, u64);

fn key(r: &SegmentRef) -> Key {
    (r.pid, r.fd, r.dev, r.ino, r.nonce)
}

impl Reader {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to try shared memory with `addr`.
    pub fn may_share(&self, addr: &str) -> bool {
        !self.lock().remote.contains(addr)
    }

    /// `addr`'s segments cannot be mapped from here (`why`): read over the network from now on.
    pub fn remote(&self, addr: &str, why: &str) {
        if self.lock().remote.insert(addr.to_string()) {
            tracing::info!("shared memory with {addr}: {why}; reading over the network");
        }
    }

    /// The mapping of `r`: kept from an earlier read, or made now.
    pub fn map(&self, r: &SegmentRef) -> std::io::Result<std::sync::Arc<Mapping>> {
        {
            let mut st = self.lock();
            st.clock += 1;
            let now = st.clock;
            if let Some((used, m)) = st.maps.get_mut(&key(r)) {
                if m.bytes as u64 == r.bytes {
                    *used = now;
                    return Ok(m.clone());
                }
            }
        }
        let m = std::sync::Arc::new(Mapping::open(r)?);
        OPENED.fetch_add(1, Ordering::Relaxed);
        if m.bytes > READER_BYTES {
            return Ok(m); // used once, not kept
        }
        let mut st = self.lock();
        let now = st.clock;
        // The same descriptor of the same process naming another file: the holder closed the
        // old one, which only this mapping keeps alive.
        let stale: Vec<Key> = st
            .maps
            .keys()
            .filter(|k| (k.0, k.1) == (r.pid, r.fd))
            .copied()
            .collect();
        for k in stale {
            if let Some((_, old)) = st.maps.remove(&k) {
                drop_later(Box::new(old));
            }
        }
        // The least recently used go first, until the new one fits both bounds.
        while st.maps.len() >= READER_MAPPINGS
            || st.maps.values().map(|(_, m)| m.bytes).sum::<usize>() + m.bytes > READER_BYTES
        {
            let Some(oldest) = st.maps.iter().min_by_key(|(_, (u, _))| *u).map(|(k, _)| *k) else {
                break;
            };
            if let Some((_, old)) = st.maps.remove(&oldest) {
                drop_later(Box::new(old));
            }
        }
        st.maps.insert(key(r), (now, m.clone()));
        Ok(m)
    }

    /// Forgets the mapping of `r` (its segment was reused or is gone).
    pub fn forget(&self, r: &SegmentRef) {
        if let Some((_, old)) = self.lock().maps.remove(&key(r)) {
            drop_later(Box::new(old));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, (_, m)) in st.maps.drain() {
            drop_later(Box::new(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_read_back_through_its_reference() {
        let Some(mut seg) = Segment::create(MIN_SEGMENT, true).unwrap() else {
            eprintln!("SKIPPED: shared memory is off or unusable on this machine");
            return;
        };
        // SAFETY: the segment's own bytes.
        let data = unsafe { std::slice::from_raw_parts_mut(seg.as_mut_ptr(), seg.len()) };
        assert!(data.iter().all(|&b| b == 0), "a new segment is zero");
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let r = seg.share();
        let m = Mapping::open(&r).unwrap();
        assert!(m.unchanged_since(r.generation));
        let got = m.typed::<u8>();
        assert_eq!(got.len(), MIN_SEGMENT);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        // A reference naming another inode is refused.
        let wrong = SegmentRef {
            ino: r.ino + 1,
            ..r
        };
        assert!(Mapping::open(&wrong).is_err());
        // The mapping outlives the holder's segment.
        drop(seg);
        assert_eq!(m.typed::<u8>()[1000], (1000 % 251) as u8);
    }

    #[test]
    fn a_reused_segment_is_seen_as_changed_by_a_reader_of_its_old_data() {
        let Some(seg) = Segment::create(2 * MIN_SEGMENT + 8, true).unwrap() else {
            eprintln!("SKIPPED: shared memory is off or unusable on this machine");
            return;
        };
        let before = seg.share();
        let reader = Reader::default();
        let m = reader.map(&before).unwrap();
        assert!(m.unchanged_since(before.generation));
        // The same mapping is kept for a second read.
        let again = reader.map(&before).unwrap();
        assert!(std::sync::Arc::ptr_eq(&m, &again));
        // The holder drops the copy; its segment backs the next one of that size.
        recycle(seg);
        let reused = Segment::create(2 * MIN_SEGMENT + 8, false)
            .unwrap()
            .unwrap();
        let after = reused.share();
        assert_eq!(
            (after.ino, after.nonce),
            (before.ino, before.nonce),
            "reused from the pool"
        );
        assert_ne!(after.generation, before.generation);
        assert!(
            !m.unchanged_since(before.generation),
            "a reader of the old data is told"
        );
        assert!(m.unchanged_since(after.generation));
    }

    #[test]
    fn small_data_stays_in_process_memory() {
        assert!(Segment::create(MIN_SEGMENT - 1, true).unwrap().is_none());
    }
}
