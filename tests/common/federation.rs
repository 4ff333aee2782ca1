//! A local federation for tests and benchmarks: managers and provider daemons as child
//! processes of the `juxmem` command, on loopback, in a temporary directory; each daemon can be
//! killed, paused and resumed by PID, fresh ones started; everything is stopped by PID when
//! the federation is dropped.

#![allow(dead_code)] // each test binary uses a part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use juxmem::config::{Config, Rendezvous};

/// How to start a federation.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `JUXMEM_FAILURE_TIMEOUT` of every process (seconds).
    pub failure_timeout: f64,
    /// `JUXMEM_TIMEOUT` of every process (seconds).
    pub timeout: f64,
    /// `JUXMEM_FAILPOINTS` of the provider daemons.
    pub failpoints: Option<String>,
    /// Capacity of each provider daemon.
    pub capacity: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            failure_timeout: 3.0,
            timeout: 30.0,
            failpoints: None,
            capacity: "512MiB".into(),
        }
    }
}

/// One daemon.
pub struct Daemon {
    /// `<cluster>/<label>`, as the federation names it.
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    child: Child,
    log: String,
}

impl Daemon {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A running local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub name: String,
    pub settings: Settings,
    managers: Vec<Daemon>,
    providers: Vec<Daemon>,
    /// Variables set for every daemon (after the others, so they win).
    daemon_env: Vec<(String, String)>,
}

/// The `juxmem` command: Cargo's path in tests, else next to the running example.
pub fn juxmem_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_juxmem") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/examples/<example>")
        .join("juxmem")
}

/// Whether process `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The state follows the command name, which is in parentheses.
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st == "T")
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a child process we started, by its pid.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

impl LocalFederation {
    /// Starts one manager and `providers` provider daemons per cluster.
    pub fn start(name: &str, clusters: &[(&str, u32)]) -> LocalFederation {
        Self::start_with(name, clusters, Settings::default())
    }

    /// [`LocalFederation::start`] with settings.
    pub fn start_with(name: &str, clusters: &[(&str, u32)], settings: Settings) -> LocalFederation {
        Self::start_with_env(name, clusters, settings, &[])
    }

    /// [`LocalFederation::start_with`], with variables set for every daemon.
    pub fn start_with_env(
        name: &str,
        clusters: &[(&str, u32)],
        settings: Settings,
        daemon_env: &[(&str, &str)],
    ) -> LocalFederation {
        let dir = std::env::temp_dir().join(format!("juxmem-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("federation"), name).unwrap();
        // Every connection is mutual TLS, with the federation's own CA (as `juxmem launch`).
        let names: Vec<&str> = clusters.iter().map(|c| c.0).collect();
        juxmem::credentials::local_federation(
            &juxmem::config::local_credentials(&dir),
            name,
            &names,
        )
        .expect("credentials");
        let mut fed = LocalFederation {
            dir,
            name: name.to_string(),
            settings,
            managers: vec![],
            providers: vec![],
            daemon_env: daemon_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for (cluster, _) in clusters {
            let d = fed.spawn(
                &format!("{cluster}/manager"),
                &["manager", "--cluster", cluster],
                cluster,
                false,
            );
            fed.managers.push(d);
            let contact = fed.dir.join(format!("{cluster}.manager"));
            wait_for(&format!("manager of {cluster}"), || contact.exists());
        }
        for (cluster, n) in clusters {
            for k in 0..*n {
                fed.spawn_provider(cluster, &format!("provider-{k}"));
            }
        }
        let want: usize = clusters.iter().map(|c| c.1 as usize).sum();
        fed.wait_for_providers(want);
        fed
    }

    fn spawn(&self, name: &str, args: &[&str], cluster: &str, failpoints: bool) -> Daemon {
        let log = name.replace('/', "-");
        let out = std::fs::File::create(self.log_path(&log)).unwrap();
        let mut cmd = Command::new(juxmem_bin());
        cmd.args(args).stdout(Stdio::null()).stderr(out);
        self.env(&mut cmd, cluster);
        cmd.env("JUXMEM_LOG", "info");
        match (&self.settings.failpoints, failpoints) {
            (Some(f), true) => cmd.env("JUXMEM_FAILPOINTS", f),
            _ => cmd.env_remove("JUXMEM_FAILPOINTS"),
        };
        for (k, v) in &self.daemon_env {
            cmd.env(k, v);
        }
        Daemon {
            name: name.to_string(),
            cluster: cluster.to_string(),
            child: cmd.spawn().expect("start juxmem"),
            log,
        }
    }

    /// Starts a provider daemon `<cluster>/<label>` (registration happens asynchronously).
    pub fn spawn_provider(&mut self, cluster: &str, label: &str) {
        let capacity = self.settings.capacity.clone();
        let d = self.spawn(
            &format!("{cluster}/{label}"),
            &[
                "provider",
                "--cluster",
                cluster,
                "--name",
                label,
                "--capacity",
                &capacity,
            ],
            cluster,
            true,
        );
        self.providers.push(d);
    }

    /// Waits until `n` provider daemons are registered.
    pub fn wait_for_providers(&self, n: usize) {
        wait_for("provider registration", || {
            self.status_text().matches("(provider daemon)").count() >= n
        });
    }

    /// `juxmem status`'s output.
    pub fn status_text(&self) -> String {
        let cluster = self
            .managers
            .first()
            .map(|m| m.cluster.clone())
            .unwrap_or_default();
        let mut cmd = Command::new(juxmem_bin());
        cmd.arg("status");
        self.env(&mut cmd, &cluster);
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn daemon(&self, name: &str) -> &Daemon {
        self.managers
            .iter()
            .chain(&self.providers)
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no daemon {name}"))
    }

    /// SIGKILLs daemon `name` (`A/provider-0`, `A/manager`) and reaps it.
    pub fn kill(&mut self, name: &str) {
        let i = self
            .providers
            .iter()
            .position(|d| d.name == name)
            .unwrap_or_else(|| panic!("no provider {name}"));
        let mut d = self.providers.remove(i);
        signal(d.pid(), libc::SIGKILL);
        let _ = d.child.wait();
    }

    /// SIGSTOPs daemon `name`, and returns once it is stopped (a signal is delivered
    /// asynchronously: on a loaded machine the daemon could otherwise still answer a request
    /// sent right after this returns).
    pub fn pause(&self, name: &str) {
        let pid = self.daemon(name).pid();
        signal(pid, libc::SIGSTOP);
        wait_for(&format!("{name} (pid {pid}) to stop"), || stopped(pid));
    }

    /// SIGCONTs daemon `name`.
    pub fn resume(&self, name: &str) {
        signal(self.daemon(name).pid(), libc::SIGCONT);
    }

    /// The provider daemons still running.
    pub fn providers(&self) -> Vec<String> {
        self.providers.iter().map(|d| d.name.clone()).collect()
    }

    /// Path of a daemon's log (`<cluster>-manager`, `<cluster>-provider-<k>`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// A daemon's log so far (by daemon name, `A/provider-0`, or log name).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(&name.replace('/', "-"))).unwrap_or_default()
    }

    /// The running daemons whose log contains `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        self.providers
            .iter()
            .filter(|d| self.log(&d.log).contains(text))
            .map(|d| d.name.clone())
            .collect()
    }

    /// Sets the variables a client of `cluster` needs.
    pub fn env(&self, cmd: &mut Command, cluster: &str) {
        cmd.env("JUXMEM_FEDERATION_DIR", &self.dir)
            .env("JUXMEM_CLUSTER", cluster)
            .env(
                "JUXMEM_FAILURE_TIMEOUT",
                self.settings.failure_timeout.to_string(),
            )
            .env("JUXMEM_TIMEOUT", self.settings.timeout.to_string())
            .env_remove("JUXMEM_FEDERATION")
            .env_remove("JUXMEM_FEDERATION_ID")
            .env_remove("JUXMEM_INTERFACE")
            .env_remove("JUXMEM_CREDENTIALS")
            .env_remove("JUXMEM_INSECURE")
            // Everything on loopback (a manager with nothing set would take the default route).
            .env("JUXMEM_LISTEN", "127.0.0.1:0");
    }

    /// Configuration for an in-process client of `cluster`.
    pub fn config(&self, cluster: &str) -> Config {
        let mut c = Config::default()
            .cluster(cluster)
            .rendezvous(Rendezvous::Dir(self.dir.clone()));
        c.federation = self.name.clone();
        c.net.io_timeout = Duration::from_secs_f64(self.settings.timeout);
        c.failure_timeout = Duration::from_secs_f64(self.settings.failure_timeout);
        c
    }

    /// Issues credentials for a cluster the federation did not start with.
    pub fn add_cluster_credentials(&self, cluster: &str) {
        juxmem::credentials::local_federation(
            &juxmem::config::local_credentials(&self.dir),
            &self.name,
            &[cluster],
        )
        .expect("credentials");
    }

    /// The contact directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn stop(daemons: &mut [Daemon]) {
    for d in daemons.iter() {
        signal(d.pid(), libc::SIGCONT); // a paused daemon must be able to act on SIGTERM
        signal(d.pid(), libc::SIGTERM);
    }
    for d in daemons.iter_mut() {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = d.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
    }
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        // Managers first: the whole federation goes, nothing is to be handed over.
        stop(&mut self.managers);
        stop(&mut self.providers);
        if std::thread::panicking() {
            eprintln!("federation logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits up to 30 s for `ready`.
pub fn wait_for(what: &str, ready: impl FnMut() -> bool) {
    wait_for_within(what, Duration::from_secs(30), ready);
}

/// Waits up to `limit` for `ready`; returns how long it took.
pub fn wait_for_within(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// A hello frame as a raw client sends it (length prefix, magic, protocol `version`, postcard
/// hello), for tests that speak the wire by hand.
pub fn hello_frame(name: &str, version: u32, federation: &str) -> Vec<u8> {
    use juxmem::transport::tcp::{Hello, MAGIC};
    let h = Hello {
        name: name.into(),
        cluster: "A".into(),
        federation: federation.into(),
        incarnation: 1,
        software: "test".into(),
    };
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&version.to_le_bytes());
    body.extend(postcard::to_stdvec(&h).unwrap());
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend(body);
    frame
}

/// The address a contact file in `dir` gives for `cluster`'s manager.
pub fn contact_addr(dir: &Path, cluster: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{cluster}.manager")))
        .unwrap_or_else(|e| panic!("contact file of {cluster}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in the contact file of {cluster}:\n{text}"))
        .to_string()
}

/// The address of `cluster`'s manager in `fed`.
pub fn manager_addr(fed: &LocalFederation, cluster: &str) -> String {
    contact_addr(fed.dir(), cluster)
}

/// Reads from a raw connection until the peer closes it (true) or `limit` passes (false).
pub fn closed_by_peer(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Network settings speaking TLS with the credentials in `dir`, `timeout` for every wait.
/// A handshaken connection to `addr` under a forged hello (name, cluster, incarnation), with
/// the credentials of the cluster it claims (made by the federation's CA if that cluster has
/// none yet): what a holder of a cluster's credentials can forge is the name and incarnation.
#[allow(dead_code)]
pub fn forged(
    addr: &str,
    fed: &LocalFederation,
    name: &str,
    cluster: &str,
    incarnation: u64,
) -> juxmem::transport::tcp::Conn {
    let hello = juxmem::transport::tcp::Hello {
        name: name.into(),
        cluster: cluster.into(),
        federation: fed.name.clone(),
        incarnation,
        software: "forged".into(),
    };
    fed.add_cluster_credentials(cluster);
    let net = tls_net(
        &juxmem::config::local_credentials(fed.dir()).join(cluster),
        Duration::from_secs(20),
    );
    juxmem::transport::tcp::connect(addr, &hello, &net).unwrap()
}

pub fn tls_net(dir: &Path, timeout: Duration) -> juxmem::transport::tcp::NetConfig {
    let creds = juxmem::transport::tls::Credentials::load(dir).expect("credentials");
    juxmem::transport::tcp::NetConfig {
        io_timeout: timeout,
        security: juxmem::transport::tcp::Security::Tls(std::sync::Arc::new(creds)),
        ..Default::default()
    }
}

/// A byte stream inside TLS, for tests that speak the wire by hand once authenticated.
pub type RawTls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Opens a TLS connection to `addr` with `cluster`'s provider credentials in `fed` (the TLS
/// handshake happens at the first write).
pub fn raw_tls(fed: &LocalFederation, addr: &str, cluster: &str) -> RawTls {
    tls_over(fed, std::net::TcpStream::connect(addr).unwrap(), cluster)
}

/// [`raw_tls`] over a connected socket.
pub fn tls_over(fed: &LocalFederation, tcp: std::net::TcpStream, cluster: &str) -> RawTls {
    use juxmem::transport::tcp::Role;
    let creds = juxmem::transport::tls::Credentials::load(
        &juxmem::config::local_credentials(fed.dir()).join(cluster),
    )
    .expect("credentials");
    let config = creds.client(Role::Provider).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn =
        rustls::ClientConnection::new(config, juxmem::transport::tls::server_name()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// [`closed_by_peer`] inside TLS: a close, a reset or a TLS alert.
pub fn tls_closed_by_peer(s: &mut RawTls, limit: Duration) -> bool {
    use std::io::Read;
    s.sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// A process this test started, killed (SIGKILL) and reaped when dropped.
pub struct Spawned(Child);

impl Spawned {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A manager replica process started by [`start_replica`], killed (SIGKILL) when dropped.
pub struct ManagerReplica {
    /// Its replica id.
    pub id: u64,
    process: Spawned,
}

impl ManagerReplica {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Starts replica `id` of `n` of `cluster`'s manager, its data directory
/// `<federation>/data-<cluster>-<id>` (kept across restarts), its log `<cluster>-r<id>.log`
/// (appended to).
pub fn start_replica(fed: &LocalFederation, cluster: &str, id: u64, n: u64) -> ManagerReplica {
    replica_process(fed, cluster, id, &["--replicas", &n.to_string()])
}

/// Starts replica `id` of `cluster`'s manager to join the running ones (`--join`; added with
/// `juxmem manager add`), as [`start_replica`] otherwise.
pub fn start_joining_replica(fed: &LocalFederation, cluster: &str, id: u64) -> ManagerReplica {
    replica_process(fed, cluster, id, &["--join"])
}

fn replica_process(fed: &LocalFederation, cluster: &str, id: u64, how: &[&str]) -> ManagerReplica {
    let data = fed.dir().join(format!("data-{cluster}-{id}"));
    let mut m = Command::new(juxmem_bin());
    m.args(["manager", "--cluster", cluster])
        .args(["--replica", &id.to_string()])
        .args(how)
        .arg("--data-dir")
        .arg(&data);
    fed.env(&mut m, cluster);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(fed.dir().join(format!("{cluster}-r{id}.log")))
        .expect("replica log");
    ManagerReplica {
        id,
        process: Spawned(
            m.stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("juxmem manager"),
        ),
    }
}

/// A provider daemon of a cluster run by replicas, kept in a data directory
/// (`<federation>/data-<cluster>-<label>`, kept across restarts); killed (SIGKILL) when dropped.
/// Its output goes to `<cluster>-<label>.log` (appended to).
pub struct DurableProvider {
    /// Its label.
    pub label: String,
    /// The process.
    pub process: Spawned,
}

/// Starts provider daemon `<cluster>/<label>` on its data directory (see [`DurableProvider`]).
pub fn start_durable_provider(
    fed: &LocalFederation,
    cluster: &str,
    label: &str,
) -> DurableProvider {
    let mut p = Command::new(juxmem_bin());
    p.args(["provider", "--cluster", cluster, "--name", label])
        .args(["--capacity", "64MiB", "--data-dir"])
        .arg(durable_dir(fed, cluster, label));
    fed.env(&mut p, cluster);
    p.env("JUXMEM_LOG", "info");
    let log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(durable_log_path(fed, cluster, label))
            .expect("provider log")
    };
    DurableProvider {
        label: label.to_string(),
        process: Spawned(
            p.stdout(log())
                .stderr(log())
                .spawn()
                .expect("juxmem provider"),
        ),
    }
}

/// The data directory of a [`DurableProvider`].
pub fn durable_dir(fed: &LocalFederation, cluster: &str, label: &str) -> PathBuf {
    fed.dir().join(format!("data-{cluster}-{label}"))
}

/// The log of a [`DurableProvider`].
pub fn durable_log_path(fed: &LocalFederation, cluster: &str, label: &str) -> PathBuf {
    fed.dir().join(format!("{cluster}-{label}.log"))
}

/// The pid the cluster's contact file names: its leader's, once one took office.
pub fn leader_pid(fed: &LocalFederation, cluster: &str) -> Option<u32> {
    let text = std::fs::read_to_string(fed.dir().join(format!("{cluster}.manager"))).ok()?;
    juxmem::service::contact::parse(&text, "contact").ok()?.pid
}

/// The logs of replicas 1..=n of `cluster`, for failure messages.
pub fn replica_logs(fed: &LocalFederation, cluster: &str, n: u64) -> String {
    (1..=n)
        .map(|k| {
            let p = fed.dir().join(format!("{cluster}-r{k}.log"));
            format!(
                "--- replica {k}:\n{}",
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}

/// SIGKILLs the leader of `cluster` (one of `replicas`, removed from it) and returns its id
/// and how long until another replica took office (its contact names another process).
pub fn kill_leader(
    fed: &LocalFederation,
    cluster: &str,
    replicas: &mut Vec<ManagerReplica>,
) -> (u64, Duration) {
    let pid = leader_pid(fed, cluster).expect("a leader");
    let i = replicas
        .iter()
        .position(|r| r.pid() == pid)
        .expect("the leader is one of ours");
    let killed = replicas.remove(i);
    let id = killed.id;
    let t = Instant::now();
    drop(killed); // SIGKILL
    wait_for_within("a new leader", Duration::from_secs(60), || {
        leader_pid(fed, cluster).is_some_and(|p| p != pid)
    });
    (id, t.elapsed())
}
