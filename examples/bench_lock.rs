//! Lock-put-unlock of a 1 MiB array with 4 copies (2 clusters x 2 provider daemons, homes on
//! daemons, on loopback) against what its data movement costs over plain TCP: sending the 3
//! replica copies (1 MiB each) to 3 receivers and waiting for their acknowledgements, with the
//! same 4 MiB socket buffers as juxmem, connections made once outside the timing.
//!
//! One juxmem operation: acquire the region lock, put 1 MiB, release (the client writes to the
//! home, the home pushes to the 3 replicas, the manager commits). The two are interleaved
//! operation by operation; medians (min and max alongside) over `--ops` each. Every put writes
//! the operation's number; each TCP message is checked whole by its receiver after it
//! acknowledged (outside the timing), and the array's last version is read back whole.
//!
//! Prints `BENCH name=lock-put-unlock-1mib-4copies-vs-tcp juxmem_s=... baseline_s=... ratio=...`.
//!
//! Then the same operation while 1000 connections to the manager of A sit half-open (connected
//! from another address, 127.0.0.2, as an attacker on another host; nothing sent, so each holds
//! a thread until the handshake deadline), against the same with none, in alternating rounds:
//! `BENCH name=lock-put-unlock-under-1000-half-open-vs-idle ...` (target ratio <= 2).
//!
//! `bench_lock [--ops N]` (default 300).

#[path = "../tests/common/federation.rs"]
mod federation;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use federation::{LocalFederation, Settings};
use juxmem::element::{as_bytes, as_bytes_mut};
use juxmem::layout::{Dist, Layout};
// juxmem's own socket settings, so the baseline has exactly the same.
use juxmem::service::protocol::VersionReq;
use juxmem::transport::tcp::tune_bulk;
use juxmem::{ArrayOptions, Federation, Solo};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

static SOLO: Solo = Solo;
const LEN: u64 = 1 << 17; // 1 MiB of f64
const REPLICAS: usize = 3;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    if let Err(e) = bench() {
        eprintln!("bench_lock: {e}");
        std::process::exit(1);
    }
}

fn bench() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = match args.iter().position(|a| a == "--ops") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--ops N")?
            .parse()
            .map_err(|e| format!("--ops: {e}"))?,
        None => 300,
    };
    let settings = Settings {
        capacity: "64MiB".into(),
        ..Settings::default()
    };
    let fed = LocalFederation::start_with("lock", &[("A", 2), ("B", 2)], settings);
    let client = Federation::join(fed.config("A"))?;
    let opts = ArrayOptions::new(Layout::one_d(LEN, Dist::Block, 1)?)
        .homes_on_daemons()
        .redundancy(2, 2);
    let a = client.create::<f64, _>(&SOLO, "bench/lock", opts)?;

    // The baseline's receivers: one thread and connection each, checking every message after
    // acknowledging it.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (mut senders, mut conns) = (Vec::new(), Vec::new());
    for _ in 0..REPLICAS {
        let out = TcpStream::connect(addr)?;
        tune_bulk(&out)?;
        let (conn, _) = listener.accept()?;
        tune_bulk(&conn)?;
        senders.push(out);
        conns.push(conn);
    }
    let bad = AtomicU64::new(0);
    let mut buf = vec![0.0f64; LEN as usize];
    let (mut j, mut t) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    std::thread::scope(|s| -> Res<()> {
        let mut receivers = Vec::new();
        for mut conn in conns.drain(..) {
            let bad = &bad;
            receivers.push(s.spawn(move || -> std::io::Result<()> {
                let mut got = vec![0.0f64; LEN as usize];
                let mut op = 0u64;
                loop {
                    match conn.read_exact(as_bytes_mut(&mut got)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                    conn.write_all(&[1])?;
                    op += 1;
                    let wrong = got.iter().filter(|&&x| x != op as f64).count();
                    bad.fetch_add(wrong as u64, Ordering::Relaxed);
                }
            }));
        }
        for op in 1..=ops {
            buf.fill(op as f64);
            // juxmem.
            let t0 = Instant::now();
            let mut lock = a.acquire_region(&[0], &[LEN], Duration::from_secs(60))?;
            lock.put(&buf)?;
            lock.release()?;
            j.push(t0.elapsed().as_secs_f64());
            // Plain TCP: the 3 replica copies.
            let t0 = Instant::now();
            for c in senders.iter_mut() {
                c.write_all(as_bytes(&buf))?;
            }
            let mut ack = [0u8; 1];
            for c in senders.iter_mut() {
                c.read_exact(&mut ack)?;
            }
            t.push(t0.elapsed().as_secs_f64());
        }
        for c in &senders {
            c.shutdown(std::net::Shutdown::Write)?;
        }
        senders.clear();
        for r in receivers {
            r.join().map_err(|_| "a receiver panicked")??;
        }
        Ok(())
    })?;
    let wrong = bad.load(Ordering::Relaxed);
    if wrong != 0 {
        return Err(format!("plain TCP: {wrong} elements received wrong").into());
    }
    // The last version, read back whole from the array.
    let g = a.acquire_region_read(&[0], &[LEN], VersionReq::Latest, Duration::from_secs(60))?;
    let mut back = vec![0.0f64; LEN as usize];
    g.get(&mut back)?;
    if back.iter().any(|&x| x != ops as f64) {
        return Err(format!("juxmem: version {} is not the last put", g.version()).into());
    }
    drop(g);
    let (idle, loaded) = under_half_open(&fed, &a, &mut buf, ops)?;
    let (jm, jmin, jmax) = stats(j);
    let (tm, tmin, tmax) = stats(t);
    println!(
        "BENCH name=lock-put-unlock-1mib-4copies-vs-tcp juxmem_s={jm:.6} baseline_s={tm:.6} ratio={:.3}",
        jm / tm
    );
    println!(
        "lock: {ops} operations each: juxmem median {jm:.5} s (min {jmin:.5}, max {jmax:.5}); 3 replica copies over plain TCP median {tm:.5} s (min {tmin:.5}, max {tmax:.5})"
    );
    let (im, imin, imax) = stats(idle);
    let (lm, lmin, lmax) = stats(loaded);
    println!(
        "BENCH name=lock-put-unlock-under-{HALF_OPEN}-half-open-vs-idle juxmem_s={lm:.6} baseline_s={im:.6} ratio={:.3}",
        lm / im
    );
    println!(
        "lock: with {HALF_OPEN} half-open connections median {lm:.5} s (min {lmin:.5}, max {lmax:.5}); idle median {im:.5} s (min {imin:.5}, max {imax:.5})"
    );
    drop(a);
    drop(client);
    drop(fed);
    Ok(())
}

const HALF_OPEN: usize = 1000;

/// Lock-put-unlock timings (idle, under load) in alternating rounds; under load, `HALF_OPEN`
/// connections from 127.0.0.2 to the manager of A were opened just before and send nothing.
fn under_half_open(
    fed: &LocalFederation,
    a: &juxmem::SharedArray<'_, f64, Solo>,
    buf: &mut [f64],
    ops: usize,
) -> Res<(Vec<f64>, Vec<f64>)> {
    let manager: std::net::SocketAddr = federation::manager_addr(fed, "A").parse()?;
    let from: std::net::SocketAddr = "127.0.0.2:0".parse()?;
    let (rounds, per_round) = (10, (ops / 10).max(3));
    let (mut idle, mut loaded) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let load = round % 2 == 1;
        let mut held = Vec::new();
        if load {
            for _ in 0..HALF_OPEN {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(&from.into())?;
                s.connect_timeout(&manager.into(), Duration::from_secs(10))?;
                held.push(s);
            }
        }
        for op in 0..per_round {
            buf.fill((round * per_round + op) as f64);
            let t0 = Instant::now();
            let mut lock = a.acquire_region(&[0], &[LEN], Duration::from_secs(60))?;
            lock.put(buf)?;
            lock.release()?;
            let dt = t0.elapsed().as_secs_f64();
            if load {
                loaded.push(dt);
            } else {
                idle.push(dt);
            }
        }
        drop(held);
    }
    let last = (rounds * per_round - 1) as f64;
    let g = a.acquire_region_read(&[0], &[LEN], VersionReq::Latest, Duration::from_secs(60))?;
    let mut back = vec![0.0f64; LEN as usize];
    g.get(&mut back)?;
    if back.iter().any(|&x| x != last) {
        return Err(format!(
            "juxmem under load: version {} is not the last put",
            g.version()
        )
        .into());
    }
    Ok((idle, loaded))
}
