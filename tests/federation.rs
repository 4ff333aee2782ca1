//! Multi-process tests on a local federation (managers and provider daemons as processes of the
//! `juxmem` command, clients as MPI jobs or plain processes), every run bounded by a timeout.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::federation::{
    closed_by_peer, hello_frame, manager_addr, raw_tls, tls_closed_by_peer, LocalFederation,
};
use common::mpirun::{check, example, mpi_env, mpirun, run_with_timeout, Output};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::transport::tcp::{self, HelloReply, PROTOCOL_VERSION};
use juxmem::{ArrayOptions, ErrorCode, Federation, Solo};

const LIMIT: Duration = Duration::from_secs(240);

fn mpi_client(fed: &LocalFederation, cluster: &str, np: u32, args: &[&str]) -> Command {
    let prog = example("fed_check");
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    fed.env(&mut cmd, cluster);
    cmd.arg("-np").arg(np.to_string()).arg(prog).args(args);
    cmd
}

fn client(fed: &LocalFederation, cluster: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(example("fed_check"));
    fed.env(&mut cmd, cluster);
    cmd.args(args);
    cmd
}

fn run_together(cmds: Vec<(&'static str, Command)>) -> Vec<Output> {
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|(name, cmd)| {
            (
                name,
                std::thread::spawn(move || run_with_timeout(cmd, LIMIT)),
            )
        })
        .collect();
    handles
        .into_iter()
        .map(|(name, h)| {
            let out = h.join().unwrap_or_else(|_| panic!("{name} panicked"));
            check(&out, name);
            out
        })
        .collect()
}

#[test]
fn all_nine_layout_pairs_between_two_clusters() {
    let fed = LocalFederation::start("pairs", &[("A", 1), ("B", 1)]);
    let outs = run_together(vec![
        ("producer", mpi_client(&fed, "A", 2, &["pairs-produce"])),
        ("consumer", mpi_client(&fed, "B", 3, &["pairs-consume"])),
    ]);
    let line = outs[1]
        .stdout
        .lines()
        .find(|l| l.starts_with("PAIRS consumed"))
        .unwrap_or_default();
    assert_eq!(
        line, "PAIRS consumed pairs=9 elements=27135 wrong=0",
        "{}",
        outs[1].stdout
    );
}

#[test]
fn concurrent_counter_increments_from_two_clusters_are_never_lost() {
    let fed = LocalFederation::start("counter", &[("A", 1), ("B", 1)]);
    check(
        &run_with_timeout(
            client(&fed, "A", &["counter-init", "shared/counter"]),
            LIMIT,
        ),
        "init",
    );
    let (n, k) = (4u64, 15u64);
    let cmds = (0..n)
        .map(|i| {
            let cluster = if i % 2 == 0 { "A" } else { "B" };
            (
                "incrementer",
                client(
                    &fed,
                    cluster,
                    &["counter-inc", "shared/counter", &k.to_string()],
                ),
            )
        })
        .collect();
    run_together(cmds);
    let out = run_with_timeout(
        client(&fed, "B", &["counter-read", "shared/counter"]),
        LIMIT,
    );
    check(&out, "read");
    let want = format!("COUNTER value={} version={}", n * k, n * k);
    assert!(
        out.stdout.contains(&want),
        "expected {want}, got {}",
        out.stdout
    );
}

#[test]
fn readers_never_observe_a_partially_released_version() {
    let fed = LocalFederation::start("snap", &[("A", 1), ("B", 1)]);
    let versions = "40";
    let outs = run_together(vec![
        (
            "writer",
            mpi_client(&fed, "A", 2, &["snap-write", versions]),
        ),
        ("reader", mpi_client(&fed, "B", 3, &["snap-read", versions])),
    ]);
    let line = outs[1]
        .stdout
        .lines()
        .find(|l| l.starts_with("SNAP reads="))
        .unwrap_or_default()
        .to_string();
    eprintln!("{line}");
    assert!(line.ends_with("torn_elements=0"), "{line}");
    // The reader must actually have raced the writer: several versions seen.
    let distinct: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("distinct_versions="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        distinct >= 2,
        "the reader saw too few versions to test anything: {line}"
    );
}

#[test]
fn version_waits_time_out_with_a_typed_error() {
    let fed = LocalFederation::start("timeout", &[("A", 0)]);
    let me = Federation::join(fed.config("A")).unwrap();
    let layout = Layout::one_d(100, Dist::Block, 1).unwrap();
    let mut a = me
        .create::<f64, _>(&Solo, "wait/never", ArrayOptions::new(layout))
        .unwrap();
    let t0 = Instant::now();
    let e = a
        .acquire_read_timeout(VersionReq::Exactly(5), Duration::from_millis(300))
        .unwrap_err();
    let waited = t0.elapsed();
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert!(e.to_string().contains("wait/never"), "{e}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // The per-process form times out the same way.
    let e = a
        .acquire_region_read(
            &[0],
            &[10],
            VersionReq::AtLeast(1),
            Duration::from_millis(200),
        )
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    // The array still works afterwards.
    a.acquire().unwrap();
    a.local_mut().unwrap()[3] = 7.5;
    assert_eq!(a.release().unwrap(), 1);
    let r = a
        .acquire_region_read(&[2], &[5], VersionReq::AtLeast(1), Duration::from_secs(5))
        .unwrap();
    let mut buf = [0.0; 3];
    r.get(&mut buf).unwrap();
    assert_eq!((r.version(), buf), (1, [0.0, 7.5, 0.0]));
    r.release().unwrap();
    assert_eq!(a.acquire_read(VersionReq::Latest).unwrap(), 1);
    a.release_read().unwrap();
}

#[test]
fn managers_found_through_an_address_list() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let list = format!("A=127.0.0.1:{},B=127.0.0.1:{}", free(), free());
    // No directory to find credentials in: each process is given its cluster's.
    let creds = std::env::temp_dir().join(format!("juxmem-by-address-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&creds);
    juxmem::credentials::local_federation(&creds, "by-address", &["A", "B"]).unwrap();
    let mut managers = Vec::new();
    for (cluster, addr) in list.split(',').filter_map(|e| e.split_once('=')) {
        let mut m = Command::new(env!("CARGO_BIN_EXE_juxmem"));
        m.args(["manager", "--cluster", cluster, "--listen", addr])
            .env("JUXMEM_CREDENTIALS", creds.join(cluster))
            .env_remove("JUXMEM_INSECURE")
            .env("JUXMEM_FEDERATION", &list)
            .env("JUXMEM_FEDERATION_ID", "by-address")
            .env_remove("JUXMEM_FEDERATION_DIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        managers.push(m.spawn().unwrap());
    }
    let config = |cluster: &str| {
        let mut c = juxmem::config::Config::default()
            .cluster(cluster)
            .rendezvous(juxmem::config::Rendezvous::Addresses(
                list.split(',')
                    .filter_map(|e| e.split_once('='))
                    .map(|(c, a)| (c.to_string(), a.to_string()))
                    .collect(),
            ));
        c.federation = "by-address".into();
        c.credentials = Some(creds.join(cluster));
        c
    };
    let start = Instant::now();
    let b = loop {
        match Federation::join(config("B")) {
            Ok(f) => break f,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("joining B: {e}"),
        }
    };
    let layout = Layout::one_d(50, Dist::Block, 1).unwrap();
    let mut x = b
        .create::<i32, _>(&Solo, "addr/x", ArrayOptions::new(layout.clone()))
        .unwrap();
    x.acquire().unwrap();
    x.local_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as i32);
    x.release().unwrap();
    let a = Federation::join(config("A")).unwrap();
    let mut y = a
        .open::<i32, _>(&Solo, "addr/x", Layout::one_d(50, Dist::Cyclic, 1).unwrap())
        .unwrap();
    y.acquire_read(VersionReq::AtLeast(1)).unwrap();
    let got: Vec<i32> = y.local().unwrap().to_vec();
    y.release_read().unwrap();
    for m in &managers {
        let _ = Command::new("kill")
            .args(["-TERM", &m.id().to_string()])
            .status();
    }
    for mut m in managers {
        let _ = m.wait();
    }
    assert_eq!(got, (0..50).collect::<Vec<i32>>());
}

#[test]
fn bad_names_types_and_shapes_get_typed_errors_without_hanging() {
    let fed = LocalFederation::start("badinput", &[("A", 0), ("B", 0)]);
    let a = Federation::join(fed.config("A")).unwrap();
    let b = Federation::join(fed.config("B")).unwrap();
    let layout = Layout::new(&[10, 20], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    let _x = a
        .create::<f64, _>(&Solo, "bad/x", ArrayOptions::new(layout.clone()))
        .unwrap();

    let t0 = Instant::now();
    let e = b
        .open::<f64, _>(&Solo, "bad/nothing", layout.clone())
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("bad/nothing"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));

    let e = b
        .open::<f32, _>(&Solo, "bad/x", layout.clone())
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::TypeMismatch, "{e}");
    assert!(
        e.to_string().contains("f64") && e.to_string().contains("f32"),
        "{e}"
    );

    let other = Layout::new(&[20, 10], &[Dist::Block, Dist::Block], &[1, 1]).unwrap();
    let e = b.open::<f64, _>(&Solo, "bad/x", other).err().unwrap();
    assert_eq!(e.code(), ErrorCode::ShapeMismatch, "{e}");

    let e = a
        .create::<f64, _>(&Solo, "bad/x", ArrayOptions::new(layout.clone()))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
    let e = b
        .create::<f64, _>(&Solo, "bad/x", ArrayOptions::new(layout.clone()))
        .err()
        .unwrap();
    assert_eq!(
        e.code(),
        ErrorCode::AlreadyExists,
        "a name is unique across clusters: {e}"
    );

    let e = a
        .create::<f64, _>(&Solo, "bad//name", ArrayOptions::new(layout.clone()))
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = a
        .create::<f64, _>(
            &Solo,
            "bad/too-redundant",
            ArrayOptions::new(layout.clone()).redundancy(3, 1),
        )
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::Capacity, "{e}");

    let mut x = b.open::<f64, _>(&Solo, "bad/x", layout).unwrap();
    let mut buf = vec![0.0; 4];
    assert_eq!(
        x.get(&[0, 0], &[2, 2], &mut buf).unwrap_err().code(),
        ErrorCode::NotAcquired
    );
    x.acquire_read(VersionReq::Latest).unwrap();
    assert_eq!(
        x.get(&[0, 0], &[11, 2], &mut buf).unwrap_err().code(),
        ErrorCode::OutOfBounds
    );
    assert_eq!(
        x.get(&[0, 0], &[2, 3], &mut buf).unwrap_err().code(),
        ErrorCode::BufferSize
    );
    x.get(&[0, 0], &[2, 2], &mut buf).unwrap();
    x.release_read().unwrap();
    let names: Vec<String> = b
        .list("bad/")
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, vec!["bad/x".to_string()]);
}

#[test]
fn malformed_and_oversized_frames_close_only_that_connection() {
    let fed = LocalFederation::start("frames", &[("A", 0)]);
    let addr = manager_addr(&fed, "A");
    // Not our protocol at all.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(5)),
        "an HTTP request must be refused"
    );
    // A small frame that is not a juxmem hello, from a peer without TLS.
    let mut s = TcpStream::connect(&addr).unwrap();
    tcp::write_frame(&mut s, b"HELLO, I SPEAK SOMETHING ELSE").unwrap();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(5)),
        "a foreign hello must be refused"
    );
    // The same inside TLS, with valid credentials.
    let mut s = raw_tls(&fed, &addr, "A");
    tcp::write_frame(&mut s, b"HELLO, I SPEAK SOMETHING ELSE").unwrap();
    s.flush().unwrap();
    assert!(
        tls_closed_by_peer(&mut s, Duration::from_secs(5)),
        "a foreign hello must be refused"
    );
    // A good hello, then a frame announcing 2 GiB.
    let mut s = raw_tls(&fed, &addr, "A");
    s.write_all(&hello_frame("A/raw", PROTOCOL_VERSION, "frames"))
        .unwrap();
    let reply: HelloReply = tcp::recv(&mut s, 1 << 20).unwrap();
    assert!(matches!(reply, HelloReply::Welcome(_)), "{reply:?}");
    s.write_all(&(2u32 << 30).to_le_bytes()).unwrap();
    s.flush().unwrap();
    assert!(
        tls_closed_by_peer(&mut s, Duration::from_secs(5)),
        "an oversized frame must close the connection"
    );
    // A good hello, then a frame of garbage.
    let mut s = raw_tls(&fed, &addr, "A");
    s.write_all(&hello_frame("A/raw", PROTOCOL_VERSION, "frames"))
        .unwrap();
    let _: HelloReply = tcp::recv(&mut s, 1 << 20).unwrap();
    tcp::write_frame(&mut s, &[0xff; 64]).unwrap();
    s.flush().unwrap();
    assert!(
        tls_closed_by_peer(&mut s, Duration::from_secs(5)),
        "a malformed frame must close the connection"
    );
    // The manager keeps serving everyone else.
    let me = Federation::join(fed.config("A")).unwrap();
    assert!(me.list("*").unwrap().is_empty());
    let log = fed.log("A-manager");
    assert!(
        log.contains("frame of 2147483648 bytes exceeds the limit"),
        "manager log:\n{log}"
    );
    assert!(log.contains("malformed message"), "manager log:\n{log}");
    assert!(log.contains("bad magic"), "manager log:\n{log}");
}

#[test]
fn peers_of_another_protocol_version_or_federation_are_refused_by_name() {
    let fed = LocalFederation::start("versions", &[("A", 0)]);
    let addr = manager_addr(&fed, "A");
    let mut s = raw_tls(&fed, &addr, "A");
    s.write_all(&hello_frame("A/raw", PROTOCOL_VERSION + 1, "versions"))
        .unwrap();
    let reply: HelloReply = tcp::recv(&mut s, 1 << 20).unwrap();
    match reply {
        HelloReply::Refused(why) => assert!(
            why.contains(&format!("version {}", PROTOCOL_VERSION + 1))
                && why.contains(&format!("version {PROTOCOL_VERSION}")),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut cfg = fed.config("A");
    cfg.federation = "someone-else".into();
    let e = Federation::join(cfg).err().unwrap();
    assert_eq!(e.code(), ErrorCode::Refused, "{e}");
    assert!(
        e.to_string().contains("someone-else") && e.to_string().contains("versions"),
        "{e}"
    );
}

#[test]
fn stale_contact_files_are_recognised_not_trusted() {
    let fed = LocalFederation::start("stale", &[("A", 0)]);
    fed.add_cluster_credentials("Z");
    // A contact file left by a crashed manager of cluster Z: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        fed.dir().join("Z.manager"),
        format!("cluster=Z\naddr=127.0.0.1:{port}\nincarnation=42\npid=999999\n"),
    )
    .unwrap();
    let e = Federation::join(fed.config("Z")).err().unwrap();
    assert_eq!(e.code(), ErrorCode::Stale, "{e}");
    assert!(e.to_string().contains("crashed run"), "{e}");
    // A lookup that cannot ask cluster Z says so at once (neither hangs nor claims "not
    // found": a stage waiting for the array would wait in vain).
    let a = Federation::join(fed.config("A")).unwrap();
    let t = Instant::now();
    let e = a.lookup("no/such").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Stale, "{e}");
    assert!(e.to_string().contains("cluster Z"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // A new manager for Z replaces the stale file.
    let mut m = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    m.args(["manager", "--cluster", "Z"]);
    fed.env(&mut m, "Z");
    let mut child = m
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::federation::wait_for("the new Z manager", || {
        std::fs::read_to_string(fed.dir().join("Z.manager"))
            .is_ok_and(|t| !t.contains("incarnation=42\n"))
    });
    let z = Federation::join(fed.config("Z"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(z.is_ok(), "{:?}", z.err());
}

#[test]
fn weather_pipeline_on_a_local_three_cluster_federation() {
    let weather = example("weather");
    let out_dir = std::env::temp_dir().join(format!("juxmem-weather-{}", std::process::id()));
    let pipeline = out_dir.join("weather.pipeline");
    std::fs::create_dir_all(&out_dir).unwrap();
    let w = weather.display();
    let o = out_dir.display();
    std::fs::write(
        &pipeline,
        format!(
            "federation weather-test\ncluster A1 providers=1\ncluster A2 providers=1\ncluster A3 providers=1\n\
             stage A1 np=2 {w} --stage 1 --cycles 2 --out {o}\n\
             stage A2 np=3 {w} --stage 2 --cycles 2 --out {o}\n\
             stage A3 np=2 {w} --stage 3 --cycles 2 --out {o}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    mpi_env(&mut cmd);
    cmd.args(["launch", pipeline.to_str().unwrap(), "--timeout", "200"]);
    let out = run_with_timeout(cmd, LIMIT);
    check(&out, "juxmem launch");
    for stage in 1..=3 {
        let line = format!("WEATHER stage {stage} verified: 2 cycles");
        assert!(
            out.stdout.contains(&line),
            "missing {line:?}:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("launch: all stages succeeded"));
    for day in 1..=3 {
        let png = out_dir.join(format!("day{day}_cycle1.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(&bytes[1..4], b"PNG");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn handoff_benchmark_runs_and_checks_its_results() {
    let prog = example("bench_handoff");
    let dir = std::env::temp_dir().join(format!("juxmem-handoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = dir.join("handoff.pipeline");
    let (p, d) = (prog.display(), dir.join("files"));
    let d = d.display();
    std::fs::write(
        &pipeline,
        format!(
            "federation handoff-test\ncluster A providers=0\ncluster B providers=0\n\
             stage A np=2 {p} --role producer --files --mib 4 --reps 2 --dir {d}\n\
             stage B np=2 {p} --role consumer --files --mib 4 --reps 2 --dir {d}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    mpi_env(&mut cmd);
    cmd.args(["launch", pipeline.to_str().unwrap(), "--timeout", "200"]);
    let out = run_with_timeout(cmd, LIMIT);
    check(&out, "handoff benchmark");
    for against in ["tcp", "file"] {
        let name = format!("BENCH name=handoff-4mib-block-to-cyclic-vs-{against} ");
        assert!(
            out.stdout.contains(&name),
            "missing {name:?}:\n{}",
            out.stdout
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn examples_print_errors_and_exit_non_zero() {
    let weather = example("weather");
    let out = mpirun(1, &weather, &["--stage", "9"], LIMIT);
    assert!(!out.success, "a bad --stage was accepted");
    assert!(
        out.stderr
            .contains("weather: --stage \"9\": 1, 2, 3 or verify"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // No federation where it is said to be: the error, not a panic.
    let empty = std::env::temp_dir().join(format!("juxmem-nofed-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    cmd.env("JUXMEM_FEDERATION_DIR", &empty)
        .env("JUXMEM_CLUSTER", "A1")
        .args(["-np", "1"])
        .arg(&weather)
        .args(["--stage", "1", "--cycles", "1"]);
    let out = run_with_timeout(cmd, LIMIT);
    let _ = std::fs::remove_dir_all(&empty);
    assert!(!out.success, "joined a federation that does not exist");
    assert!(
        out.stderr.contains("weather: ") && !out.stderr.contains("panicked"),
        "{}",
        out.stderr
    );
}

#[test]
fn lock_benchmark_runs_and_checks_its_results() {
    let prog = example("bench_lock");
    let out = run_with_timeout(
        {
            let mut cmd = Command::new(prog);
            cmd.args(["--ops", "10"]);
            cmd
        },
        LIMIT,
    );
    check(&out, "lock benchmark");
    assert!(
        out.stdout
            .contains("BENCH name=lock-put-unlock-1mib-4copies-vs-tcp juxmem_s="),
        "{}",
        out.stdout
    );
}

#[test]
fn acquire_overwrite_releases_what_was_written_without_loading() {
    let fed = LocalFederation::start("overwrite", &[("A", 1)]);
    let me = Federation::join(fed.config("A")).unwrap();
    let len = 1u64 << 16;
    for (name, on_daemons) in [("ow/own", false), ("ow/daemon", true)] {
        let mut opts = ArrayOptions::new(Layout::one_d(len, Dist::Block, 1).unwrap())
            .retention(4, juxmem::service::protocol::FullPolicy::Block);
        if on_daemons {
            opts = opts.homes_on_daemons();
        }
        let mut a = me.create::<f64, _>(&Solo, name, opts).unwrap();
        a.acquire().unwrap();
        a.local_mut().unwrap().fill(1.0);
        assert_eq!(a.release().unwrap(), 1);
        a.acquire_overwrite().unwrap();
        for (i, x) in a.local_mut().unwrap().iter_mut().enumerate() {
            *x = i as f64;
        }
        assert_eq!(a.release().unwrap(), 2);
        // Both versions read back whole: the overwrite changed only version 2.
        for (v, want) in [(1u64, None), (2, Some(()))] {
            let g = a
                .acquire_region_read(
                    &[0],
                    &[len],
                    VersionReq::Exactly(v),
                    Duration::from_secs(10),
                )
                .unwrap();
            let mut buf = vec![0.0; len as usize];
            g.get(&mut buf).unwrap();
            let ok = match want {
                None => buf.iter().all(|&x| x == 1.0),
                Some(()) => buf.iter().enumerate().all(|(i, &x)| x == i as f64),
            };
            assert!(ok, "{name}: version {v} reads back wrong");
        }
        // A plain acquire after an overwrite loads the overwritten version.
        a.acquire().unwrap();
        assert!(
            a.local()
                .unwrap()
                .iter()
                .enumerate()
                .all(|(i, &x)| x == i as f64),
            "{name}: acquire after an overwrite"
        );
        a.release().unwrap();
    }
}

#[test]
fn a_raw_local_pointer_keeps_other_ranks_out_of_its_block_until_release() {
    let fed = LocalFederation::start("lend", &[("A", 0)]);
    let out = run_with_timeout(mpi_client(&fed, "A", 2, &["lend"]), LIMIT);
    check(&out, "lend");
    // Rank 1's one-sided get and put of rank 0's lent block: refused, with the reason.
    for op in ["get", "put"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("LEND {op} ")))
            .unwrap_or_else(|| panic!("no LEND {op} line:\n{}", out.stdout));
        assert!(
            line.contains("Busy") && line.contains("raw pointer"),
            "{line}"
        );
    }
    for rank in 0..2 {
        assert!(
            out.stdout
                .contains(&format!("LEND rank={rank} version=1 wrong=0")),
            "{}",
            out.stdout
        );
    }
}

/// Puts into an array whose blocks live on provider daemons are what the release publishes
/// (the writer's untouched copy of its part, loaded at acquire, once overwrote them with the
/// base version's contents), mixed with local writes the puts win; and a process that opened
/// the array once it held all the versions retained (a registered reader that read none of
/// them) writes on, instead of waiting on its own reader registration (it once timed out).
#[test]
fn puts_to_daemon_homes_are_published_and_a_writers_own_reader_does_not_block_it() {
    let fed = LocalFederation::start("daemon-puts", &[("A", 1)]);
    fed.wait_for_providers(1);
    let me = Federation::join(fed.config("A")).unwrap();
    let n = 256u64;
    let layout = Layout::one_d(n, Dist::Block, 1).unwrap();
    let opts = ArrayOptions::new(layout.clone())
        .homes_on_daemons()
        .retention(2, juxmem::service::protocol::FullPolicy::Block);
    let other = Federation::join(fed.config("A")).unwrap();
    let mut r = None;
    let mut check = |v: u64, want: &dyn Fn(usize) -> f64| {
        let r =
            r.get_or_insert_with(|| other.open::<f64, _>(&Solo, "dp/x", layout.clone()).unwrap());
        r.acquire_read(VersionReq::Exactly(v)).unwrap();
        let mut buf = vec![0.0; n as usize];
        r.get(&[0], &[n], &mut buf).unwrap();
        r.release_read().unwrap();
        let wrong = (0..n as usize).filter(|&i| buf[i] != want(i)).count();
        assert_eq!(wrong, 0, "version {v}: {:?}", &buf[..4]);
    };
    {
        let mut c = me.create::<f64, _>(&Solo, "dp/x", opts).unwrap();
        for v in 1..=2u64 {
            c.acquire().unwrap();
            c.put(&[0], &[n], &vec![v as f64; n as usize]).unwrap();
            assert_eq!(c.release().unwrap(), v);
            check(v, &|_| v as f64);
        }
    }
    // Opened now, its reader registration starts at version 1, which version 3 must drop.
    let mut w = me.open::<f64, _>(&Solo, "dp/x", layout.clone()).unwrap();
    for v in 3..=4u64 {
        w.acquire_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("version {v}: {e}"));
        if v == 3 {
            w.put(&[0], &[n], &vec![3.0; n as usize]).unwrap();
        } else {
            // A put of half, then local writes: the put's half wins, the rest is local.
            w.put(&[0], &[n / 2], &vec![40.0; (n / 2) as usize])
                .unwrap();
            w.local_mut().unwrap().fill(-1.0);
        }
        assert_eq!(w.release().unwrap(), v);
        check(v, &|i| match v {
            4 if i < (n / 2) as usize => 40.0,
            4 => -1.0,
            _ => v as f64,
        });
    }
}
