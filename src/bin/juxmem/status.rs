//! `juxmem status`: the federation as its managers see it, printed for operators, or as JSON
//! for programs (`--json`, the schema below).

use serde::Serialize;

use juxmem::config::Config;
use juxmem::error::{Error, Result};
use juxmem::service::contact;
use juxmem::service::node::{hello_of, new_incarnation};
use juxmem::service::pool::Pool;
use juxmem::service::protocol::{
    ArrayStatus, BlockPlacement, ClusterStatus, FullPolicy, Health, HomePlacement, NodeInfo,
    NodeKind, Request, Response,
};

pub fn client_pool(cfg: &Config, what: &str) -> Result<Pool> {
    let me = NodeInfo {
        name: format!("{}/{what}-{}", cfg.cluster, std::process::id()),
        cluster: cfg.cluster.clone(),
        addr: String::new(),
        kind: NodeKind::Rank,
        incarnation: new_incarnation(),
    };
    Ok(Pool::new(hello_of(&me, cfg), cfg.net()?)
        .following(cfg.rendezvous.clone(), cfg.timeout() + cfg.failure_timeout))
}

pub fn federation_status(cfg: &Config) -> Result<Vec<ClusterStatus>> {
    let pool = client_pool(cfg, "status")?;
    let managers = contact::managers(cfg)?;
    let first = managers
        .first()
        .ok_or_else(|| Error::NotFound("no manager in the federation".into()))?;
    match pool.call_manager(first, &Request::Status { forwarded: false })? {
        Response::Status(s) => Ok(s),
        other => Err(Error::Protocol(format!(
            "unexpected answer to Status: {other:?}"
        ))),
    }
}

fn human(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "unlimited".into();
    }
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

pub fn print_status(status: &[ClusterStatus]) {
    for c in status {
        println!("cluster {}: manager {}", c.cluster, c.manager);
        if c.replicas.len() > 1 {
            for r in &c.replicas {
                println!(
                    "  replica {} at {}: {}term {}{}",
                    r.id,
                    if r.addr.is_empty() { "?" } else { &r.addr },
                    if r.leader { "leader, " } else { "" },
                    r.term,
                    r.lag
                        .map_or(String::new(), |l| format!(", {l} entries behind"))
                );
            }
        }
        for m in &c.members {
            let kind = match m.node.kind {
                NodeKind::Daemon => "provider daemon",
                NodeKind::Rank => "job process",
                NodeKind::Manager => "manager",
            };
            println!(
                "  member {} ({kind}) at {}: offers {}, placed {}",
                m.node.name,
                m.node.addr,
                human(m.capacity),
                human(m.reserved)
            );
        }
        for d in &c.dead {
            println!(
                "  dead   {} at {}: {} ({:.1} s ago)",
                d.node.name, d.node.addr, d.reason, d.ago_s
            );
        }
        for a in &c.arrays {
            let m = &a.meta;
            println!(
                "  array {} {} {} : version {} (kept from {}), {} reader pin(s){}{}",
                m.spec.name,
                m.spec.elem,
                m.spec.layout,
                m.committed,
                m.floor,
                a.pins.len(),
                a.writer
                    .as_ref()
                    .map_or(String::new(), |w| format!(", write lock held by {w}")),
                if a.dropped_unread > 0 {
                    format!(", {} version(s) dropped unread", a.dropped_unread)
                } else {
                    String::new()
                }
            );
            for (b, p) in m.blocks.iter().enumerate() {
                let health = a.health.get(b).copied().unwrap_or(Health::Healthy);
                let home = p
                    .home
                    .as_ref()
                    .map_or("none".to_string(), |h| h.name.clone());
                let names = |v: &[NodeInfo]| {
                    v.iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let restoring = if p.restoring.is_empty() {
                    String::new()
                } else {
                    format!(", restoring [{}]", names(&p.restoring))
                };
                let cached: Vec<&str> = p.caches.iter().map(|c| c.node.name.as_str()).collect();
                let cached = if cached.is_empty() {
                    String::new()
                } else {
                    format!(", cache copies [{}]", cached.join(", "))
                };
                println!(
                    "    block {b}: {health}, term {}, home {home}, replicas [{}]{restoring}{cached}",
                    p.term,
                    names(&p.replicas)
                );
            }
        }
    }
}

pub fn run_status(cfg: &Config, json: bool) -> Result<()> {
    let status = federation_status(cfg)?;
    if json {
        let doc = JsonStatus::new(&cfg.federation, &status);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::Protocol(format!("status as JSON: {e}")))?;
        println!("{text}");
    } else {
        print_status(&status);
        print_data_path(cfg);
    }
    Ok(())
}

/// The data path this host gives its processes (what `juxmem status` can tell from here).
fn print_data_path(cfg: &Config) {
    use juxmem::transport::{shm, verbs::Transport};
    let local = match (cfg.transport, shm::host_id()) {
        (Transport::Tcp, _) => "TCP (JUXMEM_TRANSPORT=tcp)".to_string(),
        (_, Some(_)) => format!(
            "shared memory ({}) for pieces of 256 KiB or more",
            shm::settings().dir.display()
        ),
        (_, None) => "TCP (shared memory off or unusable here)".to_string(),
    };
    let tls = if cfg.insecure {
        "plain TCP"
    } else {
        "TCP with TLS"
    };
    println!(
        "data path from this host: {local} with processes of this host; {tls} with other \
         hosts; {}",
        juxmem::transport::verbs::describe()
    );
}

// `juxmem status --json`: a document of its own rather than the wire types serialized as they
// are, so that the wire protocol can change without breaking scripts, and so that it reads
// well: names in lower case, unlimited capacity as null, each block's health next to its
// placement, 64-bit identifiers as strings. Bump `schema` on any incompatible change.

/// The whole document.
#[derive(Serialize)]
struct JsonStatus<'a> {
    /// Version of this schema.
    schema: u32,
    federation: &'a str,
    clusters: Vec<JsonCluster<'a>>,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    name: &'a str,
    cluster: &'a str,
    addr: &'a str,
    /// "manager", "daemon" (a provider daemon) or "rank" (a job process).
    kind: &'static str,
    /// A 64-bit number, as a string (many JSON readers lose precision past 2^53).
    incarnation: String,
}

#[derive(Serialize)]
struct JsonCluster<'a> {
    name: &'a str,
    manager: JsonNode<'a>,
    members: Vec<JsonMember<'a>>,
    dead: Vec<JsonDead<'a>>,
    arrays: Vec<JsonArray<'a>>,
    /// The manager replicas: id, address, whether it leads, term, lag (entries; null where
    /// the replica answering is not the leader).
    replicas: &'a [juxmem::service::protocol::ReplicaStatus],
}

#[derive(Serialize)]
struct JsonMember<'a> {
    #[serde(flatten)]
    node: JsonNode<'a>,
    /// Bytes offered; null: unlimited.
    capacity: Option<u64>,
    /// Bytes placed on it.
    reserved: u64,
}

#[derive(Serialize)]
struct JsonDead<'a> {
    #[serde(flatten)]
    node: JsonNode<'a>,
    reason: &'a str,
    /// Seconds since it was declared dead.
    ago_s: f64,
}

#[derive(Serialize)]
struct JsonArray<'a> {
    name: &'a str,
    /// A 64-bit number, as a string.
    id: String,
    /// Element type: i8, u8, ..., f32, f64.
    elem: &'static str,
    shape: Vec<u64>,
    /// Storage layout: distribution of each dimension ("block", "cyclic", "block-cyclic(N)")
    /// over a process grid; block `i` is grid rank `i`'s part.
    dists: Vec<String>,
    grid: Vec<u64>,
    /// Latest committed version (0: never released).
    version: u64,
    /// Oldest version still retained.
    oldest_kept: u64,
    /// Versions pinned by readers.
    pinned: &'a [u64],
    /// The process holding the write lock.
    writer: Option<&'a str>,
    dropped_unread: u64,
    redundancy: JsonRedundancy,
    retention: JsonRetention,
    /// "creator" (ranks of the creating job) or "daemons".
    homes: &'static str,
    replicate_to: &'a [String],
    /// The manager holding the array's entry.
    manager: &'a str,
    blocks: Vec<JsonBlock<'a>>,
}

#[derive(Serialize)]
struct JsonRedundancy {
    clusters: u32,
    providers_per_cluster: u32,
}

#[derive(Serialize)]
struct JsonRetention {
    max_versions: u32,
    /// "block" or "drop_oldest".
    on_full: &'static str,
    expected_readers: u32,
}

#[derive(Serialize)]
struct JsonBlock<'a> {
    block: usize,
    /// "healthy", "restoring", "degraded" or "lost".
    health: &'static str,
    /// Placement term.
    term: u64,
    bytes: u64,
    home: Option<JsonNode<'a>>,
    replicas: Vec<JsonNode<'a>>,
    restoring: Vec<JsonNode<'a>>,
    /// Committed states retained: (version from which it holds, write epoch).
    stamps: Vec<JsonStamp>,
    /// Read-cache copies of the newest state, outside the data group.
    cache_copies: Vec<JsonNode<'a>>,
}

#[derive(Serialize)]
struct JsonStamp {
    version: u64,
    epoch: u64,
}

impl<'a> JsonNode<'a> {
    fn of(n: &'a NodeInfo) -> JsonNode<'a> {
        JsonNode {
            name: &n.name,
            cluster: &n.cluster,
            addr: &n.addr,
            kind: match n.kind {
                NodeKind::Manager => "manager",
                NodeKind::Daemon => "daemon",
                NodeKind::Rank => "rank",
            },
            incarnation: n.incarnation.to_string(),
        }
    }
}

impl<'a> JsonStatus<'a> {
    fn new(federation: &'a str, status: &'a [ClusterStatus]) -> JsonStatus<'a> {
        JsonStatus {
            schema: 1,
            federation,
            clusters: status
                .iter()
                .map(|c| JsonCluster {
                    name: &c.cluster,
                    manager: JsonNode::of(&c.manager),
                    members: c
                        .members
                        .iter()
                        .map(|m| JsonMember {
                            node: JsonNode::of(&m.node),
                            capacity: (m.capacity != u64::MAX).then_some(m.capacity),
                            reserved: m.reserved,
                        })
                        .collect(),
                    replicas: &c.replicas,
                    dead: c
                        .dead
                        .iter()
                        .map(|d| JsonDead {
                            node: JsonNode::of(&d.node),
                            reason: &d.reason,
                            ago_s: d.ago_s,
                        })
                        .collect(),
                    arrays: c.arrays.iter().map(JsonArray::of).collect(),
                })
                .collect(),
        }
    }
}

impl<'a> JsonArray<'a> {
    fn of(a: &'a ArrayStatus) -> JsonArray<'a> {
        let m = &a.meta;
        let s = &m.spec;
        let block = |(b, p): (usize, &'a BlockPlacement)| JsonBlock {
            block: b,
            health: match a.health.get(b).copied().unwrap_or(Health::Healthy) {
                Health::Healthy => "healthy",
                Health::Restoring => "restoring",
                Health::Degraded => "degraded",
                Health::Lost => "lost",
            },
            term: p.term,
            bytes: m.block_bytes(b as u64).unwrap_or(0),
            home: p.home.as_ref().map(JsonNode::of),
            replicas: p.replicas.iter().map(JsonNode::of).collect(),
            restoring: p.restoring.iter().map(JsonNode::of).collect(),
            stamps: p
                .stamps
                .iter()
                .map(|s| JsonStamp {
                    version: s.version,
                    epoch: s.epoch,
                })
                .collect(),
            cache_copies: p.caches.iter().map(|c| JsonNode::of(&c.node)).collect(),
        };
        JsonArray {
            name: &s.name,
            id: m.id.to_string(),
            elem: s.elem.name(),
            shape: s.layout.shape(),
            dists: s.layout.dists().iter().map(|d| d.to_string()).collect(),
            grid: s.layout.grid(),
            version: m.committed,
            oldest_kept: m.floor,
            pinned: &a.pins,
            writer: a.writer.as_deref(),
            dropped_unread: a.dropped_unread,
            redundancy: JsonRedundancy {
                clusters: s.redundancy.clusters,
                providers_per_cluster: s.redundancy.providers_per_cluster,
            },
            retention: JsonRetention {
                max_versions: s.retention.max_versions,
                on_full: match s.retention.on_full {
                    FullPolicy::Block => "block",
                    FullPolicy::DropOldest => "drop_oldest",
                },
                expected_readers: s.retention.readers,
            },
            homes: match s.homes {
                HomePlacement::Creator => "creator",
                HomePlacement::Daemons => "daemons",
            },
            replicate_to: &s.replicate_to,
            manager: &m.manager.name,
            blocks: m.blocks.iter().enumerate().map(block).collect(),
        }
    }
}
