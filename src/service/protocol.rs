//! The messages of the juxmem service, exchanged as postcard frames over
//! [`transport::tcp`](crate::transport::tcp).
//!
//! Every request gets exactly one [`Response`]; requests marked "+ bulk" are followed by raw
//! array bytes (length in the request), responses carrying [`Response::Data`] by raw bytes too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::element::ElemType;
use crate::error::Error;
use crate::layout::Layout;
use crate::service::names::{ClaimAnswer, Claimant};
use crate::transport::shm::{HostId, SegmentRef};

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
    /// Incarnation: differs at every start, so a restarted process is a new member.
    pub incarnation: u64,
}

impl NodeInfo {
    /// Whether `other` is this very process (same name and incarnation).
    pub fn same(&self, other: &NodeInfo) -> bool {
        self.name == other.name && self.incarnation == other.incarnation
    }

    /// Its identity.
    pub fn id(&self) -> NodeId {
        NodeId {
            name: self.name.clone(),
            incarnation: self.incarnation,
        }
    }

    /// Whether `id` names this very process.
    pub fn is(&self, id: &NodeId) -> bool {
        self.name == id.name && self.incarnation == id.incarnation
    }
}

/// A process's identity: its name and incarnation (a provider that restarts, or rejoins after
/// being declared dead, is another member under the same name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name.
    pub name: String,
    /// Its incarnation.
    pub incarnation: u64,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// How many copies of each data block to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FullPolicy {
    /// Wait until the oldest retained version has been read (a pipeline loses no step).
    Block,
    /// Drop the oldest version even if nobody read it (and count it).
    DropOldest,
}

/// How many released versions an array keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Retention {
    /// Committed versions retained (at least 2: the latest stays readable while the next is
    /// written).
    pub max_versions: u32,
    /// Policy at the bound.
    pub on_full: FullPolicy,
    /// Readers to wait for under `Block` before any of them registered (a pipeline whose
    /// consumer may start after its producer); 0: wait only for registered readers.
    pub readers: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_versions: 4,
            on_full: FullPolicy::Block,
            readers: 0,
        }
    }
}

/// Where the homes of an array's blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HomePlacement {
    /// Owner computes: grid rank `i` of the creating group is the home of block `i`.
    Creator,
    /// Provider daemons of the creating cluster (data independent of the creating job).
    Daemons,
}

/// Everything needed to create an array.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// User metadata (units, forecast cycle, model...): see [`check_attributes`]. (The
    /// default only matters to self-describing formats: postcard always carries it.)
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Most attributes an array carries.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute key (letters, digits, `_`, `-`, `.`).
pub const MAX_ATTRIBUTE_KEY: usize = 64;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// `InvalidArgument` unless `attrs` are within the limits: at most [`MAX_ATTRIBUTES`], keys of
/// 1 to [`MAX_ATTRIBUTE_KEY`] letters, digits, `_`, `-` or `.`, values of at most
/// [`MAX_ATTRIBUTE_VALUE`] bytes without line breaks.
pub fn check_attributes<'a>(
    attrs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> crate::error::Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    for (n, (k, v)) in attrs.into_iter().enumerate() {
        if n >= MAX_ATTRIBUTES {
            return bad(format!("more than {MAX_ATTRIBUTES} attributes"));
        }
        let key_ok = !k.is_empty()
            && k.len() <= MAX_ATTRIBUTE_KEY
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !key_ok {
            return bad(format!(
                "attribute key {k:?}: 1 to {MAX_ATTRIBUTE_KEY} letters, digits, '_', '-' or '.'"
            ));
        }
        if v.len() > MAX_ATTRIBUTE_VALUE || v.contains(['\n', '\r']) {
            return bad(format!(
                "attribute {k}: a value of at most {MAX_ATTRIBUTE_VALUE} bytes on one line"
            ));
        }
    }
    Ok(())
}

/// `attrs` after a [`Request::SetAttributes`]: `remove` removed, then `set` set; `Err` (and
/// `attrs` unchanged) if the result is beyond the limits.
pub fn change_attributes(
    attrs: &mut BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> crate::error::Result<()> {
    let mut changed = attrs.clone();
    for k in remove {
        changed.remove(k);
    }
    changed.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    check_attributes(&changed)?;
    *attrs = changed;
    Ok(())
}

/// What [`Request::Search`] looks for: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Name pattern (as `List`: `*` matches any run; a trailing `/` lists a namespace).
    pub pattern: String,
    /// Element type.
    pub elem: Option<ElemType>,
    /// Global shape.
    pub shape: Option<Vec<u64>>,
    /// Attributes the array must carry with these values.
    pub attributes: BTreeMap<String, String>,
}

/// Identifies one committed state of a block: the version it represents from on and the write
/// epoch that wrote it (epochs are never reused, so an aborted epoch's leftovers, even at the
/// same version number, are never mistaken for committed data). Version 0 / epoch 0 is the
/// initial zeros.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Stamp {
    /// The array version that first had this content.
    pub version: u64,
    /// The write epoch that wrote it.
    pub epoch: u64,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}/e{}", self.version, self.epoch)
    }
}

/// The committed state of a block that represents array version `version`: the newest stamp
/// not newer than it (a block untouched by an epoch keeps representing later versions).
pub fn stamp_at(stamps: &[Stamp], version: u64) -> Option<Stamp> {
    stamps.iter().rev().find(|s| s.version <= version).copied()
}

/// Where one block's copies are, as of its term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockPlacement {
    /// Placement term: bumped at every change of home. Providers refuse writes, publishes and
    /// installs of an older term, so a block never has two homes.
    pub term: u64,
    /// The home: orders writes, publishes versions, keeps replicas current. `None` once every
    /// copy is gone.
    pub home: Option<NodeInfo>,
    /// Replicas holding every committed stamp in `stamps`.
    pub replicas: Vec<NodeInfo>,
    /// Copies being restored: they receive new versions but are neither read nor promoted
    /// until they hold every committed stamp.
    pub restoring: Vec<NodeInfo>,
    /// Committed stamps retained (ascending): the newest not newer than the array's floor, and
    /// every newer one.
    pub stamps: Vec<Stamp>,
    /// Cache copies of the newest stamp, outside the data group (CANTO's tracked copies):
    /// read like any copy of that stamp, counted against their holders' capacity, invalidated
    /// by the release that makes them stale.
    pub caches: Vec<CacheCopy>,
}

/// A cache copy of a block's committed stamp, on a provider outside the block's data group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheCopy {
    /// Who holds it.
    pub node: NodeInfo,
    /// The stamp it holds.
    pub stamp: Stamp,
}

/// A provider's read cache and a process's requests from other clusters, counted (for
/// `juxmem status`, tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Cache copies held now.
    pub copies: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Copies fetched into the cache.
    pub fills: u64,
    /// Reads served from a cache copy.
    pub hits: u64,
    /// `Invalidate` messages received.
    pub invalidations: u64,
    /// Copies dropped to make room.
    pub evictions: u64,
    /// Requests received from processes of other clusters.
    pub from_other_clusters: u64,
}

impl BlockPlacement {
    /// Every copy that holds the committed data, home first.
    pub fn copies(&self) -> impl Iterator<Item = &NodeInfo> {
        self.home.iter().chain(self.replicas.iter())
    }

    /// Copies a release must reach: current replicas and those being restored.
    pub fn push_targets(&self) -> Vec<NodeInfo> {
        self.replicas
            .iter()
            .chain(self.restoring.iter())
            .cloned()
            .collect()
    }

    /// The newest committed stamp.
    pub fn latest(&self) -> Stamp {
        self.stamps.last().copied().unwrap_or_default()
    }
}

/// Health of a block's data group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// As many current copies as the creator asked for.
    Healthy,
    /// Copies are being restored.
    Restoring,
    /// Fewer copies than asked for, and no provider can take another one now.
    Degraded,
    /// Every copy is gone.
    Lost,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Restoring => "restoring",
            Health::Degraded => "degraded",
            Health::Lost => "LOST",
        })
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
    /// Checks an entry received from a peer before it is used: one placement per block of its
    /// layout (a client indexes the placement by grid rank).
    pub fn check(&self) -> crate::error::Result<()> {
        check_placement(&self.spec.layout, &self.blocks)
    }

    /// Bytes in block `b`.
    pub fn block_bytes(&self, b: u64) -> crate::error::Result<u64> {
        Ok(self.spec.layout.local_len(b)? * self.spec.elem.size() as u64)
    }
}

/// Checks a placement received from a peer (a `WriteGranted`, `Version` or `Placement`
/// response) against the array's layout: exactly one entry per block.
pub fn check_placement(layout: &Layout, blocks: &[BlockPlacement]) -> crate::error::Result<()> {
    if blocks.len() as u64 != layout.nprocs() {
        return Err(Error::Protocol(format!(
            "a placement of {} blocks for an array of {} blocks ({layout})",
            blocks.len(),
            layout.nprocs()
        )));
    }
    Ok(())
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
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
}

/// A namespace: a path under which arrays (and other namespaces) are named, created and
/// destroyed as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceEntry {
    /// Its path.
    pub name: String,
    /// Cluster whose manager holds its record.
    pub cluster: String,
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

/// A member declared dead (lease expired or connection lost), as the status report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadMember {
    /// The node.
    pub node: NodeInfo,
    /// Why it was declared dead.
    pub reason: String,
    /// Seconds ago.
    pub ago_s: f64,
}

/// An array as the status report shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrayStatus {
    /// Directory entry (placement, versions).
    pub meta: ArrayMeta,
    /// Health of each block's data group.
    pub health: Vec<Health>,
    /// Readers holding a version.
    pub pins: Vec<u64>,
    /// The process holding the write lock, if any.
    pub writer: Option<String>,
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
    /// Members declared dead recently (newest first).
    pub dead: Vec<DeadMember>,
    /// Arrays whose entry this manager holds.
    pub arrays: Vec<ArrayStatus>,
    /// The cluster's manager replicas, as the one answering sees them.
    pub replicas: Vec<ReplicaStatus>,
}

/// One manager replica as the status report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Replica id.
    pub id: u64,
    /// Its address (empty if unknown).
    pub addr: String,
    /// Whether it leads.
    pub leader: bool,
    /// The term, as the replica answering knows it.
    pub term: u64,
    /// Log entries it is behind the leader (known to the leader only).
    pub lag: Option<u64>,
}

/// What a release did to one block, reported at commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Touched {
    /// The block.
    pub block: u32,
    /// The placement term its home published under.
    pub term: u64,
    /// Copies holding the new stamp (the home and every replica that acknowledged it).
    pub holders: Vec<NodeId>,
}

/// Requests. Managers answer the membership, directory and coherence ones; providers the data
/// ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    // ---- membership and leases (manager)
    /// A provider (daemon or rank) joins its cluster. Sent on the provider's control
    /// connection, which then carries its heartbeats.
    Register {
        /// The provider.
        node: NodeInfo,
        /// Memory offered (bytes).
        capacity: u64,
        /// A job process registering again, empty, after it was declared dead (a daemon
        /// declared dead must come back as a new incarnation instead).
        rejoin: bool,
    },
    /// Heartbeat: renews the sender's lease (its membership, and the write locks and read pins
    /// it holds at this manager), on its control connection.
    Renew {
        /// A fresh control connection of a process that may have been declared dead: it
        /// rejoins, holding nothing.
        rejoin: bool,
    },
    /// A provider leaves gracefully: its copies are handed over as after a failure.
    Leave {
        /// The provider.
        node: NodeInfo,
    },
    /// Manager to manager: a member of the sender's cluster is gone (dead or left).
    Gone {
        /// The member.
        node: NodeInfo,
    },
    /// The live members of this manager's cluster.
    Members,
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
    /// The creator confirms a creation (every block is hosted); until then the array is not
    /// visible, and it is undone if the creator dies.
    Created {
        /// The array.
        array: ArrayId,
    },
    /// Destroy an array: its name is free again and every copy dropped. Refused (`Busy`) while
    /// another process holds its write lock or read pins, unless `force`.
    Destroy {
        /// The array.
        array: ArrayId,
        /// Destroy even if in use (the holders' epochs are aborted, their pins dropped).
        force: bool,
    },
    /// Manager to manager: memory placed on one of its providers is free again.
    Release {
        /// The provider.
        node: NodeInfo,
        /// Bytes.
        bytes: u64,
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
    /// The current placement of an array's blocks, after checking `suspects` (copies a client
    /// could not reach): a suspect that does not answer is declared dead at once.
    Placement {
        /// The array.
        array: ArrayId,
        /// Copies the client could not reach.
        suspects: Vec<NodeInfo>,
    },
    // ---- coherence (the array's manager)
    /// Take the array's write lock (waits up to `timeout_ms`). Held until `Commit` or `Abort`,
    /// or until the holder's lease runs out (then aborted).
    AcquireWrite {
        /// The array.
        array: ArrayId,
        /// Longest wait.
        timeout_ms: u64,
    },
    /// Publish `version` (= base + 1) as the latest; releases the write lock. Refused if a
    /// touched block changed term since its home published (the release is then retried
    /// against the new placement).
    Commit {
        /// The array.
        array: ArrayId,
        /// The write epoch granted.
        epoch: u64,
        /// The new version.
        version: u64,
        /// The blocks the epoch published.
        touched: Vec<Touched>,
    },
    /// Give up the write lock without publishing.
    Abort {
        /// The array.
        array: ArrayId,
        /// The write epoch granted.
        epoch: u64,
    },
    /// Wait for a version (up to `timeout_ms`); with `pin`, it stays retained until `Unpin`
    /// (or the reader's lease runs out).
    WaitVersion {
        /// The array.
        array: ArrayId,
        /// Which version.
        req: VersionReq,
        /// Longest wait.
        timeout_ms: u64,
        /// Keep it retained while reading.
        pin: bool,
        /// The registered reader reading it (it has then passed every older version).
        reader: Option<u64>,
    },
    /// Registers a reader of the array: under `FullPolicy::Block`, writers keep the versions it
    /// has not read yet.
    AddReader {
        /// The array.
        array: ArrayId,
    },
    /// Unregisters a reader.
    RemoveReader {
        /// The array.
        array: ArrayId,
        /// The reader.
        reader: u64,
    },
    /// Release a pin.
    Unpin {
        /// The array.
        array: ArrayId,
        /// The pin.
        pin: u64,
    },
    // ---- data (providers)
    /// Liveness probe.
    Ping,
    /// Drop every block of an array (it was destroyed). Sent by managers.
    Drop {
        /// The array.
        array: ArrayId,
    },
    /// Host a block (as home or replica) at `term`, starting from the initial zeros. Sent by
    /// managers.
    Host {
        /// The array's entry.
        meta: ArrayMeta,
        /// The block.
        block: u32,
    },
    /// Become the home of a block at `term` (its previous home is gone). Sent by managers.
    Promote {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The new term.
        term: u64,
    },
    /// A block's placement moved to `term`: refuse anything older (a home of an older term
    /// steps down). Sent by managers.
    Fence {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The new term.
        term: u64,
    },
    /// Become a current copy: fetch every stamp in `stamps` not held yet from `sources` (in
    /// order), then answer [`Response::Restored`]. Sent by managers.
    Restore {
        /// The array's entry (hosted first if unknown here).
        meta: ArrayMeta,
        /// The block.
        block: u32,
        /// Committed stamps to hold.
        stamps: Vec<Stamp>,
        /// Copies to fetch from, nearest first.
        sources: Vec<NodeInfo>,
    },
    /// Store a published stamp of a block (replication from its home). + bulk.
    Install {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The home's term.
        term: u64,
        /// What is installed.
        stamp: Stamp,
        /// Stamps to retain besides it (everything else is dropped).
        keep: Vec<Stamp>,
        /// Bytes that follow.
        bytes: u64,
    },
    /// Write into the home's working copy for a write epoch. + bulk.
    Write {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The placement term the writer knows.
        term: u64,
        /// The write epoch.
        epoch: u64,
        /// The committed stamp the epoch starts from.
        base: Stamp,
        /// Where the bytes go.
        selection: Selection,
        /// Bytes that follow.
        bytes: u64,
    },
    /// Make the working copy of `epoch` version `version`, push it to `replicas`, then answer
    /// [`Response::Published`].
    Publish {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The placement term the writer knows.
        term: u64,
        /// The write epoch.
        epoch: u64,
        /// The new version.
        version: u64,
        /// Stamps to retain besides the new one.
        keep: Vec<Stamp>,
        /// Copies to push the new stamp to.
        replicas: Vec<NodeInfo>,
    },
    /// Read part of a block: the committed state `stamp`, or with `working`, the working copy
    /// of that write epoch if one exists (else `stamp`).
    Read {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The committed state.
        stamp: Stamp,
        /// A write epoch whose working copy to read, if any.
        working: Option<u64>,
        /// Which part.
        selection: Selection,
    },
    // ---- names (manager to manager, see `service::names`)
    /// Claim `name` for a creation under way at another cluster (or renew the claim), for
    /// `lease_ms`; answered [`Response::NameClaim`].
    ClaimName {
        /// Namespace path.
        name: String,
        /// The creation.
        by: Claimant,
        /// How long the claim lasts unless renewed (capped by the receiver).
        lease_ms: u64,
    },
    /// The creation `by` gives up its claim of `name` (done, or failed).
    DropClaim {
        /// Namespace path.
        name: String,
        /// The creation.
        by: Claimant,
    },
    // ---- attributes and search (manager)
    /// Arrays matching `query` (asks the other managers unless `forwarded`); answered
    /// [`Response::Names`].
    Search {
        /// What to look for.
        query: Query,
        /// See `Lookup`.
        forwarded: bool,
    },
    /// Sets and removes attributes of an array, by the holder of its write lock (`epoch`);
    /// takes effect at once.
    SetAttributes {
        /// The array.
        array: ArrayId,
        /// The write epoch held.
        epoch: u64,
        /// Attributes to set.
        set: BTreeMap<String, String>,
        /// Attributes to remove.
        remove: Vec<String>,
    },
    // ---- consensus between a cluster's manager replicas
    /// Raft messages from manager replica `from` of `cluster` (encoded as raft encodes them).
    Raft {
        /// The cluster.
        cluster: String,
        /// The sending replica.
        from: u64,
        /// The messages.
        messages: Vec<Vec<u8>>,
    },
    /// Adds (`add`) or removes replica `id` of the cluster's manager (an operator, with the
    /// cluster's manager credential); answered once the change is committed.
    ChangeReplicas {
        /// Add, else remove.
        add: bool,
        /// The replica.
        id: u64,
    },
    /// A provider daemon started again on its data directory asks to be the member it was
    /// (same name and incarnation), holding what it held. Refused (`Fenced`) unless its
    /// cluster's manager still counts it a live member: otherwise its copies were handed over,
    /// and it must start again as a new incarnation, empty. Sent like `Register`.
    Resume {
        /// The provider, as it was.
        node: NodeInfo,
        /// Memory offered.
        capacity: u64,
    },
    /// `AcquireWrite` by a handle that is also registered as reader `reader` of the array:
    /// that registration first passes the latest version (the handle writes on it), so that it
    /// cannot hold up its own write under `FullPolicy::Block` (nothing else would move it on).
    AcquireWriteAsReader {
        /// The array.
        array: ArrayId,
        /// Longest wait.
        timeout_ms: u64,
        /// The handle's reader registration (the sender's own).
        reader: u64,
    },
    /// Where the committed state `stamp` of a block lies in shared memory, for a reader on the
    /// same host (`host` is the sender's); answered [`Response::Mapped`]. The reader then maps
    /// it and copies its piece straight out (see `transport::shm`).
    Map {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The committed state.
        stamp: Stamp,
        /// The reader's host.
        host: HostId,
    },
    // ---- namespaces (manager)
    /// Creates the namespace `name` in the sender's cluster: refused (`AlreadyExists`) while
    /// an array or a namespace of that name exists anywhere in the federation (the same claims
    /// as array names). Answered `Ok`.
    CreateNamespace {
        /// Its path.
        name: String,
    },
    /// Removes the record of namespace `name` from this cluster (not what is under it: the
    /// client destroys that first). Answered `Ok`; `NotFound` if this cluster has no such
    /// namespace.
    DestroyNamespace {
        /// Its path.
        name: String,
    },
    /// The namespaces matching `pattern` (as [`Request::Search`]'s), here and (unless
    /// `forwarded`) in the other clusters; answered [`Response::Namespaces`].
    Namespaces {
        /// Name pattern.
        pattern: String,
        /// Already forwarded by a manager (do not forward again).
        forwarded: bool,
    },
    // ---- read caches (CANTO's tracked copies)
    /// To a provider of the reader's cluster: `selection` of the committed state `stamp` of
    /// `block` of array `array` (named `name`), answered as [`Request::Read`]. The provider
    /// serves it from its copy if it holds one, else from a cache copy, else it first looks
    /// the array up through its own manager, fetches the whole block from a copy of its group
    /// into a cache copy and has the array's manager track it. Nothing the reader says about
    /// the array is trusted beyond its id and name.
    CacheRead {
        /// The array.
        array: ArrayId,
        /// Its name (to look it up).
        name: String,
        /// The block.
        block: u32,
        /// The committed state.
        stamp: Stamp,
        /// Which part.
        selection: Selection,
    },
    /// From a provider to an array's manager: it holds a cache copy of `stamp` of `block`
    /// (only the newest stamp is tracked: an older one is `Stale`, and dropped).
    CacheAdd {
        /// The array.
        array: ArrayId,
        /// The block.
        block: u32,
        /// The stamp held.
        stamp: Stamp,
        /// The holder (the sender).
        node: NodeInfo,
    },
    /// From an array's manager to a cache holder: drop these cache copies (a release made
    /// them stale, or the array was destroyed). Sent only to holders of such copies.
    Invalidate {
        /// The array.
        array: ArrayId,
        /// (block, stamp) of each copy to drop.
        copies: Vec<(u32, Stamp)>,
    },
    /// A process's read cache and cross-cluster counters; answered [`Response::CacheStats`].
    CacheStats,
}

impl Request {
    /// Whether sending this request again, after its answer was lost (to a manager that
    /// failed over meanwhile), is safe: reads, and changes that the manager recognises as
    /// repeated (a commit, a confirmation, a write lock asked again by its holder, a
    /// registration of the same incarnation, a claim renewal).
    pub fn safe_to_repeat(&self) -> bool {
        matches!(
            self,
            Request::Lookup { .. }
                | Request::List { .. }
                | Request::Search { .. }
                | Request::Namespaces { .. }
                | Request::CacheStats
                | Request::Status { .. }
                | Request::Members
                | Request::Placement { .. }
                | Request::Created { .. }
                | Request::Commit { .. }
                | Request::AcquireWrite { .. }
                | Request::AcquireWriteAsReader { .. }
                | Request::WaitVersion { pin: false, .. }
                | Request::Renew { .. }
                | Request::Register { .. }
                | Request::Resume { .. }
                | Request::ClaimName { .. }
                | Request::DropClaim { .. }
                | Request::ChangeReplicas { .. }
        )
    }
}

/// Responses.
// A response lives for one exchange and is decoded in place: boxing the array entry would
// buy no memory and cost an allocation per answer.
#[allow(clippy::large_enum_variant)]
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
    /// The current placement.
    Placement(Vec<BlockPlacement>),
    /// A reader registered.
    Reader(u64),
    /// Providers reserved.
    Reserved(Vec<NodeInfo>),
    /// Live members.
    Members(Vec<NodeInfo>),
    /// A block published.
    Published {
        /// The new stamp (`None`: the epoch wrote nothing in this block).
        stamp: Option<Stamp>,
        /// Copies holding it (the home and the replicas that acknowledged it).
        holders: Vec<NodeId>,
    },
    /// A copy restored.
    Restored {
        /// The committed stamps it now holds.
        held: Vec<Stamp>,
    },
    /// Raw bytes follow.
    Data {
        /// Bytes that follow.
        bytes: u64,
    },
    /// Federation state.
    Status(Vec<ClusterStatus>),
    /// A cluster's answer to [`Request::ClaimName`].
    NameClaim(ClaimAnswer),
    /// Raft messages back to the replica that sent [`Request::Raft`] (its answers, carried on
    /// the same exchange rather than a new one).
    Raft(Vec<Vec<u8>>),
    /// The answer to [`Request::Map`]: the snapshot's segment, if the holder is on the reader's
    /// host (`same_host`) and keeps that snapshot in shared memory; otherwise read it with
    /// [`Request::Read`].
    Mapped {
        /// Where to map it.
        segment: Option<SegmentRef>,
        /// The holder sees the reader's host.
        same_host: bool,
    },
    /// The answer to [`Request::Namespaces`], by name.
    Namespaces(Vec<NamespaceEntry>),
    /// The answer to [`Request::CacheStats`].
    CacheStats(CacheStats),
}

impl Response {
    /// The response carrying `e`.
    pub fn error(e: &Error) -> Response {
        Response::Error {
            code: e.code().as_u32(),
            message: e.detail(),
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
/// at most 255 bytes; no segment is `.` or `..` (a path names one place, also as a directory
/// of a namespace's checkpoint).
pub fn check_name(name: &str) -> crate::error::Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if name.is_empty()
        || name.len() > 255
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".." || !seg.chars().all(ok_char))
    {
        return Err(Error::InvalidArgument(format!(
            "bad array name {name:?}: use '/'-separated segments of letters, digits, '_', '-', '.' \
             (at most 255 bytes; no segment '.' or '..'), e.g. forecast/day1/t2m"
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
