//! `juxmem status`: the federation as its managers see it, printed for operators.

use juxmem::config::Config;
use juxmem::error::{Error, Result};
use juxmem::service::contact;
use juxmem::service::node::{hello_of, new_incarnation};
use juxmem::service::pool::Pool;
use juxmem::service::protocol::{ClusterStatus, Health, NodeInfo, NodeKind, Request, Response};

pub fn client_pool(cfg: &Config, what: &str) -> Pool {
    let me = NodeInfo {
        name: format!("{}/{what}-{}", cfg.cluster, std::process::id()),
        cluster: cfg.cluster.clone(),
        addr: String::new(),
        kind: NodeKind::Rank,
        incarnation: new_incarnation(),
    };
    Pool::new(hello_of(&me, cfg), cfg.net.clone())
}

pub fn federation_status(cfg: &Config) -> Result<Vec<ClusterStatus>> {
    let pool = client_pool(cfg, "status");
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
                println!(
                    "    block {b}: {health}, term {}, home {home}, replicas [{}]{restoring}",
                    p.term,
                    names(&p.replicas)
                );
            }
        }
    }
}

pub fn run_status(cfg: &Config) -> Result<()> {
    print_status(&federation_status(cfg)?);
    Ok(())
}
