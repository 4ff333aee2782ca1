//! juxmem across hosts: each cluster on its own network-namespace host (`ci/netlab`), links
//! limited to 1 Gbit/s with 5 ms each way between hosts. The weather pipeline runs with the
//! address chosen each way a user may choose it (an interface name, a network, nothing at all,
//! listening on every interface), and advertising loopback to another host fails at start-up.
//!
//! Needs root (network namespaces, tc, nftables): where namespaces are refused, each test says
//! SKIPPED with the reason.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::federation::{contact_addr, juxmem_bin};
use common::mpirun::{check, example, mpi_env, run_with_timeout, Output};
use common::netlab::Lab;

/// One lab at a time: each runs eight ranks and six daemons on this machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const STAGE_LIMIT: Duration = Duration::from_secs(300);

/// How the processes are told which address to use.
#[derive(Clone, Copy, Debug)]
enum Addressing {
    /// `JUXMEM_INTERFACE=jxnet0`.
    InterfaceName,
    /// `JUXMEM_INTERFACE=198.18.0.0/15`.
    Network,
    /// Nothing set: the first manager takes its default route, the rest route toward it.
    Routing,
    /// `JUXMEM_LISTEN=0.0.0.0:0`: listen everywhere, advertise the routed address.
    AllInterfaces,
}

impl Addressing {
    fn env(self) -> Vec<(&'static str, String)> {
        match self {
            Addressing::InterfaceName => vec![("JUXMEM_INTERFACE", "jxnet0".into())],
            Addressing::Network => vec![("JUXMEM_INTERFACE", "198.18.0.0/15".into())],
            Addressing::Routing => vec![],
            Addressing::AllInterfaces => vec![("JUXMEM_LISTEN", "0.0.0.0:0".into())],
        }
    }
}

/// The environment of every process of cluster `A<k>` on host `k`.
fn cluster_env(lab: &Lab, k: u32, addressing: Addressing) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("JUXMEM_FEDERATION_DIR", lab.dir.display().to_string()),
        ("JUXMEM_CLUSTER", format!("A{k}")),
        ("JUXMEM_LOG", "info".into()),
        ("JUXMEM_TIMEOUT", "60".into()),
    ];
    env.extend(addressing.env());
    env
}

/// Managers and daemons as in `examples/weather.pipeline`, cluster `A<k>` on host `k`, then the
/// four stages at once (stage k on host k, the verifying stage on host 3).
fn weather_across_hosts(tag: &str, addressing: Addressing) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut lab) = Lab::up(tag, 3, "1gbit", 5) else {
        return;
    };
    let weather = example("weather");
    std::fs::write(lab.dir.join("federation"), "weather-hosts").unwrap();
    // Each cluster's credentials where its processes look: the directory's credentials/<cluster>.
    juxmem::credentials::local_federation(
        &juxmem::config::local_credentials(&lab.dir),
        "weather-hosts",
        &["A1", "A2", "A3"],
    )
    .unwrap();
    for k in 1..=3 {
        let env = cluster_env(&lab, k, addressing);
        let cluster = format!("A{k}");
        lab.spawn_juxmem(
            k,
            &["manager", "--cluster", &cluster],
            &env,
            &format!("A{k}-manager"),
        );
        let contact = lab.dir.join(format!("A{k}.manager"));
        lab.wait_for(&format!("manager of A{k}"), Duration::from_secs(20), || {
            contact.exists()
        });
        // Every cluster's manager advertises its host's address, whichever way it was chosen.
        let addr = contact_addr(&lab.dir, &format!("A{k}"));
        assert!(
            addr.starts_with(&format!("{}:", Lab::addr(k))),
            "{addressing:?}: manager of A{k} advertises {addr}, not host {k}'s address"
        );
    }
    let providers = [(1, 1), (2, 1), (3, 2)];
    for (k, n) in providers {
        let env = cluster_env(&lab, k, addressing);
        for p in 0..n {
            let (cluster, name) = (format!("A{k}"), format!("provider-{p}"));
            lab.spawn_juxmem(
                k,
                &[
                    "provider",
                    "--cluster",
                    &cluster,
                    "--name",
                    &name,
                    "--capacity",
                    "256MiB",
                ],
                &env,
                &format!("A{k}-{name}"),
            );
        }
    }
    // The daemons are registered once `juxmem status` (from host 1) lists all four.
    lab.wait_for("four provider daemons", Duration::from_secs(30), || {
        let mut cmd = lab.command(1, &juxmem_bin());
        cmd.args(["status", "--json"])
            .envs(cluster_env(&lab, 1, addressing))
            .stderr(Stdio::null());
        cmd.output().is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("\"daemon\"")
                .count()
                == 4
        })
    });
    let out_dir = lab.dir.join("out");
    let stages = [(1, 2, "1"), (2, 3, "2"), (3, 2, "3"), (3, 1, "verify")];
    let t0 = Instant::now();
    let results: Vec<(String, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = stages
            .iter()
            .map(|&(k, np, stage)| {
                let mut cmd = lab.command(k, Path::new("mpirun"));
                mpi_env(&mut cmd);
                cmd.envs(cluster_env(&lab, k, addressing))
                    .args(["-np", &np.to_string()])
                    .arg(&weather)
                    .args(["--stage", stage, "--cycles", "2", "--out"])
                    .arg(&out_dir);
                s.spawn(move || (stage.to_string(), run_with_timeout(cmd, STAGE_LIMIT)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (stage, out) in &results {
        check(out, &format!("{addressing:?}: weather stage {stage}"));
        let line = format!("WEATHER stage {stage} verified: 2 cycles");
        assert!(
            out.stdout.contains(&line),
            "{addressing:?}: missing {line:?}:\n{}\n{}",
            out.stdout,
            lab.logs()
        );
    }
    println!(
        "{addressing:?}: weather across 3 hosts (1 Gbit/s, 5 ms each way) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn weather_across_hosts_with_an_interface_name() {
    weather_across_hosts("i", Addressing::InterfaceName);
}

#[test]
fn weather_across_hosts_with_a_network() {
    weather_across_hosts("n", Addressing::Network);
}

#[test]
fn weather_across_hosts_with_no_setting() {
    weather_across_hosts("r", Addressing::Routing);
}

#[test]
fn weather_across_hosts_listening_on_every_interface() {
    weather_across_hosts("a", Addressing::AllInterfaces);
}

/// Runs `juxmem ARGS` on host `k` and returns its output; it must end within 20 s.
fn juxmem_on(lab: &Lab, k: u32, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = lab.command(k, &juxmem_bin());
    cmd.args(args).envs(env.iter().map(|(k, v)| (*k, v)));
    run_with_timeout(cmd, Duration::from_secs(20))
}

#[test]
fn loopback_advertised_to_another_host_fails_at_start() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut lab) = Lab::up("l", 2, "1gbit", 5) else {
        return;
    };
    std::fs::write(lab.dir.join("federation"), "loopback").unwrap();
    juxmem::credentials::local_federation(
        &juxmem::config::local_credentials(&lab.dir),
        "loopback",
        &["A1", "A2"],
    )
    .unwrap();
    let env1 = cluster_env(&lab, 1, Addressing::Routing);
    lab.spawn_juxmem(1, &["manager", "--cluster", "A1"], &env1, "A1-manager");
    let contact = lab.dir.join("A1.manager");
    lab.wait_for("manager of A1", Duration::from_secs(20), || {
        contact.exists()
    });
    let loopback = [("JUXMEM_LISTEN", "127.0.0.1:0".to_string())];
    // A provider of A1 on host 2 that would advertise loopback to its manager on host 1.
    let mut env = cluster_env(&lab, 2, Addressing::Routing);
    env[1].1 = "A1".into();
    env.extend(loopback.iter().cloned());
    let t0 = Instant::now();
    let out = juxmem_on(&lab, 2, &["provider", "--cluster", "A1"], &env);
    assert!(!out.success, "a provider advertising loopback started");
    assert!(
        out.stderr.contains("127.0.0.1") && out.stderr.contains("cannot reach"),
        "{}",
        out.stderr
    );
    // The manager of A2 on host 2 likewise, toward A1's manager on host 1.
    let mut env = cluster_env(&lab, 2, Addressing::Routing);
    env.extend(loopback.iter().cloned());
    let out = juxmem_on(&lab, 2, &["manager", "--cluster", "A2"], &env);
    assert!(!out.success, "a manager advertising loopback started");
    assert!(
        out.stderr.contains("JUXMEM_INTERFACE"),
        "the error names the setting: {}",
        out.stderr
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "refused only after {:?}",
        t0.elapsed()
    );
    assert!(
        !lab.dir.join("A2.manager").exists(),
        "no contact file is left"
    );
    // An interface this host lacks is named with the ones it has.
    let mut env = cluster_env(&lab, 2, Addressing::Routing);
    env.push(("JUXMEM_INTERFACE", "ib0".into()));
    let out = juxmem_on(&lab, 2, &["manager", "--cluster", "A2"], &env);
    assert!(!out.success);
    assert!(
        out.stderr.contains("matches no address") && out.stderr.contains("jxnet0 198.18.2.2"),
        "{}",
        out.stderr
    );
}
