//! A partition of a cluster run by 3 manager replicas (issue 8), in network namespaces (one
//! host each, `ci/netlab`): the leader is cut off from the other two replicas; a client on its
//! side gets a typed error within its timeout; the majority side elects a leader and goes on;
//! after healing, the old leader's side reads what the majority acknowledged, and nothing else.
//! Needs root for the namespaces (SKIPPED with the reason otherwise); every process is stopped
//! by PID and the namespaces deleted when the lab is dropped.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::mpirun::example;
use common::netlab::Lab;

/// The environment of every process of cluster Z.
fn env(lab: &Lab) -> Vec<(&'static str, String)> {
    vec![
        ("JUXMEM_FEDERATION_DIR", lab.dir.display().to_string()),
        ("JUXMEM_CLUSTER", "Z".into()),
        ("JUXMEM_LOG", "info".into()),
        ("JUXMEM_TIMEOUT", "10".into()),
        ("JUXMEM_FAILURE_TIMEOUT", "3".into()),
        ("JUXMEM_INTERFACE", "jxnet0".into()),
    ]
}

/// `fed_check ARGS` on host `k`, bounded by `limit`: (success, stdout + stderr, time taken).
fn fed_check(lab: &Lab, k: u32, args: &[&str], limit: Duration) -> (bool, String, Duration) {
    let mut cmd = lab.command(k, &example("fed_check"));
    cmd.args(args).envs(env(lab));
    let t = Instant::now();
    let out = common::mpirun::run_with_timeout(cmd, limit);
    (
        out.success,
        format!("{}{}", out.stdout, out.stderr),
        t.elapsed(),
    )
}

/// Runs `nft` in host `k`'s namespace.
fn nft(lab: &Lab, k: u32, rule: &str) {
    let st = Command::new("ip")
        .args(["netns", "exec", &lab.host(k), "nft", rule])
        .status()
        .unwrap();
    assert!(st.success(), "nft {rule}");
}

#[test]
fn a_leader_cut_off_from_its_replicas_refuses_and_the_majority_goes_on() {
    let Some(mut lab) = Lab::up("part", 4, "1gbit", 0) else {
        return;
    };
    std::fs::write(lab.dir.join("federation"), "partition").unwrap();
    juxmem::credentials::local_federation(
        &juxmem::config::local_credentials(&lab.dir),
        "partition",
        &["Z"],
    )
    .unwrap();
    let e = env(&lab);
    for k in 1..=3u32 {
        let data = lab.dir.join(format!("data-{k}"));
        let args = [
            "manager",
            "--cluster",
            "Z",
            "--replica",
            &k.to_string(),
            "--replicas",
            "3",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        lab.spawn_juxmem(k, &args, &e, &format!("Z-r{k}"));
    }
    let contact = lab.dir.join("Z.manager");
    lab.wait_for("a leader of Z", Duration::from_secs(60), || {
        contact.exists()
    });
    // The data on a daemon of host 4, which stays reachable from both sides.
    let daemon = [
        "provider",
        "--cluster",
        "Z",
        "--name",
        "d4",
        "--capacity",
        "64MiB",
    ];
    lab.spawn_juxmem(4, &daemon, &e, "Z-d4");
    let limit = Duration::from_secs(90);
    lab.wait_for("the daemon", Duration::from_secs(30), || {
        fed_check(&lab, 4, &["counter-init", "part/c", "1"], limit).0
    });
    let (ok, out, _) = fed_check(&lab, 4, &["counter-inc", "part/c", "5"], limit);
    assert!(ok, "{out}\n{}", lab.logs());

    // The leader's host is cut off from the other two replicas' (both ways).
    let addr = common::federation::contact_addr(&lab.dir, "Z");
    let leader = (1..=3u32)
        .find(|&k| addr.starts_with(&format!("{}:", Lab::addr(k))))
        .expect("the leader is on a replica host");
    let others: Vec<String> = (1..=3u32).filter(|&k| k != leader).map(Lab::addr).collect();
    let set = others.join(", ");
    nft(&lab, leader, "add table inet cut");
    nft(
        &lab,
        leader,
        "add chain inet cut out { type filter hook output priority 0 ; }",
    );
    nft(
        &lab,
        leader,
        "add chain inet cut in { type filter hook input priority 0 ; }",
    );
    nft(
        &lab,
        leader,
        &format!("add rule inet cut out ip daddr {{ {set} }} drop"),
    );
    nft(
        &lab,
        leader,
        &format!("add rule inet cut in ip saddr {{ {set} }} drop"),
    );

    // Its side: a write fails with a typed error, within the client's timeouts.
    let (ok, out, took) = fed_check(&lab, leader, &["counter-inc", "part/c", "1"], limit);
    eprintln!("cut-off side, after {took:?}: {}", out.trim());
    assert!(!ok, "a write on the cut-off side succeeded:\n{out}");
    assert!(
        ["not the leader", "timed out", "stale", "network"]
            .iter()
            .any(|k| out.to_lowercase().contains(k)),
        "not a typed error:\n{out}"
    );
    assert!(took < Duration::from_secs(60), "refused after {took:?}");
    // The majority side: a new leader, and writes go on.
    let (ok, out, _) = fed_check(&lab, 4, &["counter-inc", "part/c", "3"], limit);
    assert!(
        ok,
        "the majority side did not go on:\n{out}\n{}",
        lab.logs()
    );

    // Healed: the old leader's side reads what the majority acknowledged (5 + 3), not the
    // write it was refused.
    nft(&lab, leader, "delete table inet cut");
    let mut last = String::new();
    let read = |last: &mut String| {
        let (ok, out, _) = fed_check(&lab, leader, &["counter-read", "part/c"], limit);
        *last = out.clone();
        ok && out.contains("COUNTER value=8 ")
    };
    let t = Instant::now();
    eprintln!("healed");
    while !read(&mut last) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "after healing, host {leader} reads:\n{last}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
