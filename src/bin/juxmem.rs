//! The `juxmem` command.
//!
//! ```text
//! juxmem manager  --cluster NAME [--listen ADDR]           run a cluster manager
//! juxmem provider --cluster NAME [--name LABEL] [--capacity BYTES] [--listen ADDR]
//!                                                          run a provider daemon
//! juxmem status                                            clusters, members, arrays, copies
//! juxmem launch PIPELINE [--dir DIR] [--keep] [--timeout SECONDS]
//!                                                          start a local federation and run a pipeline
//! ```
//!
//! The federation is found through `JUXMEM_FEDERATION_DIR` or `JUXMEM_FEDERATION` (see the
//! README's environment table); `--dir` sets the directory for all commands.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use juxmem::config::{parse_bytes, Config, Rendezvous};
use juxmem::error::{Error, Result};
use juxmem::service::contact;
use juxmem::service::manager::{hello_of, new_epoch, Manager};
use juxmem::service::node::RunningProvider;
use juxmem::service::pool::Pool;
use juxmem::service::protocol::{ClusterStatus, NodeInfo, NodeKind, Request, Response};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

fn wait_for_stop() {
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, String>,
    flags: Vec<String>,
}

fn parse_args(raw: &[String], with_value: &[&str]) -> Result<Args> {
    let mut a = Args {
        positional: vec![],
        options: BTreeMap::new(),
        flags: vec![],
    };
    let mut i = 0;
    while i < raw.len() {
        let s = &raw[i];
        if let Some(name) = s.strip_prefix("--") {
            if with_value.contains(&name) {
                let v = raw
                    .get(i + 1)
                    .ok_or_else(|| Error::InvalidArgument(format!("--{name} needs a value")))?;
                a.options.insert(name.to_string(), v.clone());
                i += 2;
                continue;
            }
            a.flags.push(name.to_string());
        } else {
            a.positional.push(s.clone());
        }
        i += 1;
    }
    Ok(a)
}

fn config(args: &Args) -> Result<Config> {
    let mut cfg = Config::from_env()?;
    if let Some(c) = args.options.get("cluster") {
        cfg.cluster = c.clone();
    }
    if let Some(d) = args.options.get("dir") {
        let dir = PathBuf::from(d);
        if let Ok(id) = std::fs::read_to_string(dir.join("federation")) {
            cfg.federation = id.trim().to_string();
        }
        cfg.rendezvous = Some(Rendezvous::Dir(dir));
    }
    if let Some(l) = args.options.get("listen") {
        cfg.listen = l.clone();
    }
    Ok(cfg)
}

const USAGE: &str = "usage:
  juxmem manager  --cluster NAME [--listen ADDR] [--dir DIR]
  juxmem provider --cluster NAME [--name LABEL] [--capacity BYTES] [--listen ADDR] [--dir DIR]
  juxmem status   [--dir DIR]
  juxmem launch   PIPELINE [--dir DIR] [--keep] [--timeout SECONDS]
The federation is found through JUXMEM_FEDERATION_DIR (or --dir) or JUXMEM_FEDERATION.";

fn main() -> ExitCode {
    let filter = std::env::var("JUXMEM_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = raw.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &raw[1..];
    let r = match cmd.as_str() {
        "manager" => parse_args(rest, &["cluster", "listen", "dir"]).and_then(|a| run_manager(&a)),
        "provider" => parse_args(rest, &["cluster", "listen", "dir", "name", "capacity"])
            .and_then(|a| run_provider(&a)),
        "status" => parse_args(rest, &["dir", "cluster"]).and_then(|a| run_status(&a)),
        "launch" => parse_args(rest, &["dir", "timeout"]).and_then(|a| run_launch(&a)),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Error::InvalidArgument(format!(
            "unknown command {other:?}\n{USAGE}"
        ))),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juxmem {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_manager(args: &Args) -> Result<()> {
    let cfg = config(args)?;
    install_signal_handlers();
    let listen = cfg.listen.clone();
    let m = Manager::start(cfg.clone(), &listen)?;
    println!(
        "manager of cluster {} listening on {}",
        cfg.cluster,
        m.addr()
    );
    wait_for_stop();
    Ok(())
}

fn run_provider(args: &Args) -> Result<()> {
    let cfg = config(args)?;
    install_signal_handlers();
    let capacity = args
        .options
        .get("capacity")
        .map_or(Ok(1 << 30), |c| parse_bytes(c))?;
    let label = args
        .options
        .get("name")
        .cloned()
        .unwrap_or_else(|| format!("provider-{}", std::process::id()));
    let mut p = RunningProvider::start(&cfg, NodeKind::Daemon, &label, capacity)?;
    println!(
        "provider {} on {} offering {} bytes",
        p.node.name, p.node.addr, capacity
    );
    wait_for_stop();
    p.leave()
}

fn client_pool(cfg: &Config, what: &str) -> Pool {
    let me = NodeInfo {
        name: format!("{}/{what}-{}", cfg.cluster, std::process::id()),
        cluster: cfg.cluster.clone(),
        addr: String::new(),
        kind: NodeKind::Rank,
        epoch: new_epoch(),
    };
    Pool::new(hello_of(&me, cfg), cfg.net.clone())
}

fn federation_status(cfg: &Config) -> Result<Vec<ClusterStatus>> {
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

fn print_status(status: &[ClusterStatus]) {
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
                if a.writer { ", writer active" } else { "" },
                if a.dropped_unread > 0 {
                    format!(", {} version(s) dropped unread", a.dropped_unread)
                } else {
                    String::new()
                }
            );
            for (b, p) in m.blocks.iter().enumerate() {
                let home = p
                    .home
                    .as_ref()
                    .map_or("LOST".to_string(), |h| h.name.clone());
                let reps: Vec<&str> = p.replicas.iter().map(|r| r.name.as_str()).collect();
                println!("    block {b}: home {home}, replicas [{}]", reps.join(", "));
            }
        }
    }
}

fn run_status(args: &Args) -> Result<()> {
    let cfg = config(args)?;
    print_status(&federation_status(&cfg)?);
    Ok(())
}

// ---------------------------------------------------------------- launch

struct ClusterSpec {
    name: String,
    providers: u32,
    capacity: u64,
}

struct StageSpec {
    cluster: String,
    np: u32,
    argv: Vec<String>,
}

struct PipelineSpec {
    federation: String,
    clusters: Vec<ClusterSpec>,
    stages: Vec<StageSpec>,
}

/// Parses a pipeline file:
///
/// ```text
/// federation weather
/// cluster A1 providers=1 capacity=1GiB
/// stage A1 np=2 target/release/examples/weather --stage 1
/// ```
fn parse_pipeline(path: &Path) -> Result<PipelineSpec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::NotFound(format!("pipeline file {}: {e}", path.display())))?;
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
        let bad = |why: &str| {
            Error::InvalidArgument(format!("{}:{}: {why}: {line}", path.display(), n + 1))
        };
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
        return Err(Error::InvalidArgument(format!(
            "{}: no stage",
            path.display()
        )));
    }
    Ok(spec)
}

/// A child process whose output lines are echoed with a prefix.
struct Supervised {
    name: String,
    child: Child,
    echo: Vec<std::thread::JoinHandle<()>>,
}

fn spawn_prefixed(name: &str, mut cmd: Command) -> Result<Supervised> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {name} ({cmd:?}): {e}")))?;
    let mut echo = vec![];
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("piped"));
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("piped"));
    for (stream, is_err) in [(out, false), (err, true)] {
        let prefix = format!("[{name}] ");
        echo.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                if is_err {
                    eprintln!("{prefix}{line}");
                } else {
                    println!("{prefix}{line}");
                }
            }
        }));
    }
    Ok(Supervised {
        name: name.to_string(),
        child,
        echo,
    })
}

fn terminate(p: &mut Supervised, grace: Duration) {
    if let Ok(Some(_)) = p.child.try_wait() {
        return;
    }
    // SAFETY: signalling a child we started, by its pid.
    unsafe {
        libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = p.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn run_launch(args: &Args) -> Result<()> {
    let file = args
        .positional
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("launch needs a pipeline file\n{USAGE}")))?;
    let spec = parse_pipeline(Path::new(file))?;
    let timeout = Duration::from_secs_f64(args.options.get("timeout").map_or(Ok(600.0), |t| {
        t.parse::<f64>()
            .map_err(|_| Error::InvalidArgument(format!("bad --timeout {t}")))
    })?);
    let dir = args
        .options
        .get("dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("juxmem-{}-{}", spec.federation, std::process::id()))
        });
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::InvalidArgument(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::write(dir.join("federation"), &spec.federation)
        .map_err(|e| Error::InvalidArgument(format!("cannot write in {}: {e}", dir.display())))?;
    install_signal_handlers();
    let exe =
        std::env::current_exe().map_err(|e| Error::InvalidArgument(format!("own path: {e}")))?;
    let base_env = |cmd: &mut Command, cluster: &str| {
        cmd.env("JUXMEM_FEDERATION_DIR", &dir)
            .env("JUXMEM_FEDERATION_ID", &spec.federation)
            .env("JUXMEM_CLUSTER", cluster)
            .env_remove("JUXMEM_FEDERATION");
    };
    let mut daemons: Vec<Supervised> = Vec::new();
    let result = (|| -> Result<bool> {
        let t0 = Instant::now();
        println!(
            "launch: federation {:?} in {}",
            spec.federation,
            dir.display()
        );
        for c in &spec.clusters {
            let mut cmd = Command::new(&exe);
            cmd.args(["manager", "--cluster", &c.name]);
            base_env(&mut cmd, &c.name);
            daemons.push(spawn_prefixed(&format!("{} manager", c.name), cmd)?);
            let contact_file = dir.join(format!("{}.manager", c.name));
            wait_until(
                &format!("manager of {} to start", c.name),
                Duration::from_secs(20),
                || contact_file.exists(),
            )?;
        }
        let mut cfg = Config::from_env()?;
        cfg.rendezvous = Some(Rendezvous::Dir(dir.clone()));
        cfg.federation = spec.federation.clone();
        for c in &spec.clusters {
            for k in 0..c.providers {
                let mut cmd = Command::new(&exe);
                let label = format!("provider-{k}");
                let cap = c.capacity.to_string();
                cmd.args([
                    "provider",
                    "--cluster",
                    &c.name,
                    "--name",
                    &label,
                    "--capacity",
                    &cap,
                ]);
                base_env(&mut cmd, &c.name);
                daemons.push(spawn_prefixed(&format!("{} {label}", c.name), cmd)?);
            }
        }
        let want: u32 = spec.clusters.iter().map(|c| c.providers).sum();
        wait_until(
            "provider daemons to register",
            Duration::from_secs(20),
            || {
                federation_status(&cfg)
                    .map(|s| s.iter().map(|c| c.members.len() as u32).sum::<u32>() >= want)
                    .unwrap_or(false)
            },
        )?;
        println!(
            "launch: {} clusters ({}) with {want} provider daemon(s) up in {:.1} s",
            spec.clusters.len(),
            spec.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            t0.elapsed().as_secs_f64()
        );
        let mut stages = Vec::new();
        for (i, s) in spec.stages.iter().enumerate() {
            let mut cmd = Command::new("mpirun");
            cmd.arg("-np").arg(s.np.to_string()).args(&s.argv);
            base_env(&mut cmd, &s.cluster);
            println!(
                "launch: stage {} on cluster {} ({} ranks): {}",
                i + 1,
                s.cluster,
                s.np,
                s.argv.join(" ")
            );
            stages.push(spawn_prefixed(&s.cluster, cmd)?);
        }
        let start = Instant::now();
        let mut ok = true;
        let mut pending: Vec<usize> = (0..stages.len()).collect();
        while !pending.is_empty() {
            if STOP.load(Ordering::SeqCst) || start.elapsed() > timeout {
                eprintln!(
                    "launch: stopping the stages ({})",
                    if STOP.load(Ordering::SeqCst) {
                        "interrupted"
                    } else {
                        "timed out"
                    }
                );
                for &i in &pending {
                    terminate(&mut stages[i], Duration::from_secs(5));
                }
                return Ok(false);
            }
            pending.retain(|&i| match stages[i].child.try_wait() {
                Ok(Some(status)) => {
                    let name = stages[i].name.clone();
                    println!(
                        "launch: stage on {name} finished ({status}) after {:.1} s",
                        start.elapsed().as_secs_f64()
                    );
                    ok &= status.success();
                    false
                }
                _ => true,
            });
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in &mut stages {
            for h in s.echo.drain(..) {
                let _ = h.join();
            }
        }
        println!("launch: federation state at the end:");
        match federation_status(&cfg) {
            Ok(s) => print_status(&s),
            Err(e) => eprintln!("launch: status: {e}"),
        }
        Ok(ok)
    })();
    // Providers first (their homes move to replicas), then managers.
    if !daemons.is_empty() {
        println!("launch: stopping the federation (its data lives in memory and ends with it)");
    }
    for d in daemons.iter_mut().rev() {
        terminate(d, Duration::from_secs(10));
    }
    if !args.flags.iter().any(|f| f == "keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(true) => {
            println!("launch: all stages succeeded");
            Ok(())
        }
        Ok(false) => Err(Error::InvalidArgument("a stage failed".into())),
        Err(e) => Err(e),
    }
}
