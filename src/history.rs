//! Operation histories of fault tests and a checker for them (Jepsen / Knossos / Porcupine
//! semantics, specialised to juxmem's versioned registers).
//!
//! Fault tests kill or stop providers while clients write and read; whether the service stayed
//! correct is decided afterwards, from a history of every operation with its invocation and
//! completion times and its outcome. Each array is a *versioned register*: a successful write
//! (acquire, put the whole value, release) creates version `base + 1` holding its value, a
//! failed write leaves nothing visible, a read of the latest version returns `(version, value)`.
//! Version 0 is the initial value 0. One history is one register: record each array apart.
//!
//! Outcomes are Jepsen's: [`Outcome::Ok`] took effect, [`Outcome::Failed`] definitely did not
//! (a typed error, e.g. the lock was never granted), [`Outcome::Unknown`] may or may not have (a
//! fault cut it off, Jepsen's `:info`). An unknown operation is treated as completing at
//! +infinity; an unknown write's version is inferred from the reads that saw its value, and an
//! unobserved one may fill one gap in the version sequence.
//!
//! Versions are explicit, so no search over orders is needed: the version order *is* the
//! linearization (the write of `v`, then the reads of `v`, then the write of `v + 1`), and
//! [`check`] runs in O(n log n). It verifies that (1) versions `1..=max` are each created by
//! exactly one Ok or Unknown write, (2) no acknowledged write is lost, (3) no aborted or phantom
//! data is visible, (4) real time is respected: an operation that completed before another was
//! invoked comes before it in the version order (reads never go back in time, nor see a write
//! invoked after they completed).
//!
//! # Text format
//!
//! A [`Recorder`] keeps records in memory and may also append them to a file, one line per
//! record written with a single `write` on an `O_APPEND` file, so several processes can share
//! one file and a process killed mid-run leaves whole lines. [`read_history`] reads it back.
//! Blank lines and lines starting with `#` are ignored. A record is eight whitespace-separated
//! fields, then, for a failed operation, the error text to the end of the line:
//!
//! ```text
//! # client op    value inv_ns ret_ns outcome version value [error]
//! c1       write 7     100    250    ok      1       7
//! c2       read  -     120    180    ok      0       0
//! c1       write 8     300    310    failed  -       -       not acquired: lock never granted
//! c3       write 9     320    -      unknown -       -
//! ```
//!
//! `-` stands for "none"; a completion time of `-` is "never" (`u64::MAX`). Times are
//! nanoseconds of `CLOCK_MONOTONIC` ([`now_ns`]), comparable between processes of one host.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Nanoseconds of `CLOCK_MONOTONIC`: unlike [`std::time::Instant`], comparable between the
/// processes of one host, so histories recorded by several processes can be merged.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What an operation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Acquire, put a whole value, release: creates the next version holding `value`. Every
    /// write of a history writes a distinct value (e.g. `client << 32 | seq`), so reads can be
    /// attributed to the write they saw.
    Write {
        /// The value written.
        value: u64,
    },
    /// Read the latest version (reads of an explicit older version belong in
    /// [`FinalState::versions`], not here: they need not be current).
    Read,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect. A write created `version`, holding its written value `value`; a read saw
    /// `version` holding `value`.
    Ok {
        /// The version created (write) or seen (read).
        version: u64,
        /// The value that version holds.
        value: u64,
    },
    /// It definitely did not take effect (a typed error, e.g. the lock was never granted).
    Failed {
        /// The error, as text.
        error: String,
    },
    /// A fault cut it off: it may or may not have taken effect (Jepsen's `:info`).
    Unknown,
}

impl Outcome {
    /// A failure with the text of `error`.
    pub fn failed(error: impl fmt::Display) -> Outcome {
        Outcome::Failed {
            error: error.to_string(),
        }
    }
}

/// One operation of a history: who, what, when (invocation and completion) and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The client that ran it (non-empty, no whitespace, not starting with `#`).
    pub client: String,
    /// What it asked for.
    pub op: Op,
    /// When it was invoked ([`now_ns`]).
    pub invoked_ns: u64,
    /// When it completed ([`now_ns`]); ignored for [`Outcome::Unknown`] (treated as never).
    pub completed_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// A record from its parts.
    pub fn new(
        client: impl Into<String>,
        op: Op,
        invoked_ns: u64,
        completed_ns: u64,
        outcome: Outcome,
    ) -> Record {
        Record {
            client: client.into(),
            op,
            invoked_ns,
            completed_ns,
            outcome,
        }
    }

    /// The record as one line of the text format (without the newline). Fails if the client id
    /// cannot be written (empty, whitespace, or a leading `#`); line breaks in an error text are
    /// written as spaces.
    pub fn to_line(&self) -> Result<String> {
        check_client(&self.client)?;
        Ok(self.to_string())
    }

    /// Parses one line of the text format. A malformed line is an [`Error::Protocol`] saying
    /// what is wrong.
    pub fn parse_line(line: &str) -> Result<Record> {
        parse_record(line)
            .map_err(|why| Error::Protocol(format!("history record: {why}: {line:?}")))
    }
}

fn check_client(client: &str) -> Result<()> {
    if client.is_empty() || client.starts_with('#') || client.contains(char::is_whitespace) {
        return Err(Error::InvalidArgument(format!(
            "history client id {client:?}: must be non-empty, without whitespace, not starting with '#'"
        )));
    }
    Ok(())
}

/// The text-format line (see the module documentation).
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Op::Write { value } => write!(f, "{} write {value} ", self.client)?,
            Op::Read => write!(f, "{} read - ", self.client)?,
        }
        write!(f, "{} ", self.invoked_ns)?;
        if self.completed_ns == u64::MAX {
            f.write_str("- ")?;
        } else {
            write!(f, "{} ", self.completed_ns)?;
        }
        match &self.outcome {
            Outcome::Ok { version, value } => write!(f, "ok {version} {value}"),
            Outcome::Unknown => f.write_str("unknown - -"),
            Outcome::Failed { error } => {
                f.write_str("failed - -")?;
                let error = error.trim();
                if !error.is_empty() {
                    f.write_str(" ")?;
                    for c in error.chars() {
                        let c = if c.is_control() { ' ' } else { c };
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn parse_record(line: &str) -> std::result::Result<Record, String> {
    let mut fields = [""; 8];
    let mut rest = line;
    for (k, field) in fields.iter_mut().enumerate() {
        let s = rest.trim_start();
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        if end == 0 {
            return Err(format!("expected at least 8 fields, found {k}"));
        }
        *field = &s[..end];
        rest = &s[end..];
    }
    let extra = rest.trim();
    let [client, op, value, inv, ret, outcome, version, seen] = fields;
    if client.starts_with('#') {
        return Err("a client id cannot start with '#'".into());
    }
    let num = |what: &str, s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{what} must be an unsigned integer, not {s:?}"))
    };
    let none = |what: &str, s: &str| {
        if s == "-" {
            Ok(())
        } else {
            Err(format!("{what} must be '-' here, not {s:?}"))
        }
    };
    let op = match op {
        "write" => Op::Write {
            value: num("the written value", value)?,
        },
        "read" => {
            none("the written value of a read", value)?;
            Op::Read
        }
        other => return Err(format!("unknown operation {other:?} (write or read)")),
    };
    let invoked_ns = num("inv_ns", inv)?;
    let completed_ns = if ret == "-" {
        u64::MAX
    } else {
        num("ret_ns", ret)?
    };
    let outcome = match outcome {
        "ok" => {
            let version = num("the version", version)?;
            let value = num("the value", seen)?;
            if let Op::Write { value: written } = op {
                if written != value {
                    return Err(format!(
                        "an ok write's version holds its written value {written}, not {value}"
                    ));
                }
            }
            Outcome::Ok { version, value }
        }
        "failed" | "unknown" => {
            none("the version of a failed or unknown operation", version)?;
            none("the value of a failed or unknown operation", seen)?;
            if outcome == "failed" {
                Outcome::Failed {
                    error: extra.to_string(),
                }
            } else {
                Outcome::Unknown
            }
        }
        other => return Err(format!("unknown outcome {other:?} (ok, failed or unknown)")),
    };
    if !extra.is_empty() && !matches!(outcome, Outcome::Failed { .. }) {
        return Err(format!("unexpected text after the 8th field: {extra:?}"));
    }
    Ok(Record {
        client: client.to_string(),
        op,
        invoked_ns,
        completed_ns,
        outcome,
    })
}

/// Writes a history in the text format: a header comment, then one line per record.
pub fn write_history(mut out: impl Write, records: &[Record]) -> Result<()> {
    let io = |e: std::io::Error| Error::InvalidArgument(format!("writing a history: {e}"));
    let mut text = String::from("# client op value inv_ns ret_ns outcome version value [error]\n");
    for r in records {
        text.push_str(&r.to_line()?);
        text.push('\n');
    }
    out.write_all(text.as_bytes()).map_err(io)?;
    out.flush().map_err(io)
}

/// Reads a history in the text format. A malformed line is an [`Error::Protocol`] naming the
/// line (1-based) and saying what is wrong with it.
pub fn read_history(input: impl BufRead) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (k, line) in input.lines().enumerate() {
        let n = k + 1;
        let line =
            line.map_err(|e| Error::InvalidArgument(format!("reading history line {n}: {e}")))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let record = parse_record(trimmed)
            .map_err(|why| Error::Protocol(format!("history line {n}: {why}: {line:?}")))?;
        records.push(record);
    }
    Ok(records)
}

/// Reads the history file at `path` ([`read_history`]).
pub fn load(path: impl AsRef<Path>) -> Result<Vec<Record>> {
    let path = path.as_ref();
    let file = File::open(path)
        .map_err(|e| Error::NotFound(format!("history file {}: {e}", path.display())))?;
    read_history(BufReader::new(file))
}

/// Writes a history to the file at `path`, replacing it ([`write_history`]).
pub fn save(path: impl AsRef<Path>, records: &[Record]) -> Result<()> {
    let path = path.as_ref();
    let file = File::create(path)
        .map_err(|e| Error::InvalidArgument(format!("history file {}: {e}", path.display())))?;
    write_history(std::io::BufWriter::new(file), records)
}

/// An operation invoked but not yet completed: from [`Recorder::begin`], ended by
/// [`Recorder::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The client running it.
    pub client: String,
    /// What it asked for.
    pub op: Op,
    /// When it was invoked.
    pub invoked_ns: u64,
}

/// Collects the records of a history from several threads, in memory and, optionally,
/// appended to a file as they complete (one line per record, one `write` each, so several
/// processes can append to the same file).
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<RecorderInner>,
}

#[derive(Debug, Default)]
struct RecorderInner {
    records: Vec<Record>,
    file: Option<File>,
}

impl Recorder {
    /// A recorder that keeps records in memory only.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A recorder that also appends every record to the file at `path` (created if needed,
    /// never truncated: other processes may be appending to it too).
    pub fn append_to(path: impl AsRef<Path>) -> Result<Recorder> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::InvalidArgument(format!("history file {}: {e}", path.display())))?;
        Ok(Recorder {
            inner: Mutex::new(RecorderInner {
                records: Vec::new(),
                file: Some(file),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, RecorderInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record (to memory, and to the file if there is one).
    pub fn record(&self, record: Record) -> Result<()> {
        let mut line = record.to_line()?;
        line.push('\n');
        let mut inner = self.lock();
        if let Some(file) = inner.file.as_mut() {
            file.write_all(line.as_bytes())
                .map_err(|e| Error::InvalidArgument(format!("appending to a history file: {e}")))?;
        }
        inner.records.push(record);
        Ok(())
    }

    /// Notes the invocation of an operation now ([`now_ns`]).
    pub fn begin(&self, client: impl Into<String>, op: Op) -> Pending {
        Pending {
            client: client.into(),
            op,
            invoked_ns: now_ns(),
        }
    }

    /// Records the completion, now, of an operation begun with [`Recorder::begin`].
    pub fn finish(&self, pending: Pending, outcome: Outcome) -> Result<()> {
        let completed_ns = now_ns();
        self.record(Record {
            client: pending.client,
            op: pending.op,
            invoked_ns: pending.invoked_ns,
            completed_ns,
            outcome,
        })
    }

    /// A copy of the records so far, in completion order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// The records, in completion order.
    pub fn into_records(self) -> Vec<Record> {
        self.inner
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .records
    }
}

/// What was read back after the run, when every operation had ended: the latest committed
/// version, and versions read explicitly as `(version, value)` (those still retained).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    /// The latest committed version.
    pub latest: u64,
    /// Versions read back, with their values.
    pub versions: Vec<(u64, u64)>,
}

/// The kinds of violation [`check`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// A record that cannot be checked: completed before it was invoked, an Ok write of version
    /// 0 or holding another value than it wrote, two writes of one value, a final state listing
    /// versions above its latest.
    InvalidRecord,
    /// Two writes created the same version (two Ok writes, or an Ok and an Unknown write whose
    /// value was read at that version).
    DuplicateVersion,
    /// Versions between 1 and the highest one seen that no Ok write created, no read attributes
    /// to an Unknown write, and no unobserved Unknown write can fill.
    VersionGap,
    /// An acknowledged write lost: its version read with another value, or the final latest
    /// version older than it.
    LostWrite,
    /// A read (or the final state) returned a value written only by a Failed write.
    AbortedRead,
    /// A read (or the final state) returned a value no write wrote (or version 0 not holding 0).
    PhantomRead,
    /// One write's value seen at several versions (or at another version than it created).
    ValueMismatch,
    /// A read returned a version older than one already written or read when it was invoked
    /// (or the final latest version is older than a version a read returned).
    StaleRead,
    /// A read returned a value whose write was invoked after the read completed.
    FutureRead,
    /// A write created a version not above every version written or read before it was
    /// invoked.
    StaleWrite,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationKind::InvalidRecord => "invalid record",
            ViolationKind::DuplicateVersion => "duplicate version",
            ViolationKind::VersionGap => "version gap",
            ViolationKind::LostWrite => "lost write",
            ViolationKind::AbortedRead => "aborted data visible",
            ViolationKind::PhantomRead => "phantom data visible",
            ViolationKind::ValueMismatch => "value at several versions",
            ViolationKind::StaleRead => "stale read",
            ViolationKind::FutureRead => "read from the future",
            ViolationKind::StaleWrite => "stale write",
        })
    }
}

/// One violation: its kind, the records involved (indices into the checked slice) and a
/// message naming them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What is wrong.
    pub kind: ViolationKind,
    /// The records involved, as indices into the slice given to [`check`].
    pub records: Vec<usize>,
    /// What is wrong, with the records involved written out.
    pub message: String,
}

/// How many operations of each kind ended how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Writes that took effect.
    pub writes_ok: usize,
    /// Writes that definitely did not.
    pub writes_failed: usize,
    /// Writes that may or may not have.
    pub writes_unknown: usize,
    /// Reads that returned a version.
    pub reads_ok: usize,
    /// Reads that failed.
    pub reads_failed: usize,
    /// Reads cut off by a fault.
    pub reads_unknown: usize,
}

/// The result of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations by kind and outcome.
    pub counts: Counts,
    /// The highest version seen (written, read, or in the final state).
    pub max_version: u64,
    /// Versions created by no observed write that unobserved Unknown writes account for.
    pub gaps_filled_by_unknown: u64,
    /// Every violation found, ordered by kind.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether the history is correct (no violation).
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations of one kind.
    pub fn of_kind(&self, kind: ViolationKind) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.kind == kind)
    }

    /// Whether some violation is of this kind.
    pub fn has(&self, kind: ViolationKind) -> bool {
        self.of_kind(kind).next().is_some()
    }
}

/// A summary line, then the violations (the first 100).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "history: writes {} ok, {} failed, {} unknown; reads {} ok, {} failed, {} unknown; \
             versions up to {} ({} filled by unknown writes): ",
            c.writes_ok,
            c.writes_failed,
            c.writes_unknown,
            c.reads_ok,
            c.reads_failed,
            c.reads_unknown,
            self.max_version,
            self.gaps_filled_by_unknown
        )?;
        if self.is_ok() {
            return f.write_str("ok");
        }
        write!(f, "{} violation(s)", self.violations.len())?;
        const SHOWN: usize = 100;
        for v in self.violations.iter().take(SHOWN) {
            write!(f, "\n  {}: {}", v.kind, v.message)?;
        }
        if self.violations.len() > SHOWN {
            write!(f, "\n  ... and {} more", self.violations.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Where an observed `(version, value)` came from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// An Ok read (a record index).
    Read(usize),
    /// The final state's versions.
    Final,
}

struct Checker<'a> {
    records: &'a [Record],
    violations: Vec<Violation>,
}

impl Checker<'_> {
    fn report(&mut self, kind: ViolationKind, records: Vec<usize>, what: String) {
        let mut message = what;
        for &i in &records {
            message.push_str(&format!("; #{i}: {}", self.records[i]));
        }
        self.violations.push(Violation {
            kind,
            records,
            message,
        });
    }

    fn source(&self, s: Source, version: u64, value: u64) -> (Vec<usize>, String) {
        match s {
            Source::Read(i) => (
                vec![i],
                format!("read #{i} returned version {version} = {value}"),
            ),
            Source::Final => (
                vec![],
                format!("the final state has version {version} = {value}"),
            ),
        }
    }
}

fn write_value(r: &Record) -> Option<u64> {
    match r.op {
        Op::Write { value } => Some(value),
        Op::Read => None,
    }
}

/// Checks a history of one versioned register (see the module documentation for the rules),
/// with what was read back after the run if known. Runs in O(n log n) for n records.
pub fn check(records: &[Record], final_state: Option<&FinalState>) -> Report {
    use ViolationKind::*;
    let mut c = Checker {
        records,
        violations: Vec::new(),
    };
    let mut counts = Counts::default();
    let mut valid = vec![true; records.len()];
    // The write of each value (the first, if a value is written twice).
    let mut writer: HashMap<u64, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        match (&r.op, &r.outcome) {
            (Op::Write { .. }, Outcome::Ok { .. }) => counts.writes_ok += 1,
            (Op::Write { .. }, Outcome::Failed { .. }) => counts.writes_failed += 1,
            (Op::Write { .. }, Outcome::Unknown) => counts.writes_unknown += 1,
            (Op::Read, Outcome::Ok { .. }) => counts.reads_ok += 1,
            (Op::Read, Outcome::Failed { .. }) => counts.reads_failed += 1,
            (Op::Read, Outcome::Unknown) => counts.reads_unknown += 1,
        }
        if !matches!(r.outcome, Outcome::Unknown) && r.completed_ns < r.invoked_ns {
            c.report(
                InvalidRecord,
                vec![i],
                "completed before it was invoked".into(),
            );
            valid[i] = false;
            continue;
        }
        let Op::Write { value } = r.op else { continue };
        if let Outcome::Ok {
            version,
            value: held,
        } = r.outcome
        {
            if version == 0 {
                c.report(
                    InvalidRecord,
                    vec![i],
                    "a write cannot create version 0 (the initial value)".into(),
                );
                valid[i] = false;
                continue;
            }
            if held != value {
                c.report(
                    InvalidRecord,
                    vec![i],
                    format!("an Ok write of {value} says its version holds {held}"),
                );
                valid[i] = false;
                continue;
            }
        }
        if let Some(&first) = writer.get(&value) {
            c.report(
                InvalidRecord,
                vec![first, i],
                format!("value {value} written twice: reads of it cannot be attributed"),
            );
        } else {
            writer.insert(value, i);
        }
    }

    // The first Ok write claiming each version (others are duplicates, reported below), and
    // every (write, version) attribution: Ok writes' claims and the reads of their values.
    let mut ok_at: HashMap<u64, usize> = HashMap::new();
    let mut attributed: Vec<(usize, u64, Option<usize>)> = Vec::new();
    let mut max_version = 0u64;
    for (i, r) in records.iter().enumerate() {
        if let (true, Op::Write { .. }, Outcome::Ok { version, .. }) = (valid[i], r.op, &r.outcome)
        {
            ok_at.entry(*version).or_insert(i);
            attributed.push((i, *version, None));
            max_version = max_version.max(*version);
        }
    }

    // Every (version, value) observed: Ok reads, then the final state.
    let mut observed: Vec<(u64, u64, Source)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let (true, Op::Read, Outcome::Ok { version, value }) = (valid[i], r.op, &r.outcome) {
            observed.push((*version, *value, Source::Read(i)));
        }
    }
    if let Some(f) = final_state {
        max_version = max_version.max(f.latest);
        for &(version, value) in &f.versions {
            if version > f.latest {
                c.report(
                    InvalidRecord,
                    vec![],
                    format!(
                        "the final state lists version {version} above its latest, {}",
                        f.latest
                    ),
                );
            }
            observed.push((version, value, Source::Final));
        }
    }
    for &(v, x, src) in &observed {
        max_version = max_version.max(v);
        let (mut recs, what) = c.source(src, v, x);
        if v == 0 {
            if x != 0 {
                c.report(
                    PhantomRead,
                    recs,
                    format!("{what}, but version 0 is the initial value 0"),
                );
            }
            continue;
        }
        if let Some(&o) = ok_at.get(&v) {
            if write_value(&records[o]) != Some(x) {
                let mut involved = vec![o];
                involved.extend(&recs);
                c.report(
                    LostWrite,
                    involved,
                    format!("acknowledged write #{o} created version {v}, but {what}"),
                );
            }
        }
        match writer.get(&x) {
            None => c.report(PhantomRead, recs, format!("{what}, a value no write wrote")),
            Some(&w) => match records[w].outcome {
                Outcome::Failed { .. } => {
                    recs.push(w);
                    c.report(
                        AbortedRead,
                        recs,
                        format!("{what}, a value only failed write #{w} wrote"),
                    );
                }
                _ if !valid[w] => {}
                _ => {
                    attributed.push((w, v, recs.first().copied()));
                    if let Source::Read(r) = src {
                        if records[w].invoked_ns > records[r].completed_ns {
                            c.report(
                                FutureRead,
                                vec![r, w],
                                format!(
                                    "{what}, written by #{w}, invoked after the read completed"
                                ),
                            );
                        }
                    }
                }
            },
        }
    }

    // Each write stands for one version: an Ok write for the one it created, an Unknown write
    // for the lowest one its value was read at. Other versions its value was read at are
    // mismatches; two writes standing for one version are duplicates.
    attributed.sort_unstable_by_key(|&(w, v, _)| (w, v));
    let mut version_of: HashMap<usize, u64> = HashMap::new();
    let mut writers_at: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for group in attributed.chunk_by(|a, b| a.0 == b.0) {
        let w = group[0].0;
        let primary = match records[w].outcome {
            Outcome::Ok { version, .. } => version,
            _ => group[0].1,
        };
        version_of.insert(w, primary);
        writers_at.entry(primary).or_default().push(w);
        let others: Vec<&(usize, u64, Option<usize>)> =
            group.iter().filter(|a| a.1 != primary).collect();
        if !others.is_empty() {
            let mut versions: Vec<u64> = others.iter().map(|a| a.1).collect();
            versions.dedup();
            let mut involved = vec![w];
            involved.extend(others.iter().filter_map(|a| a.2));
            let x = write_value(&records[w]).unwrap_or_default();
            c.report(
                ValueMismatch,
                involved,
                format!(
                    "value {x} of write #{w} (version {primary}) was also seen as version(s) {versions:?}"
                ),
            );
        }
    }
    for (&v, ws) in &writers_at {
        if ws.len() > 1 {
            c.report(
                DuplicateVersion,
                ws.clone(),
                format!("{} writes created version {v}", ws.len()),
            );
        }
    }

    // The final latest version must not be older than any acknowledged write or any read.
    if let Some(f) = final_state {
        let mut lost: Vec<(u64, usize)> = Vec::new();
        let mut stale: Vec<(u64, usize)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if let (true, Outcome::Ok { version, .. }) = (valid[i], &r.outcome) {
                if *version > f.latest {
                    match r.op {
                        Op::Write { .. } => lost.push((*version, i)),
                        Op::Read => stale.push((*version, i)),
                    }
                }
            }
        }
        for (kind, mut list, what) in [
            (LostWrite, lost, "acknowledged writes of versions"),
            (StaleRead, stale, "reads of versions"),
        ] {
            if list.is_empty() {
                continue;
            }
            list.sort_unstable();
            let top = list.last().map(|l| l.0).unwrap_or_default();
            c.report(
                kind,
                list.iter().map(|l| l.1).collect(),
                format!(
                    "the final latest version {} is older than {what} up to {top}",
                    f.latest
                ),
            );
        }
    }

    // Real time. Each Ok operation completed before another was invoked must come before it in
    // the version order (write v < reads of v < write v + 1): sweep the invocations in time
    // order, keeping the highest version written and read by the operations completed so far.
    let mut completions: Vec<(u64, u64, usize, bool)> = Vec::new();
    let mut invocations: Vec<(u64, usize)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if !valid[i] {
            continue;
        }
        match (&r.op, &r.outcome) {
            (op, Outcome::Ok { version, .. }) => {
                completions.push((r.completed_ns, *version, i, *op == Op::Read));
                invocations.push((r.invoked_ns, i));
            }
            (Op::Write { .. }, Outcome::Unknown) => invocations.push((r.invoked_ns, i)),
            _ => {}
        }
    }
    completions.sort_unstable();
    invocations.sort_unstable();
    let mut done = completions.iter().peekable();
    let mut max_written: Option<(u64, usize)> = None;
    let mut max_read: Option<(u64, usize)> = None;
    // Lower bounds (exclusive) on the version of each unobserved Unknown write.
    let mut unobserved_floor: Vec<u64> = Vec::new();
    for &(inv, i) in &invocations {
        while let Some(&(_, version, j, is_read)) = done.next_if(|e| e.0 < inv) {
            let slot = if is_read {
                &mut max_read
            } else {
                &mut max_written
            };
            if slot.is_none_or(|(v, _)| version > v) {
                *slot = Some((version, j));
            }
        }
        let r = &records[i];
        match r.op {
            Op::Read => {
                let Outcome::Ok { version, .. } = r.outcome else {
                    continue;
                };
                for (witness, did) in [(max_written, "write"), (max_read, "read")] {
                    if let Some((wv, j)) = witness.filter(|&(wv, _)| wv > version) {
                        c.report(
                            StaleRead,
                            vec![j, i],
                            format!(
                                "read #{i} returned version {version}, but {did} #{j} of version {wv} completed before it was invoked"
                            ),
                        );
                        break;
                    }
                }
            }
            Op::Write { .. } => {
                let Some(&version) = version_of.get(&i) else {
                    let floor = max_written.map_or(0, |w| w.0);
                    unobserved_floor.push(floor.max(max_read.map_or(0, |r| r.0)));
                    continue;
                };
                // A write completed before of the same version is a duplicate; a read of this
                // version completed before is a read from the future; both are reported above.
                for (witness, did) in [(max_written, "write"), (max_read, "read")] {
                    if let Some((wv, j)) = witness.filter(|&(wv, _)| wv > version) {
                        c.report(
                            StaleWrite,
                            vec![j, i],
                            format!(
                                "write #{i} created version {version}, but {did} #{j} of version {wv} completed before it was invoked"
                            ),
                        );
                        break;
                    }
                }
            }
        }
    }

    // Gaps: versions 1..=max that no write stands for. An unobserved Unknown write may fill one
    // version above the versions completed before it was invoked. The writes eligible for a
    // version grow with it, so filling the gaps in increasing order, each from any eligible
    // write, fills as many as possible.
    unobserved_floor.sort_unstable();
    let mut floors = unobserved_floor.iter().peekable();
    let mut eligible = 0u64;
    let mut filled = 0u64;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut next: u128 = 1;
    for &v in writers_at.keys() {
        if u128::from(v) > next {
            ranges.push((next as u64, v - 1));
        }
        next = next.max(u128::from(v) + 1);
    }
    if u128::from(max_version) >= next {
        ranges.push((next as u64, max_version));
    }
    for (lo, hi) in ranges {
        let mut v = lo;
        while v <= hi {
            while let Some(&&f) = floors.peek() {
                if f < v {
                    eligible += 1;
                    floors.next();
                } else {
                    break;
                }
            }
            if eligible > 0 {
                let n = eligible.min(hi - v + 1);
                eligible -= n;
                filled += n;
                match v.checked_add(n) {
                    Some(after) => v = after,
                    None => break,
                }
                continue;
            }
            // Nothing can fill v: the gap runs up to the next write's floor.
            let until = floors.peek().map_or(hi, |&&f| f.min(hi));
            gaps.push((v, until));
            if until == u64::MAX {
                break;
            }
            v = until + 1;
        }
    }
    for (lo, hi) in gaps {
        let after: Vec<usize> = writers_at
            .range(hi.saturating_add(1)..)
            .next()
            .map(|(_, ws)| ws.clone())
            .unwrap_or_default();
        let which = if lo == hi {
            format!("version {lo}")
        } else {
            format!("versions {lo}..={hi}")
        };
        c.report(
            VersionGap,
            after,
            format!("{which}: created by no Ok write and by no Unknown write that could have"),
        );
    }

    c.violations.sort_by_key(|v| v.kind);
    Report {
        counts,
        max_version,
        gaps_filled_by_unknown: filled,
        violations: c.violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ViolationKind::*;

    fn w(value: u64, inv: u64, ret: u64, version: u64) -> Record {
        Record::new(
            format!("c{}", value / 100),
            Op::Write { value },
            inv,
            ret,
            Outcome::Ok { version, value },
        )
    }

    fn w_failed(value: u64, inv: u64, ret: u64) -> Record {
        let outcome = Outcome::failed("not acquired: lock never granted");
        Record::new("f", Op::Write { value }, inv, ret, outcome)
    }

    fn w_unknown(value: u64, inv: u64) -> Record {
        Record::new("u", Op::Write { value }, inv, u64::MAX, Outcome::Unknown)
    }

    fn r(inv: u64, ret: u64, version: u64, value: u64) -> Record {
        Record::new("r", Op::Read, inv, ret, Outcome::Ok { version, value })
    }

    fn kinds(report: &Report) -> Vec<ViolationKind> {
        let mut k: Vec<ViolationKind> = report.violations.iter().map(|v| v.kind).collect();
        k.dedup();
        k
    }

    #[test]
    fn correct_concurrent_history_passes() {
        let h = vec![
            w(101, 0, 10, 1),
            r(5, 8, 0, 0),      // concurrent with the first write: the initial value
            r(9, 20, 1, 101),   // concurrent with it too: its version
            w_unknown(301, 12), // committed as version 2 (a read saw it)
            w(102, 15, 30, 3),
            r(21, 25, 2, 301),  // version 2, while version 3 is being written
            w_unknown(302, 31), // committed as version 4, never read: fills the gap
            w_failed(201, 32, 40),
            w(103, 35, 50, 5),
            w_unknown(303, 55), // never committed
            r(51, 60, 5, 103),
            Record::new("r", Op::Read, 61, 62, Outcome::failed("timed out")),
            Record::new("r", Op::Read, 63, 64, Outcome::Unknown),
        ];
        let fin = FinalState {
            latest: 5,
            versions: vec![(5, 103), (3, 102), (1, 101)],
        };
        let report = check(&h, Some(&fin));
        assert!(report.is_ok(), "{report}");
        assert_eq!(
            report.counts,
            Counts {
                writes_ok: 3,
                writes_failed: 1,
                writes_unknown: 3,
                reads_ok: 4,
                reads_failed: 1,
                reads_unknown: 1,
            }
        );
        assert_eq!(report.max_version, 5);
        assert_eq!(report.gaps_filled_by_unknown, 1);
        assert!(report.to_string().ends_with("ok"), "{report}");
    }

    #[test]
    fn lost_acknowledged_write_is_detected() {
        // The final latest version is older than an acknowledged write.
        let h = vec![w(101, 0, 10, 1), w(102, 20, 30, 2)];
        let fin = FinalState {
            latest: 1,
            versions: vec![(1, 101)],
        };
        let report = check(&h, Some(&fin));
        assert_eq!(kinds(&report), vec![LostWrite], "{report}");
        assert_eq!(report.violations[0].records, vec![1]);

        // A read of an acknowledged version returns another write's value.
        let h = vec![w(101, 0, 10, 1), w_unknown(301, 5), r(20, 30, 1, 301)];
        let report = check(&h, None);
        assert!(report.has(LostWrite), "{report}");
        let lost = report.of_kind(LostWrite).next().unwrap();
        assert_eq!(lost.records, vec![0, 2]);

        // The final state holds another value at an acknowledged version.
        let h = vec![w(101, 0, 10, 1)];
        let fin = FinalState {
            latest: 1,
            versions: vec![(1, 0)],
        };
        let report = check(&h, Some(&fin));
        assert!(report.has(LostWrite), "{report}");
    }

    #[test]
    fn duplicate_version_is_detected() {
        let h = vec![w(101, 0, 10, 1), w(201, 2, 12, 1)];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![DuplicateVersion], "{report}");
        assert_eq!(report.violations[0].records, vec![0, 1]);
    }

    #[test]
    fn aborted_data_is_detected() {
        let h = vec![w(101, 0, 10, 1), w_failed(201, 20, 30), r(40, 50, 2, 201)];
        let report = check(&h, None);
        assert!(report.has(AbortedRead), "{report}");
        let v = report.of_kind(AbortedRead).next().unwrap();
        assert_eq!(v.records, vec![2, 1]);
        // Nothing accounts for version 2 either: a failed write cannot fill a gap.
        assert!(report.has(VersionGap), "{report}");
    }

    #[test]
    fn phantom_data_is_detected() {
        let report = check(&[w(101, 0, 10, 1), r(20, 30, 1, 999)], None);
        assert!(report.has(PhantomRead), "{report}");
        let report = check(&[r(0, 10, 0, 5)], None);
        assert_eq!(kinds(&report), vec![PhantomRead], "{report}");
        // A garbage version does not make the checker walk every version below it.
        let report = check(&[w_unknown(301, 0), r(0, 10, u64::MAX, 5)], None);
        assert_eq!(kinds(&report), vec![VersionGap, PhantomRead], "{report}");
        assert_eq!(report.gaps_filled_by_unknown, 1);
        let gap = &report.violations[0].message;
        assert!(
            gap.contains(&format!("versions 2..={}:", u64::MAX)),
            "{report}"
        );
    }

    #[test]
    fn stale_read_is_detected() {
        // Version 2 was acknowledged before the read was invoked; the read returned version 1.
        let h = vec![w(101, 0, 10, 1), w(102, 20, 30, 2), r(40, 50, 1, 101)];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![StaleRead], "{report}");
        assert_eq!(report.violations[0].records, vec![1, 2]);

        // A read goes back behind an earlier read (the write of version 2 is still unknown).
        let h = vec![
            w(101, 0, 10, 1),
            w_unknown(301, 20),
            r(30, 40, 2, 301),
            r(50, 60, 1, 101),
        ];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![StaleRead], "{report}");
        assert_eq!(report.violations[0].records, vec![2, 3]);

        // The final latest version is older than a read.
        let fin = FinalState {
            latest: 1,
            versions: vec![],
        };
        let report = check(&h[..3], Some(&fin));
        assert_eq!(kinds(&report), vec![StaleRead], "{report}");
    }

    #[test]
    fn read_from_the_future_is_detected() {
        let h = vec![r(0, 10, 1, 101), w(101, 20, 30, 1)];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![FutureRead], "{report}");
        assert_eq!(report.violations[0].records, vec![0, 1]);
    }

    #[test]
    fn stale_write_is_detected() {
        let h = vec![w(101, 0, 10, 1), w(102, 20, 30, 3), w(201, 40, 50, 2)];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![StaleWrite], "{report}");
        assert_eq!(report.violations[0].records, vec![1, 2]);
    }

    #[test]
    fn gap_filled_by_no_write_is_detected() {
        let h = vec![w(101, 0, 10, 1), w(102, 20, 30, 3)];
        let report = check(&h, None);
        assert_eq!(kinds(&report), vec![VersionGap], "{report}");
        assert!(
            report.violations[0].message.contains("version 2:"),
            "{report}"
        );
        assert_eq!(report.violations[0].records, vec![1]);

        // Neither a failed write nor an unknown write invoked after version 3 can fill it.
        let mut late = h.clone();
        late.push(w_failed(201, 5, 8));
        late.push(w_unknown(301, 40));
        let report = check(&late, None);
        assert_eq!(kinds(&report), vec![VersionGap], "{report}");

        // An unknown write invoked before version 3 was acknowledged can.
        let mut early = h;
        early.push(w_unknown(301, 15));
        let report = check(&early, None);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.gaps_filled_by_unknown, 1);

        // Versions above every write: reported as one range.
        let fin = FinalState {
            latest: 6,
            versions: vec![],
        };
        let report = check(&early, Some(&fin));
        assert_eq!(kinds(&report), vec![VersionGap], "{report}");
        assert!(
            report.violations[0].message.contains("versions 4..=6"),
            "{report}"
        );
    }

    #[test]
    fn value_at_two_versions_and_invalid_records_are_detected() {
        let report = check(&[w(101, 0, 10, 1), r(20, 30, 2, 101)], None);
        assert!(report.has(ValueMismatch), "{report}");

        let bad_times = Record::new(
            "c",
            Op::Read,
            10,
            5,
            Outcome::Ok {
                version: 0,
                value: 0,
            },
        );
        let version_zero = w(101, 0, 10, 0);
        let twice = [w(101, 0, 10, 1), w_unknown(101, 20)];
        for h in [vec![bad_times], vec![version_zero], twice.to_vec()] {
            let report = check(&h, None);
            assert!(report.has(InvalidRecord), "{report}");
        }
    }

    /// A linearizable history of `n` operations on a simulated register: each operation takes
    /// effect at a point inside its [invocation, completion] interval, neighbours overlap.
    fn generated(n: u64) -> (Vec<Record>, FinalState, u64) {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut version, mut value, mut first) = (0u64, 0u64, 0u64);
        let mut h = Vec::with_capacity(n as usize);
        for k in 0..n {
            let at = 1_000 + 100 * k;
            let inv = at - rnd() % 90;
            let ret = at + rnd() % 90;
            let client = format!("c{}", k % 8);
            let written = k + 1;
            let (op, outcome) = match rnd() % 10 {
                0..=4 => (Op::Read, Outcome::Ok { version, value }),
                kind @ 5..=9 => {
                    let commits = kind <= 7 || (kind == 9 && rnd() % 2 == 0);
                    if commits {
                        version += 1;
                        value = written;
                        if version == 1 {
                            first = written;
                        }
                    }
                    let outcome = match kind {
                        8 => Outcome::failed("not acquired"),
                        9 => Outcome::Unknown,
                        _ => Outcome::Ok { version, value },
                    };
                    (Op::Write { value: written }, outcome)
                }
                _ => unreachable!(),
            };
            h.push(Record::new(client, op, inv, ret, outcome));
        }
        let fin = FinalState {
            latest: version,
            versions: vec![(version, value)],
        };
        (h, fin, first)
    }

    #[test]
    fn large_history_is_checked_quickly() {
        let (mut h, mut fin, first) = generated(100_000);
        let start = std::time::Instant::now();
        let report = check(&h, Some(&fin));
        let took = start.elapsed();
        assert!(report.is_ok(), "{report}");
        assert!(report.gaps_filled_by_unknown > 0, "{report}");
        assert!(
            took.as_secs_f64() < 5.0,
            "checking 100k operations took {took:?}"
        );

        // A late read returning version 1 is stale; a final state missing the last version
        // loses acknowledged writes.
        let late = (h.len() / 2..h.len())
            .find(|&i| h[i].op == Op::Read)
            .unwrap();
        h[late].outcome = Outcome::Ok {
            version: 1,
            value: first,
        };
        fin.latest -= 1;
        fin.versions.clear();
        let report = check(&h, Some(&fin));
        assert!(report.has(StaleRead), "{report}");
        assert!(report.has(LostWrite), "{report}");
    }

    fn sample() -> Vec<Record> {
        vec![
            w(101, 0, 10, 1),
            r(5, 8, 0, 0),
            w_failed(201, 32, 40),
            Record::new(
                "r",
                Op::Read,
                61,
                62,
                Outcome::failed("timed out: 3 s\nlater"),
            ),
            w_unknown(301, 12),
            Record::new("x", Op::Read, 63, 70, Outcome::Unknown),
            Record::new("e", Op::Write { value: 5 }, 1, 2, Outcome::failed("")),
        ]
    }

    #[test]
    fn text_format_round_trips() {
        let h = sample();
        let mut text = Vec::new();
        write_history(&mut text, &h).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("\nc1 write 101 0 10 ok 1 101\n"), "{text}");
        assert!(text.contains("\nu write 301 12 - unknown - -\n"), "{text}");
        let back = read_history(text.as_bytes()).unwrap();
        let mut expected = h;
        // Line breaks in error texts are written as spaces.
        expected[3].outcome = Outcome::failed("timed out: 3 s later");
        assert_eq!(back, expected);
        for r in &back {
            assert_eq!(&Record::parse_line(&r.to_line().unwrap()).unwrap(), r);
        }
        // Whitespace and comments are tolerated.
        let loose = "\n  # a comment\nc1   write 7\t1 2  ok 1 7  \n\n";
        assert_eq!(
            read_history(loose.as_bytes()).unwrap(),
            vec![w(7, 1, 2, 1)]
                .into_iter()
                .map(|mut r| {
                    r.client = "c1".into();
                    r
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn malformed_lines_are_typed_errors_naming_the_line() {
        let bad = [
            "c1 write 7 1 2 ok 1",
            "c1 write 7 1 2 ok 1 8",
            "c1 erase 7 1 2 ok 1 7",
            "c1 read 7 1 2 ok 1 7",
            "c1 write x 1 2 ok 1 7",
            "c1 write 7 -1 2 ok 1 7",
            "c1 write 7 1 2 fine 1 7",
            "c1 write 7 1 2 unknown 1 -",
            "c1 write 7 1 2 ok 1 7 extra",
            "c1 read - 1 2 unknown - - extra",
        ];
        for line in bad {
            let text = format!("# header\nc0 read - 0 1 ok 0 0\n{line}\nc0 read - 5 6 ok 0 0\n");
            match read_history(text.as_bytes()) {
                Err(Error::Protocol(m)) => assert!(m.contains("line 3"), "{m}"),
                other => panic!("{line:?}: {other:?}"),
            }
            assert!(matches!(Record::parse_line(line), Err(Error::Protocol(_))));
        }
        for client in ["", "a b", "#c"] {
            let r = Record::new(client, Op::Read, 0, 1, Outcome::Unknown);
            assert!(
                matches!(r.to_line(), Err(Error::InvalidArgument(_))),
                "{client:?}"
            );
            assert!(Recorder::new().record(r).is_err());
        }
    }

    #[test]
    fn recorder_appends_from_threads_and_processes_share_a_file() {
        let path = std::env::temp_dir().join(format!(
            "juxmem-history-test-{}-{}.txt",
            std::process::id(),
            now_ns()
        ));
        // Two recorders on one file, as two processes would have; a register under a lock is
        // the system under test.
        let recorders = [
            Recorder::append_to(&path).unwrap(),
            Recorder::append_to(&path).unwrap(),
        ];
        let register = Mutex::new((0u64, 0u64));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (rec, register) = (&recorders[t as usize % 2], &register);
                s.spawn(move || {
                    let client = format!("t{t}");
                    for seq in 0..200u64 {
                        if seq % 3 == 0 {
                            let value = (t + 1) << 32 | seq;
                            let p = rec.begin(client.clone(), Op::Write { value });
                            let version = {
                                let mut g = register.lock().unwrap();
                                *g = (g.0 + 1, value);
                                g.0
                            };
                            rec.finish(p, Outcome::Ok { version, value }).unwrap();
                        } else {
                            let p = rec.begin(client.clone(), Op::Read);
                            let (version, value) = *register.lock().unwrap();
                            rec.finish(p, Outcome::Ok { version, value }).unwrap();
                        }
                    }
                });
            }
        });
        let in_memory: usize = recorders.iter().map(|r| r.records().len()).sum();
        assert_eq!(in_memory, 800);
        let from_file = load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(from_file.len(), 800);
        let (latest, value) = *register.lock().unwrap();
        let fin = FinalState {
            latest,
            versions: vec![(latest, value)],
        };
        let report = check(&from_file, Some(&fin));
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.counts.writes_ok, 4 * 67);
        assert_eq!(report.counts.reads_ok, 800 - 4 * 67);

        // now_ns is monotonic.
        let (a, b) = (now_ns(), now_ns());
        assert!(a <= b && a > 0);
    }
}
