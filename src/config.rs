//! Configuration: one place for every `JUXMEM_*` environment variable.
//!
//! | Variable | Default | Meaning |
//! | --- | --- | --- |
//! | `JUXMEM_CLUSTER` | `local` | Cluster this process belongs to. |
//! | `JUXMEM_FEDERATION_DIR` | unset | Directory of contact files (`<cluster>.manager`, `federation`). |
//! | `JUXMEM_FEDERATION` | unset | Manager address list instead of a directory: `A1=host:port,A2=host:port`. |
//! | `JUXMEM_FEDERATION_ID` | the directory's `federation` file, else `juxmem` | Federation name; peers of another federation are refused. |
//! | `JUXMEM_LISTEN` | the chosen address, any port | Address a process listens on; a specific address is also the one advertised; `0.0.0.0:PORT` listens on every interface and advertises the chosen one. |
//! | `JUXMEM_INTERFACE` | unset | Interfaces or IPv4 networks (comma-separated, e.g. `ib0` or `198.18.0.0/15`) whose address is advertised; unset: the address that routes toward the cluster's manager (see [`crate::transport::address`]). |
//! | `JUXMEM_CAPACITY` | half the node's available memory, shared by the job's ranks on the node | Bytes a rank's embedded provider offers (daemons: `--capacity`). `unlimited` lifts the bound. |
//! | `JUXMEM_TIMEOUT` | `60` | Seconds: the default timeout of every network wait. |
//! | `JUXMEM_FAILURE_TIMEOUT` | `3` | Seconds without a heartbeat after which a process is declared dead (its copies fail over, its locks and pins are released). Heartbeats go every quarter of it. |
//! | `JUXMEM_RESUME_GRACE` | `30` | Seconds a manager that just took office (a failover, or a cluster starting again) gives each provider daemon it has as a member to reconnect or resume before declaring it dead (at least `JUXMEM_FAILURE_TIMEOUT`). |
//! | `JUXMEM_MAX_FRAME` | `16777216` | Largest control frame accepted, in bytes (before the handshake: 64 KiB). |
//! | `JUXMEM_HANDSHAKE_TIMEOUT` | `10` | Seconds a service gives a new connection to complete its handshake (at most `JUXMEM_TIMEOUT`). |
//! | `JUXMEM_MAX_CONNECTIONS` | `4096` | Open connections a manager or provider accepts in all; extra ones are refused. |
//! | `JUXMEM_MAX_CONNECTIONS_PER_HOST` | `1024` | Open connections a manager or provider accepts from one peer address. |
//! | `JUXMEM_CREDENTIALS` | the federation directory's `credentials/<cluster>`, if there | This cluster's TLS credentials directory (`juxmem credentials issue`): `trust.pem`, `manager.pem`/`.key`, `provider.pem`/`.key`. |
//! | `JUXMEM_INSECURE` | unset | `1`: plain TCP, unauthenticated and unencrypted (a warning is printed). Without it, a process without credentials refuses to connect. |
//! | `JUXMEM_SHM` | `1` | `0`: array data stays in process memory and processes of one host read each other's copies over the network (see [`crate::transport::shm`]). |
//! | `JUXMEM_SHM_DIR` | `/dev/shm` | The tmpfs where array data is kept in unnamed files that the host's other processes map. |
//! | `JUXMEM_TRANSPORT` | `auto` | The data path: `auto` (shared memory on one host, TCP between hosts), `tcp` (TCP with every peer), `verbs` (RDMA: refused at start, with the reason, where it cannot be had; see [`crate::transport::verbs`]). |
//! | `JUXMEM_READ_CACHE` | `0` | `1`: blocks this process reads from another cluster are read through a provider daemon of its own cluster, which keeps a cache copy for the cluster's later readers (tracked by the array's manager, invalidated by the release that makes it stale; see [`crate::service::cache`]). |
//! | `JUXMEM_LOG` | `warn` | Log filter of the `juxmem` command and the examples (`info`, `debug`, ...). |
//!
//! Nothing else is read from the environment; the builder methods override any of it, except
//! `JUXMEM_SHM` and `JUXMEM_SHM_DIR`, which hold for the whole process (its array memory) and
//! are read once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::transport::tcp::{NetConfig, Security};
use crate::transport::tls::Credentials;

/// Where the managers of the federation are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// A directory of contact files written by the managers.
    Dir(PathBuf),
    /// A fixed list of (cluster, manager address).
    Addresses(Vec<(String, String)>),
}

/// Settings of a process joining the federation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster of this process.
    pub cluster: String,
    /// How to find the managers.
    pub rendezvous: Option<Rendezvous>,
    /// Federation name.
    pub federation: String,
    /// Listen address of this process's service (`None`: the chosen address, any port).
    pub listen: Option<String>,
    /// Interfaces or networks whose address to advertise (`JUXMEM_INTERFACE`).
    pub interface: Option<String>,
    /// Bytes this process's provider offers.
    pub capacity: u64,
    /// Timeouts and frame limit.
    pub net: NetConfig,
    /// Failure detection: a process whose lease is not renewed for this long is declared dead.
    pub failure_timeout: Duration,
    /// How long a manager that just took office waits for its provider daemons to reconnect
    /// or resume (a cluster's daemons start again with their managers, on data directories).
    pub resume_grace: Duration,
    /// This cluster's TLS credentials directory (`None`: the federation directory's
    /// `credentials/<cluster>`, if there).
    pub credentials: Option<PathBuf>,
    /// Plain TCP, asked for explicitly.
    pub insecure: bool,
    /// The data path required (`JUXMEM_TRANSPORT`).
    pub transport: crate::transport::verbs::Transport,
    /// Read blocks of other clusters through a provider of this cluster, which caches them
    /// (`JUXMEM_READ_CACHE`).
    pub read_cache: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses a byte count: `1048576`, `64MiB`, `2GiB`, `512KiB`, `unlimited`.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(u64::MAX);
    }
    let (num, mult) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            Error::InvalidArgument(format!("bad byte count {s:?} (e.g. 1048576, 64MiB, 2GiB)"))
        })
}

fn parse_flag(name: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "{name}={other:?}: expected 1 or 0"
        ))),
    }
}

fn parse_count(name: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("{name}={v:?} is not a positive integer")))
}

fn parse_seconds(name: &str, v: &str) -> Result<Duration> {
    v.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && s.is_finite() && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{name}={v:?} is not a positive number of seconds"))
        })
}

impl Config {
    /// Defaults, then the `JUXMEM_*` variables.
    pub fn from_env() -> Result<Config> {
        let mut c = Config::default();
        if let Some(v) = var("JUXMEM_CLUSTER") {
            c.cluster = v;
        }
        if let Some(v) = var("JUXMEM_FEDERATION_DIR") {
            let dir = PathBuf::from(v);
            if let Ok(id) = std::fs::read_to_string(dir.join("federation")) {
                c.federation = id.trim().to_string();
            }
            c.rendezvous = Some(Rendezvous::Dir(dir));
        }
        if let Some(v) = var("JUXMEM_FEDERATION") {
            let mut list = Vec::new();
            for item in v.split(',') {
                let (cluster, addr) = item.split_once('=').ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "JUXMEM_FEDERATION entry {item:?} is not CLUSTER=HOST:PORT"
                    ))
                })?;
                list.push((cluster.trim().to_string(), addr.trim().to_string()));
            }
            c.rendezvous = Some(Rendezvous::Addresses(list));
        }
        if let Some(v) = var("JUXMEM_FEDERATION_ID") {
            c.federation = v;
        }
        if let Some(v) = var("JUXMEM_LISTEN") {
            c.listen = Some(v);
        }
        if let Some(v) = var("JUXMEM_INTERFACE") {
            c.interface = Some(v);
        }
        if let Some(v) = var("JUXMEM_CAPACITY") {
            c.capacity = parse_bytes(&v)?;
        }
        if let Some(v) = var("JUXMEM_TIMEOUT") {
            c.net.io_timeout = parse_seconds("JUXMEM_TIMEOUT", &v)?;
        }
        if let Some(v) = var("JUXMEM_FAILURE_TIMEOUT") {
            c.failure_timeout = parse_seconds("JUXMEM_FAILURE_TIMEOUT", &v)?;
        }
        if let Some(v) = var("JUXMEM_RESUME_GRACE") {
            c.resume_grace = parse_seconds("JUXMEM_RESUME_GRACE", &v)?;
        }
        if let Some(v) = var("JUXMEM_MAX_FRAME") {
            c.net.max_frame = parse_bytes(&v)? as usize;
        }
        if let Some(v) = var("JUXMEM_HANDSHAKE_TIMEOUT") {
            c.net.handshake_timeout = parse_seconds("JUXMEM_HANDSHAKE_TIMEOUT", &v)?;
        }
        if let Some(v) = var("JUXMEM_MAX_CONNECTIONS") {
            c.net.max_connections = parse_count("JUXMEM_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = var("JUXMEM_CREDENTIALS") {
            c.credentials = Some(PathBuf::from(v));
        }
        if let Some(v) = var("JUXMEM_INSECURE") {
            c.insecure = parse_flag("JUXMEM_INSECURE", &v)?;
        }
        if let Some(v) = var("JUXMEM_READ_CACHE") {
            c.read_cache = parse_flag("JUXMEM_READ_CACHE", &v)?;
        }
        if let Some(v) = var("JUXMEM_MAX_CONNECTIONS_PER_HOST") {
            c.net.max_connections_per_host = parse_count("JUXMEM_MAX_CONNECTIONS_PER_HOST", &v)?;
        }
        if let Some(v) = var("JUXMEM_TRANSPORT") {
            c.transport = crate::transport::verbs::Transport::parse(&v)?;
        }
        // Read once per process by `transport::shm`; checked here so that a bad value is an
        // error at start-up rather than the default.
        crate::transport::shm::Settings::from_env()?;
        Ok(c)
    }

    /// Sets the cluster.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Config {
        self.cluster = cluster.into();
        self
    }

    /// Sets the rendezvous.
    pub fn rendezvous(mut self, r: Rendezvous) -> Config {
        self.rendezvous = Some(r);
        self
    }

    /// The network settings with their security resolved: this cluster's credentials (loaded
    /// once per directory and process), or plain TCP if asked for (with a warning, once), or
    /// an error saying how to get credentials.
    pub fn net(&self) -> Result<NetConfig> {
        let mut net = self.net.clone();
        net.security = if self.insecure {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| {
                tracing::warn!("JUXMEM_INSECURE=1: plain TCP, unauthenticated and unencrypted");
                eprintln!(
                    "juxmem: warning: JUXMEM_INSECURE=1: connections are plain TCP, \
                     unauthenticated and unencrypted"
                );
            });
            Security::Insecure
        } else {
            match self.credentials_dir() {
                Some(dir) => Security::Tls(load_credentials(&dir)?),
                None => Security::Missing,
            }
        };
        Ok(net)
    }

    /// Where this process's credentials are: `JUXMEM_CREDENTIALS`, else the federation
    /// directory's `credentials/<cluster>` if it exists.
    pub fn credentials_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.credentials {
            return Some(d.clone());
        }
        match &self.rendezvous {
            Some(Rendezvous::Dir(d)) => {
                let dir = local_credentials(d).join(&self.cluster);
                dir.exists().then_some(dir)
            }
            _ => None,
        }
    }

    /// The default timeout of network waits.
    pub fn timeout(&self) -> Duration {
        self.net.io_timeout
    }

    /// How often a process renews its leases (a quarter of the failure timeout).
    pub fn heartbeat(&self) -> Duration {
        self.failure_timeout / 4
    }

    /// How long a home waits on a replica that takes no more of a push (twice the failure
    /// timeout: a paused replica is declared dead by then, and the release goes on without it
    /// rather than keep its writer waiting).
    pub fn push_timeout(&self) -> Duration {
        (self.failure_timeout * 2).min(self.net.io_timeout)
    }
}

/// Where a local federation's credentials live in its directory (one directory per cluster,
/// and `ca` for its authority): what `juxmem launch` and the test harness make.
pub fn local_credentials(federation_dir: &Path) -> PathBuf {
    federation_dir.join("credentials")
}

fn load_credentials(dir: &Path) -> Result<Arc<Credentials>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Credentials>>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = loaded.get(dir) {
        return Ok(c.clone());
    }
    let c = Arc::new(Credentials::load(dir)?);
    loaded.insert(dir.to_path_buf(), c.clone());
    Ok(c)
}

/// The default memory a rank's embedded provider offers: half of the node's available memory
/// (`MemAvailable` in /proc/meminfo), shared by the ranks of the job on this node (as the MPI
/// launcher or Slurm tells: `OMPI_COMM_WORLD_LOCAL_SIZE`, `MPI_LOCALNRANKS`,
/// `SLURM_NTASKS_PER_NODE`); unlimited where the memory cannot be read.
pub fn default_capacity() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    let Some(available) = available else {
        return u64::MAX;
    };
    let local_ranks = [
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS_PER_NODE",
    ]
    .iter()
    .find_map(|v| {
        // Slurm may say "2(x3)": 2 tasks on each of 3 nodes.
        let text = std::env::var(v).ok()?;
        let first: String = text.chars().take_while(char::is_ascii_digit).collect();
        first.parse::<u64>().ok().filter(|&n| n > 0)
    })
    .unwrap_or(1);
    available / 2 / local_ranks
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "local".into(),
            rendezvous: None,
            federation: "juxmem".into(),
            listen: None,
            interface: None,
            capacity: default_capacity(),
            net: NetConfig::default(),
            failure_timeout: Duration::from_secs(3),
            resume_grace: Duration::from_secs(30),
            credentials: None,
            insecure: false,
            transport: Default::default(),
            read_cache: false,
        }
    }
}
