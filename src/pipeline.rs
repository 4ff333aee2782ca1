//! Pipeline files, as `juxmem launch` reads them: a federation name, its clusters (with their
//! provider daemons and their capacity) and the stages to run with `mpirun`.
//!
//! ```text
//! federation weather
//! cluster A1 providers=1 capacity=1GiB
//! stage A1 np=2 target/release/examples/weather --stage 1
//! ```
//!
//! `#` starts a comment; blank lines are ignored.

use std::path::Path;

use crate::config::parse_bytes;
use crate::error::{Error, Result};

/// A cluster of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Its name.
    pub name: String,
    /// Provider daemons to start (default 1).
    pub providers: u32,
    /// Bytes each daemon offers (default 1 GiB).
    pub capacity: u64,
}

/// A stage of the pipeline: an MPI program run in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSpec {
    /// The cluster it runs in (a declared one).
    pub cluster: String,
    /// Ranks (`mpirun -np`).
    pub np: u32,
    /// Program and arguments (never empty).
    pub argv: Vec<String>,
}

/// A parsed pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineSpec {
    /// Federation name (default `juxmem`).
    pub federation: String,
    /// Clusters, in file order (distinct names; their daemons number at most `u32::MAX`).
    pub clusters: Vec<ClusterSpec>,
    /// Stages, in file order (at least one).
    pub stages: Vec<StageSpec>,
}

/// Reads and parses the pipeline file `path`.
pub fn read(path: &Path) -> Result<PipelineSpec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::NotFound(format!("pipeline file {}: {e}", path.display())))?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a pipeline file; `origin` (its path) names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<PipelineSpec> {
    let mut spec = PipelineSpec {
        federation: "juxmem".into(),
        clusters: vec![],
        stages: vec![],
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::InvalidArgument(format!("{origin}:{}: {why}: {line}", n + 1));
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "federation" => {
                spec.federation = words.get(1).ok_or_else(|| bad("missing name"))?.to_string()
            }
            "cluster" => {
                let name = words
                    .get(1)
                    .ok_or_else(|| bad("missing cluster name"))?
                    .to_string();
                if spec.clusters.iter().any(|c| c.name == name) {
                    return Err(bad("cluster declared twice"));
                }
                let mut c = ClusterSpec {
                    name,
                    providers: 1,
                    capacity: 1 << 30,
                };
                for w in &words[2..] {
                    match w.split_once('=') {
                        Some(("providers", v)) => {
                            c.providers = v.parse().map_err(|_| bad("bad providers="))?
                        }
                        Some(("capacity", v)) => c.capacity = parse_bytes(v)?,
                        _ => return Err(bad("expected providers=N or capacity=BYTES")),
                    }
                }
                spec.clusters.push(c);
            }
            "stage" => {
                let cluster = words
                    .get(1)
                    .ok_or_else(|| bad("missing cluster"))?
                    .to_string();
                let np = words
                    .get(2)
                    .and_then(|w| w.strip_prefix("np="))
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("expected np=N after the cluster"))?;
                let argv: Vec<String> = words[3..].iter().map(|s| s.to_string()).collect();
                if argv.is_empty() {
                    return Err(bad("missing program"));
                }
                if !spec.clusters.iter().any(|c| c.name == cluster) {
                    return Err(bad("stage in an undeclared cluster"));
                }
                spec.stages.push(StageSpec { cluster, np, argv });
            }
            _ => return Err(bad("expected federation, cluster or stage")),
        }
    }
    if spec.stages.is_empty() {
        return Err(Error::InvalidArgument(format!("{origin}: no stage")));
    }
    // The launcher counts the daemons it waits for in a u32.
    let daemons = spec
        .clusters
        .iter()
        .try_fold(0u32, |n, c| n.checked_add(c.providers));
    if daemons.is_none() {
        return Err(Error::InvalidArgument(format!(
            "{origin}: more than {} provider daemons in all",
            u32::MAX
        )));
    }
    Ok(spec)
}
