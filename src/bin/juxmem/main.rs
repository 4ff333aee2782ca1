//! The `juxmem` command.
//!
//! ```text
//! juxmem manager  --cluster NAME [--listen ADDR]           run a cluster manager
//!        [--replica K --replicas N | --replica K --join] [--data-dir DIR]
//!                                                          (replica K of N; log on disk)
//! juxmem manager add|remove K --cluster NAME               add or remove manager replica K
//! juxmem provider --cluster NAME [--name LABEL] [--capacity BYTES] [--listen ADDR]
//!        [--data-dir DIR]                                  run a provider daemon (blocks on disk)
//! juxmem status [--json]                                   clusters, members, arrays, copies
//! juxmem get  NAME[@VERSION] --npy FILE [--wait SECONDS]   read an array into a NumPy file
//! juxmem show NAME[@VERSION] --png FILE [--slice I,..] [--range LO,HI] [--wait SECONDS]
//!                                                          draw a 2-D field as a heat map
//! juxmem launch PIPELINE [--dir DIR] [--keep] [--timeout SECONDS] [--plain]
//!                                                          start a local federation and run a pipeline
//! juxmem destroy NAME [--force]                            free an array's name and copies
//! juxmem namespace create NAME | destroy NAME [--confirm] | list [PATTERN]
//!                                                          namespaces (destroy: all under it)
//! juxmem federation init DIR [--name NAME] [--days N]      create a federation's CA
//! juxmem credentials issue --ca DIR --cluster NAME [--role manager|provider|both] [--out DIR]
//!                                                          a cluster's TLS credentials
//! ```
//!
//! The federation is found through `JUXMEM_FEDERATION_DIR` or `JUXMEM_FEDERATION` (see the
//! README's environment table); `--dir` sets the directory for all commands.

mod credentials;
mod inspect;
mod launch;
mod namespace;
mod picture;
mod search;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use juxmem::config::{parse_bytes, Config, Rendezvous};
use juxmem::error::{Error, Result};
use juxmem::service::manager::consensus::Settings;
use juxmem::service::manager::Manager;
use juxmem::service::node::RunningProvider;
use juxmem::service::protocol::{NodeKind, Request, Response};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn install_signal_handlers() {
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

pub(crate) struct Args {
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

/// The flags given, refusing any not in `known` (a misspelt option is an error, not ignored).
pub(crate) fn only_flags<'a>(args: &Args, known: &[&'a str]) -> Result<Vec<&'a str>> {
    args.flags
        .iter()
        .map(|f| {
            known
                .iter()
                .find(|k| **k == f.as_str())
                .copied()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unknown option --{f} (juxmem help lists the options)"
                    ))
                })
        })
        .collect()
}

pub(crate) fn config(args: &Args) -> Result<Config> {
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
        cfg.listen = Some(l.clone());
    }
    Ok(cfg)
}

pub(crate) const USAGE: &str = "usage:
  juxmem manager  --cluster NAME [--listen ADDR] [--dir DIR] [--replica K --replicas N]
                  [--replica K --join] [--data-dir DIR]
  juxmem manager  add|remove K --cluster NAME [--dir DIR]
  juxmem provider --cluster NAME [--name LABEL] [--capacity BYTES] [--listen ADDR] [--dir DIR]
                  [--data-dir DIR]
  juxmem status   [--json] [--dir DIR]
  juxmem get      NAME[@VERSION] --npy FILE [--wait SECONDS] [--dir DIR]
  juxmem show     NAME[@VERSION] --png FILE [--slice I,J,..] [--range LO,HI] [--wait SECONDS]
                  [--dir DIR]
  juxmem launch   PIPELINE [--dir DIR] [--keep] [--timeout SECONDS] [--plain]
  juxmem search   [PATTERN] [--type T] [--shape A,B,..] [--attr KEY=VALUE].. [--dir DIR]
  juxmem destroy  NAME [--force] [--dir DIR]
  juxmem namespace create NAME | destroy NAME [--confirm] | list [PATTERN]  [--dir DIR]
  juxmem federation init DIR [--name NAME] [--days N]
  juxmem credentials issue --ca DIR --cluster NAME [--role manager|provider|both] [--out DIR]
                  [--days N]
The federation is found through JUXMEM_FEDERATION_DIR (or --dir) or JUXMEM_FEDERATION.
Connections are mutual TLS: each process needs its cluster's credentials (JUXMEM_CREDENTIALS,
or the federation directory's credentials/<cluster>; launch makes them), or JUXMEM_INSECURE=1
for plain TCP.
get writes the array (latest version, or VERSION) as a NumPy .npy file; show draws a 2-D
array, or the slice of an n-D one at the leading indices --slice I,J,.. (default 0,..), as a
PNG heat map with a colour bar (colours over the data's range, or --range LO,HI). A VERSION
not released yet is an error unless --wait SECONDS waits for it. destroy frees an array's
name and copies (--force: even while other processes use it). search lists the arrays of every
cluster whose name matches PATTERN (`*` any run; default all) and that have the type, shape and
every attribute given. namespace create makes a namespace (arrays are then named NAME/...);
namespace destroy destroys it with every array and namespace under it, in every cluster, and
needs --confirm when it holds anything; namespace list shows them. A provider with --data-dir keeps its blocks there and, started again on
it, resumes as the same member with them (after a whole cluster stopped).";

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
        "manager" => parse_args(
            rest,
            &[
                "cluster", "listen", "dir", "replica", "replicas", "data-dir",
            ],
        )
        .and_then(|a| match a.positional.first().map(String::as_str) {
            Some("add") | Some("remove") => {
                only_flags(&a, &[])?;
                run_replica_change(&a)
            }
            Some(other) => Err(Error::InvalidArgument(format!(
                "juxmem manager {other:?}: add, remove, or options only\n{USAGE}"
            ))),
            None => {
                only_flags(&a, &["join"])?;
                run_manager(&a)
            }
        }),
        "provider" => parse_args(
            rest,
            &["cluster", "listen", "dir", "name", "capacity", "data-dir"],
        )
        .and_then(|a| run_provider(&a)),
        "status" => parse_args(rest, &["dir", "cluster"]).and_then(|a| {
            let json = only_flags(&a, &["json"])?.contains(&"json");
            status::run_status(&config(&a)?, json)
        }),
        "get" => parse_args(rest, &["dir", "cluster", "npy", "wait"]).and_then(|a| {
            only_flags(&a, &[])?;
            inspect::run_get(config(&a)?, &a)
        }),
        "show" => {
            parse_args(rest, &["dir", "cluster", "png", "wait", "slice", "range"]).and_then(|a| {
                only_flags(&a, &[])?;
                inspect::run_show(config(&a)?, &a)
            })
        }
        "launch" => parse_args(rest, &["dir", "timeout"]).and_then(|a| launch::run_launch(&a)),
        "search" => parse_args(rest, &["dir", "cluster", "type", "shape", "attr"]).and_then(|a| {
            only_flags(&a, &[])?;
            let o = |k: &str| a.options.get(k).map(String::as_str);
            let q = search::query(
                rest,
                a.positional.first().map(String::as_str),
                o("type"),
                o("shape"),
            )?;
            search::run_search(&config(&a)?, q)
        }),
        "destroy" => parse_args(rest, &["dir", "cluster"]).and_then(|a| {
            only_flags(&a, &["force"])?;
            run_destroy(&a)
        }),
        "namespace" => {
            parse_args(rest, &["dir", "cluster"]).and_then(|a| namespace::run_namespace(&a))
        }
        "federation" => {
            parse_args(rest, &["name", "days"]).and_then(|a| credentials::run_federation(&a))
        }
        "credentials" => parse_args(rest, &["ca", "cluster", "role", "out", "days"])
            .and_then(|a| credentials::run_credentials(&a)),
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
            // The kind of error is in the message ("not found: ...") and its stable code here.
            eprintln!(
                "juxmem {cmd}: {e} (code {}, {:?})",
                e.code().as_u32(),
                e.code()
            );
            ExitCode::from(1)
        }
    }
}

/// The replica settings `--replica K --replicas N --data-dir DIR` ask for.
fn replica_settings(args: &Args) -> Result<Settings> {
    let count = |k: &str, default: u64| -> Result<u64> {
        match args.options.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|&n| (1..=7).contains(&n))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("--{k} {v:?}: a number from 1 to 7"))
                }),
        }
    };
    let id = count("replica", 1)?;
    let join = args.flags.iter().any(|f| f == "join");
    if join {
        if args.options.contains_key("replicas") {
            return Err(Error::InvalidArgument(
                "--join and --replicas: a joining replica learns the others from the leader".into(),
            ));
        }
        return Ok(Settings {
            id,
            voters: vec![],
            data_dir: args.options.get("data-dir").map(PathBuf::from),
        });
    }
    let replicas = count("replicas", 1)?;
    if id > replicas {
        return Err(Error::InvalidArgument(format!(
            "--replica {id} of --replicas {replicas}: replicas are numbered 1 to {replicas}"
        )));
    }
    Ok(Settings {
        id,
        voters: (1..=replicas).collect(),
        data_dir: args.options.get("data-dir").map(PathBuf::from),
    })
}

/// `juxmem manager add|remove K`: asks the cluster's leading manager replica to change the
/// replicas, with the cluster's manager credential.
fn run_replica_change(args: &Args) -> Result<()> {
    let add = args.positional[0] == "add";
    let id: u64 = args
        .positional
        .get(1)
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "juxmem manager add|remove needs a replica id\n{USAGE}"
            ))
        })?;
    let cfg = config(args)?;
    let me = juxmem::service::protocol::NodeInfo {
        name: format!("{}/manager", cfg.cluster),
        cluster: cfg.cluster.clone(),
        addr: String::new(),
        kind: NodeKind::Manager,
        incarnation: juxmem::service::node::new_incarnation(),
    };
    let pool =
        juxmem::service::pool::Pool::new(juxmem::service::node::hello_of(&me, &cfg), cfg.net()?)
            .following(cfg.rendezvous.clone(), cfg.timeout() + cfg.failure_timeout);
    let leader = juxmem::service::contact::manager_of(&cfg, &cfg.cluster)?;
    pool.call_manager(&leader, &Request::ChangeReplicas { add, id })?;
    println!(
        "manager replica {id} of {} {}",
        cfg.cluster,
        if add { "added" } else { "removed" }
    );
    Ok(())
}

fn run_manager(args: &Args) -> Result<()> {
    let cfg = config(args)?;
    let settings = replica_settings(args)?;
    install_signal_handlers();
    let m = Manager::start_replica(cfg.clone(), &settings)?;
    println!(
        "manager of cluster {} (replica {}) listening on {}",
        cfg.cluster,
        settings.id,
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
    let disk = match args.options.get("data-dir") {
        Some(d) => Some(juxmem::service::data_dir::DataDir::open(Path::new(d))?),
        None => None,
    };
    // A provider started again on its data directory keeps its name.
    let saved = match &disk {
        Some(d) => d.identity()?,
        None => None,
    };
    let label = args
        .options
        .get("name")
        .cloned()
        .or_else(|| {
            saved
                .as_ref()
                .map(|s| juxmem::service::node::label_of(&s.node).to_string())
        })
        .unwrap_or_else(|| format!("provider-{}", std::process::id()));
    let mut p = match disk {
        Some(d) => RunningProvider::start_on(&cfg, &label, capacity, d)?,
        None => RunningProvider::start(&cfg, NodeKind::Daemon, &label, capacity)?,
    };
    println!(
        "provider {} on {} offering {} bytes",
        p.node.name, p.node.addr, capacity
    );
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if p.keeper.evicted() {
            tracing::warn!(
                "{}: starting again as a new member, empty (its manager declared it dead)",
                p.node.name
            );
            p = p.restart()?;
        }
    }
    match p.leave() {
        // Its manager is gone too (the whole federation is stopping): nothing to hand over.
        Err(Error::Stale(_) | Error::Network(_)) => Ok(()),
        other => other,
    }
}

/// `juxmem destroy NAME [--force]`: frees the name and every copy of an array.
fn run_destroy(args: &Args) -> Result<()> {
    let name = args
        .positional
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("destroy needs an array name\n{USAGE}")))?;
    juxmem::service::protocol::check_name(name)?;
    let cfg = config(args)?;
    let pool = status::client_pool(&cfg, "destroy")?;
    let home = juxmem::service::contact::manager_of(&cfg, &cfg.cluster)?;
    let meta = match pool.call_manager(
        &home,
        &Request::Lookup {
            name: name.clone(),
            forwarded: false,
        },
    )? {
        Response::Meta(m) => m,
        other => {
            return Err(Error::Protocol(format!(
                "unexpected answer to Lookup: {other:?}"
            )))
        }
    };
    let force = args.flags.iter().any(|f| f == "force");
    let manager = juxmem::service::contact::of_node(&meta.manager);
    pool.call_manager(
        &manager,
        &Request::Destroy {
            array: meta.id,
            force,
        },
    )?;
    println!("destroyed {name}");
    Ok(())
}
