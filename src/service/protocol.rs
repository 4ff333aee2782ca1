//! The messages of the juxmem service, exchanged as postcard frames over
//! [`transport::tcp`](crate::transport::tcp).
//!
//! Every request gets exactly one [`Response`]; requests marked "+ bulk" are followed by raw
//! array bytes (length in the request), responses carrying [`Response::Data`] by raw bytes too.

use serde::{Deserialize, Serialize};

use crate::element::ElemType;
use crate::error::Error;
use crate::layout::Layout;

/// Identifies an array federation-wide (names can be reused after deletion; ids are not).
pub type ArrayId = u64;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// A cluster manager.
    Manager,
    /// A standalone provider daemon (`juxmem provider`).
    Daemon,
    /// A process of a job (a rank) running an embedded provider for the data it owns.
    Rank,
}

/// A node of the federation and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Unique name, e.g. `A1/manager`, `A2/provider-0`, `A1/rank1`.
    pub name: String,
    /// Cluster.
    pub cluster: String,
    /// `host:port` of its service.
    pub addr: String,
    /// Role.
    pub kind: NodeKind,
    /// Incarnation (differs at every start).
    pub epoch: u64,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// How many copies of each data block to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redundancy {
    /// Clusters holding copies (the home's cluster counts as one).
    pub clusters: u32,
    /// Providers per cluster holding copies (the home counts in its cluster).
    pub providers_per_cluster: u32,
}

impl Redundancy {
    /// One copy: the home only.
    pub const NONE: Redundancy = Redundancy {
        clusters: 1,
        providers_per_cluster: 1,
    };

    /// Total copies per block.
    pub fn copies(&self) -> u32 {
        self.clusters * self.providers_per_cluster
    }
}

/// What a writer does when the retained versions are at the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FullPolicy {
    /// Wait until the oldest retained version has been read (a pipeline loses no step).
    Block,
    /// Drop the oldest version even if nobody read it (and count it).
    DropOldest,
}

/// How many released versions an array keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Committed versions retained (at least 2: the latest stays readable while the next is
    /// written).
    pub max_versions: u32,
    /// Policy at the bound.
    pub on_full: FullPolicy,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_versions: 4,
            on_full: FullPolicy::Block,
        }
    }
}

/// Where the homes of an array's blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HomePlacement {
    /// Owner computes: grid rank `i` of the creating group is the home of block `i`.
    Creator,
    /// Provider daemons of the creating cluster (data independent of the creating job).
    Daemons,
}

/// Everything needed to create an array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// Namespace path, e.g. `forecast/day1/t2m`.
    pub name: String,
    /// Element type.
    pub elem: ElemType,
    /// Storage layout: block `i` is grid rank `i`'s local part.
    pub layout: Layout,
    /// Copies per block.
    pub redundancy: Redundancy,
    /// Versions kept.
    pub retention: Retention,
    /// Where homes are.
    pub homes: HomePlacement,
    /// Preferred clusters for copies outside the home's cluster (e.g. the consumer's).
    pub replicate_to: Vec<String>,
}

/// Where one block's copies are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPlacement {
    /// The home: orders writes, publishes versions, keeps replicas current. `None` once every
    /// copy is gone.
    pub home: Option<NodeInfo>,
    /// Other copies, current at every committed version.
    pub replicas: Vec<NodeInfo>,
}

impl BlockPlacement {
    /// Every live copy, home first.
    pub fn copies(&self) -> impl Iterator<Item = &NodeInfo> {
        self.home.iter().chain(self.replicas.iter())
    }
}

/// Directory entry of an array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// Federation-wide id.
    pub id: ArrayId,
    /// Creation spec.
    pub spec: ArraySpec,
    /// The manager holding the entry (and ordering writers).
    pub manager: NodeInfo,
    /// Placement of every block (index = storage grid rank).
    pub blocks: Vec<BlockPlacement>,
    /// Latest committed version when this copy of the entry was made.
    pub committed: u64,
    /// Oldest retained version.
    pub floor: u64,
}

impl ArrayMeta {
    /// Bytes in block `b`.
    pub fn block_bytes(&self, b: u64) -> crate::error::Result<u64> {
        Ok(self.spec.layout.local_len(b)? * self.spec.elem.size() as u64)
    }
}

/// Which version a reader wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionReq {
    /// The latest committed version (0 before any release: zeros).
    Latest,
    /// The latest committed version once it is at least this one.
    AtLeast(u64),
    /// Exactly this version (a pipeline step).
    Exactly(u64),
}

/// What part of a block a read or write moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Selection {
    /// The whole block, in its local order.
    Whole,
    /// What this block sends to rank `q` of `target` (a redistribution plan pair).
    Piece {
        /// The reader's layout.
        target: Layout,
        /// The reader's grid rank.
        q: u64,
    },
    /// The part of the global region `[lo, hi)` inside this block, in the region's row-major
    /// order restricted to the block.
    Region {
        /// Inclusive lower corner.
        lo: Vec<u64>,
        /// Exclusive upper corner.
        hi: Vec<u64>,
    },
}

/// One name in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NameEntry {
    /// Namespace path.
    pub name: String,
    /// Cluster whose manager holds it.
    pub cluster: String,
    /// Element type.
    pub elem: ElemType,
    /// Global shape.
    pub shape: Vec<u64>,
    /// Latest committed version.
    pub committed: u64,
}

/// A member as the status report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The node.
    pub node: NodeInfo,
    /// Memory it offers (bytes).
    pub capacity: u64,
    /// Memory the manager has placed on it (bytes).
    pub reserved: u64,
}

/// An array as the status report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrayStatus {
    /// Directory entry (placement, versions).
    pub meta: ArrayMeta,
    /// Readers holding a version.
    pub pins: Vec<u64>,
    /// Whether a writer holds the array.
    pub writer: bool,
    /// Versions dropped unread (DropOldest policy).
    pub dropped_unread: u64,
}

/// One cluster's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub cluster: String,
    /// Its manager.
    pub manager: NodeInfo,
    /// Registered providers (daemons and ranks).
    pub members: Vec<MemberStatus>,
    /// Arrays whose entry this manager holds.
    pub arrays: Vec<ArrayStatus>,
}

/// Requests. Managers answer the membership, directory and coherence ones; providers the data
/// ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    // ---- membership (manager)
    /// A provider (daemon or rank) joins its cluster.
    Register {
        /// The provider.
        node: NodeInfo,
        /// Memory offered (bytes).
        capacity: u64,
    },
    /// A provider leaves gracefully: the homes it holds move to replicas.
    Leave {
        /// The provider.
        node: NodeInfo,
        /// Blocks it is home of: (array, block).
        homes: Vec<(ArrayId, u32)>,
    },
    /// Manager to manager: pick `count` providers with room for `bytes`, avoiding `exclude`.
    Reserve {
        /// Bytes per copy.
        bytes: u64,
        /// Copies wanted (distinct providers).
        count: u32,
        /// Provider names not to use.
        exclude: Vec<String>,
    },
    // ---- directory (manager)
    /// Create an array; `homes[i]` is the home of block `i` for `HomePlacement::Creator`.
    Create {
        /// The spec.
        spec: ArraySpec,
        /// Homes, one per block (empty for `HomePlacement::Daemons`).
        homes: Vec<NodeInfo>,
    },
    /// Find an array by name (asks the other managers unless `forwarded`).
    Lookup {
        /// Namespace path.
        name: String,
        /// Set by a manager forwarding the request, so it is not forwarded again.
        forwarded: bool,
    },
    /// Names matching a pattern (`*` matches any run of characters; a pattern ending in `/`
    /// lists that namespace).
    List {
        /// Pattern.
        pattern: String,
        /// See `Lookup`.
        forwarded: bool,
    },
    /// The federation's state as seen by this manager (and the others unless `forwarded`).
    Status {
        /// See `Lookup`.
        forwarded: bool,
    },
    // ---- coherence (the array's manager)
    /// Take the array's write lock (waits up to `timeout_ms`). Held until `Commit` or `Abort`
    /// on the same connection, or until the connection closes (then aborted).
    AcquireWrite {
        /// The array.
        array: ArrayId,
        /// Longest wait.
        timeout_ms: u64,
    },
    /// Publish `version` (= base + 1) as the latest; releases the write lock.
    Commit {
        /// The array.
        array: ArrayId,
        /// The write epoch granted.
        epoch: u64,
        /// The new version.
        version: u64,
    },
    /// Give up the write lock without publishing.
    Abort {
        /// The array.
        array: ArrayId,
        /// The write epoch granted.
        epoch: u64,
    },
    /// Wait for a version (up to `timeout_ms`); with `pin`, it stays retained until `Unpin`
    /// (or the connection closes).
    WaitVersion {
        /// The array.
        array: ArrayId,
        /// Which version.
        req: VersionReq,
        /// Longest wait.
        timeout_ms: u64,
        /// Keep it retained while reading.
        pin: bool,
    },
    /// Release a pin.
    Unpin {
        /// The array.
        array: ArrayId,
        /// The pin.
        pin: u64,
    },
    // ---- data (providers)
    /// Host a block (as home or replica). Sent by managers.
    Host {
        /// The array's entry.
        meta: ArrayMeta,
        /// The block.
        block: u32,
    },
    /// Store a published version of a block (replication from its home). + bulk.
    Install {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// Its version.
        version: u64,
        /// Versions below this are no longer retained.
        floor: u64,
        /// Bytes that follow.
        bytes: u64,
    },
    /// Write into the home's working copy for a write epoch. + bulk.
    Write {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The write epoch.
        epoch: u64,
        /// The version the epoch started from.
        base: u64,
        /// Where the bytes go.
        selection: Selection,
        /// Bytes that follow.
        bytes: u64,
    },
    /// Make the working copy of `epoch` version `version`, replicate it, then answer.
    Publish {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The write epoch.
        epoch: u64,
        /// The new version.
        version: u64,
        /// Versions below this are no longer retained.
        floor: u64,
    },
    /// Read part of a block at a version (the latest snapshot not newer than it); with
    /// `epoch`, read the working copy of that write epoch instead.
    Read {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The version.
        version: u64,
        /// A write epoch whose working copy to read, if any.
        epoch: Option<(u64, u64)>,
        /// Which part.
        selection: Selection,
    },
    /// Become the home of a block (its previous home left).
    Promote {
        /// The array's entry with the new placement.
        meta: ArrayMeta,
        /// The block.
        block: u32,
    },
}

/// Responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// Failed, with the error's stable code and its message.
    Error {
        /// [`crate::ErrorCode`] value.
        code: u32,
        /// Full message.
        message: String,
    },
    /// An array entry.
    Meta(ArrayMeta),
    /// A listing.
    Names(Vec<NameEntry>),
    /// Write lock granted.
    WriteGranted {
        /// The epoch (carried by every write of this epoch).
        epoch: u64,
        /// The committed version the epoch starts from; it will publish `base + 1`.
        base: u64,
        /// Versions below this are dropped when publishing.
        floor: u64,
        /// Current placement.
        blocks: Vec<BlockPlacement>,
    },
    /// A version is ready.
    Version {
        /// The version.
        version: u64,
        /// The pin, if asked.
        pin: Option<u64>,
        /// Current placement.
        blocks: Vec<BlockPlacement>,
    },
    /// Providers reserved.
    Reserved(Vec<NodeInfo>),
    /// Raw bytes follow.
    Data {
        /// Bytes that follow.
        bytes: u64,
    },
    /// Federation state.
    Status(Vec<ClusterStatus>),
}

impl Response {
    /// The response carrying `e`.
    pub fn error(e: &Error) -> Response {
        Response::Error {
            code: e.code().as_u32(),
            message: e.to_string(),
        }
    }

    /// Turns an `Error` response into `Err`, anything else into `Ok`.
    pub fn into_result(self) -> crate::error::Result<Response> {
        match self {
            Response::Error { code, message } => Err(Error::from_wire(code, message)),
            other => Ok(other),
        }
    }
}

/// Checks a namespace path: `/`-separated non-empty segments of letters, digits, `_`, `-`, `.`,
/// at most 255 bytes.
pub fn check_name(name: &str) -> crate::error::Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if name.is_empty()
        || name.len() > 255
        || name
            .split('/')
            .any(|seg| seg.is_empty() || !seg.chars().all(ok_char))
    {
        return Err(Error::InvalidArgument(format!(
            "bad array name {name:?}: use '/'-separated segments of letters, digits, '_', '-', '.' \
             (at most 255 bytes), e.g. forecast/day1/t2m"
        )));
    }
    Ok(())
}

/// Whether `name` matches `pattern` (`*` matches any run of characters; a pattern ending in
/// `/` matches everything under that namespace).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() || pattern == "*" {
        return true;
    }
    if pattern.ends_with('/') && !pattern.contains('*') {
        return name.starts_with(pattern);
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with backtracking to the last star.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}
