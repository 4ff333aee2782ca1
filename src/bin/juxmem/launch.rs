//! `juxmem launch`: a local federation (managers and provider daemons) started from a
//! pipeline file, the pipeline's stages run with `mpirun`, everything stopped by PID at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use juxmem::config::{parse_bytes, Config, Rendezvous};
use juxmem::error::{Error, Result};

use crate::status::{federation_status, print_status};
use crate::{install_signal_handlers, Args, STOP, USAGE};

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

pub fn run_launch(args: &Args) -> Result<()> {
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
            // Stages start together: each mpirun gets its own session directory (Open MPI's
            // shared one races: "File exists" in session_dir.c).
            let session = dir.join(format!("mpi-session-{i}"));
            std::fs::create_dir_all(&session).map_err(|e| {
                Error::InvalidArgument(format!("cannot create {}: {e}", session.display()))
            })?;
            cmd.env("OMPI_MCA_orte_tmpdir_base", &session);
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
    if !daemons.is_empty() {
        println!("launch: stopping the federation (its data lives in memory and ends with it)");
    }
    // Managers first: with the whole federation going, nothing is to be handed over (the
    // providers' goodbyes then find no manager, which they take quietly).
    for d in daemons.iter_mut() {
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
