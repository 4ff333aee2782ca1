//! Bounded MPI waits, run under `mpirun -np 3` by `tests/mpi.rs`.
//!
//! Usage: `mpi_wait_check <mode> [--timeout-ms N]` (the bound of MPI waits, 1000 by default).
//!
//! - `ok`: the collectives of a communicator's `Group` and an exchange between every pair,
//!   with nobody missing; checks the results. Prints `WAIT-CHECK ok`.
//! - `exchange`: rank 0 receives one message from every other rank, but rank 1 never sends.
//!   Rank 0's `wait_any` returns the others' messages, then `Error::Timeout` naming rank 1;
//!   dropping the exchange cancels the unmatched receive. Then rank 0 posts a receive from
//!   rank 1 again and drops the exchange at once (an early return): the drop waits one bound,
//!   cancels, and returns. Prints `WAIT-CHECK exchange-timeout ...` and `WAIT-CHECK
//!   exchange-drop ...` with the times, and every rank exits 0 (MPI_Finalize does not hang on a
//!   forgotten receive).
//! - `send-abort`: rank 0 sends 8 MiB (more than MPI sends eagerly) to rank 1, which never
//!   receives: `wait_any` times out, and dropping the exchange cannot free the buffer MPI may
//!   still read, so it aborts the job with a message.
//! - `skip-<op>` (op: `barrier`, `broadcast`, `allgather`, `max`): one rank (the root for the
//!   broadcast, rank 1 otherwise) skips the collective and sleeps; the others abort the job
//!   with a message after the bound.

use std::time::{Duration, Instant};

use juxmem::array::Group;
use juxmem::error::Error;
use juxmem::transport::mpi::{check_thread_level, set_wait_timeout, wait_timeout, Exchange};
use mpi::topology::Communicator;

const TAG: i32 = 77;

/// How long a rank that skips a collective or a message pretends to be stuck.
const STUCK: Duration = Duration::from_secs(60);

fn main() {
    let (universe, level) =
        mpi::initialize_with_threading(mpi::Threading::Funneled).expect("MPI initialises once");
    check_thread_level(level).unwrap();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let ms: u64 = args
        .iter()
        .position(|a| a == "--timeout-ms")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("--timeout-ms N"))
        .unwrap_or(1000);
    set_wait_timeout(Duration::from_millis(ms));
    assert_eq!(wait_timeout(), Duration::from_millis(ms));

    let comm = universe.world().duplicate();
    assert!(Communicator::size(&comm) >= 2, "run with at least 2 ranks");
    match mode.as_str() {
        "ok" => ok(&comm),
        "exchange" => exchange(&comm),
        "send-abort" => send_abort(&comm),
        m if m.starts_with("skip-") => skip(&comm, &m["skip-".len()..]),
        m => panic!("unknown mode {m:?}"),
    }
}

/// Everybody takes part: the bounded waits must not change any result.
fn ok<C: Communicator>(comm: &C) {
    let me = Communicator::rank(comm);
    let n = Communicator::size(comm);
    Group::barrier(comm);
    let mut bytes = if me == 0 {
        b"from the root".to_vec()
    } else {
        vec![9; 100]
    };
    comm.broadcast_bytes(0, &mut bytes);
    assert_eq!(bytes, b"from the root");
    let mut empty = if me == 0 { Vec::new() } else { vec![1, 2, 3] };
    comm.broadcast_bytes(0, &mut empty);
    assert!(empty.is_empty());
    // Member r contributes r bytes of value r (rank 0 nothing).
    let all = comm.all_gather_bytes(&vec![me as u8; me as usize]);
    assert_eq!(all.len(), n as usize);
    for (r, b) in all.iter().enumerate() {
        assert_eq!(b, &vec![r as u8; r], "all-gather part of rank {r}");
    }
    assert_eq!(comm.max_u32(me as u32 * 10), (n as u32 - 1) * 10);

    // Every pair exchanges a message of 1000 + sender elements, of value 1000 * sender + i.
    Exchange::scope(comm, TAG, |ex: &mut Exchange<'_, u64>| {
        for peer in (0..n).filter(|&p| p != me) {
            let data: Vec<u64> = (0..1000 + me as u64)
                .map(|i| 1000 * me as u64 + i)
                .collect();
            ex.send(peer, data).unwrap();
            ex.recv(peer, 1000 + peer as usize).unwrap();
        }
        let mut received = 0;
        while let Some(id) = ex.wait_any().unwrap() {
            if ex.is_receive(id) {
                let v = ex.take_received(id).unwrap();
                let from = v[0] / 1000;
                assert_eq!(v.len() as u64, 1000 + from);
                assert!(v
                    .iter()
                    .enumerate()
                    .all(|(i, &x)| x == 1000 * from + i as u64));
                received += 1;
            }
        }
        assert_eq!(received, n - 1);
    });
    Group::barrier(comm);
    if me == 0 {
        println!("WAIT-CHECK ok ranks={n}");
    }
}

/// Rank 1 never sends its message to rank 0.
fn exchange<C: Communicator>(comm: &C) {
    let me = Communicator::rank(comm);
    let n = Communicator::size(comm);
    let limit = wait_timeout();
    if me == 0 {
        // The scope's end completes what is left: the receive from rank 1 is cancelled there,
        // at once (the wait already timed out).
        let (got, err, waited, closed) =
            Exchange::scope(comm, TAG, |ex: &mut Exchange<'_, u32>| {
                for peer in 1..n {
                    ex.recv(peer, 16).unwrap();
                }
                let start = Instant::now();
                let mut got = 0;
                let err = loop {
                    match ex.wait_any() {
                        Ok(Some(_)) => got += 1,
                        Ok(None) => panic!("every receive completed, but rank 1 sent nothing"),
                        Err(e) => break e,
                    }
                };
                (got, err, start.elapsed(), Instant::now())
            });
        let cancel = closed.elapsed();
        assert_eq!(got, n - 2, "the messages of the ranks that sent");
        assert!(
            matches!(err, Error::Timeout { .. }),
            "expected a timeout: {err}"
        );
        assert!(
            waited >= limit,
            "gave up after {waited:?}, before {limit:?}"
        );
        println!(
            "WAIT-CHECK exchange-timeout waited_s={:.3} limit_s={:.3} error={err}",
            waited.as_secs_f64(),
            limit.as_secs_f64()
        );

        // An early return with a receive in flight and no wait yet: the scope's end gives the
        // message its chance (one bound), then cancels the receive.
        let closed = Exchange::scope(comm, TAG + 1, |ex: &mut Exchange<'_, u32>| {
            ex.recv(1, 16).unwrap();
            Instant::now()
        });
        let early = closed.elapsed();
        assert!(early >= limit, "early drop returned after {early:?}");
        println!(
            "WAIT-CHECK exchange-drop cancel_s={:.3} early_drop_s={:.3}",
            cancel.as_secs_f64(),
            early.as_secs_f64()
        );
    } else if me != 1 {
        Exchange::scope(comm, TAG, |ex: &mut Exchange<'_, u32>| {
            ex.send(0, vec![me as u32; 16]).unwrap();
            while ex.wait_any().unwrap().is_some() {}
        });
    }
    // Everybody returns: rank 0 from its timeout, the others at once. A plain blocking MPI
    // barrier, so the ranks waiting for rank 0 here do not count against the bound.
    mpi::collective::CommunicatorCollectives::barrier(comm);
    if me == 0 {
        println!("WAIT-CHECK exchange done ranks={n}");
    }
}

/// Rank 0 sends more than MPI sends eagerly to rank 1, which never receives.
fn send_abort<C: Communicator>(comm: &C) {
    if Communicator::rank(comm) == 0 {
        Exchange::scope(comm, TAG, |ex: &mut Exchange<'_, u8>| {
            ex.send(1, vec![7; 8 << 20]).unwrap();
            let err = ex.wait_any().expect_err("the send cannot complete");
            println!("WAIT-CHECK send-timeout error={err}");
        }); // the scope's end aborts the job
        println!("WAIT-CHECK send-abort dropped without aborting");
        std::process::exit(2);
    }
    if Communicator::rank(comm) == 1 {
        std::thread::sleep(STUCK);
    }
    mpi::collective::CommunicatorCollectives::barrier(comm);
}

/// One rank skips collective `op`; the others must abort the job after the bound.
fn skip<C: Communicator>(comm: &C, op: &str) {
    let me = Communicator::rank(comm);
    let skipper = if op == "broadcast" { 0 } else { 1 };
    if me == skipper {
        std::thread::sleep(STUCK);
        println!("WAIT-CHECK skip-{op}: the job was not aborted");
        std::process::exit(2);
    }
    let start = Instant::now();
    match op {
        "barrier" => Group::barrier(comm),
        "broadcast" => comm.broadcast_bytes(0, &mut vec![1, 2, 3]),
        "allgather" => {
            comm.all_gather_bytes(b"mine");
        }
        "max" => {
            comm.max_u32(5);
        }
        _ => panic!("unknown collective {op:?}"),
    }
    println!(
        "WAIT-CHECK skip-{op}: rank {me} returned after {:?} without rank {skipper}",
        start.elapsed()
    );
    std::process::exit(2);
}
