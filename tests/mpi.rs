//! Multi-rank tests: example programs run under `mpirun` at 1 to 4 ranks, each with a timeout;
//! bounded MPI waits (a rank missing from an exchange or a collective) at 3 ranks.

mod common;

use std::time::Duration;

use common::mpirun::{example, mpirun};

#[test]
fn redistribution_at_one_to_four_ranks() {
    let prog = example("redist_check");
    for np in 1..=4 {
        let out = mpirun(np, &prog, &[], Duration::from_secs(300));
        assert!(
            out.success,
            "redist_check at {np} ranks failed\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("REDIST-CHECK"))
            .unwrap_or_else(|| panic!("no result line at {np} ranks:\n{}", out.stdout));
        assert!(line.contains(&format!("ranks={np} ")), "{line}");
        assert!(line.ends_with("failures=0"), "{line}");
        eprintln!("{line}");
    }
}

#[test]
fn three_stage_mpmd_pipeline_verifies_every_field() {
    let prog = example("pipeline_mpmd");
    let p = prog.to_string_lossy().to_string();
    let mut args: Vec<String> = Vec::new();
    for (i, (np, stage)) in [(2, 1), (3, 2), (2, 3)].into_iter().enumerate() {
        if i > 0 {
            args.push(":".into());
        }
        args.extend([
            "-np".into(),
            np.to_string(),
            p.clone(),
            "--stage".into(),
            stage.to_string(),
        ]);
        args.extend(["--cycles".into(), "2".into()]);
    }
    let out = common::mpirun::mpirun_args(&args, Duration::from_secs(300));
    assert!(
        out.success,
        "pipeline failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("PIPELINE verified: 2 cycles"),
        "{}",
        out.stdout
    );
    // Every stage reported every cycle, with no error.
    let reports = out
        .stdout
        .lines()
        .filter(|l| l.contains("max |error| = 0.000e0"))
        .count();
    assert_eq!(reports, 2 * 5, "{}", out.stdout);
}

#[test]
fn redistribution_benchmark_runs_and_checks_its_results() {
    let prog = example("bench_redist");
    let out = mpirun(2, &prog, &["--quick"], Duration::from_secs(300));
    assert!(
        out.success,
        "bench failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("BENCH name="))
        .collect();
    assert_eq!(lines.len(), 10, "{}", out.stdout);
    let against = |b: &str| {
        lines
            .iter()
            .filter(|l| l.contains(b) && l.contains(" ratio="))
            .count()
    };
    assert_eq!(against("-vs-best-mpi "), 5, "{}", out.stdout);
    assert_eq!(against("-vs-memcpy "), 5, "{}", out.stdout);
    // Every case also reports each implementation's median, min and max.
    let details = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("# redist-"))
        .count();
    assert_eq!(details, 5, "{}", out.stdout);
}

/// Runs `mpi_wait_check <mode>` at 3 ranks (MPI waits bounded by `ms` milliseconds); returns
/// the output and how long the job took.
fn wait_check(mode: &str, ms: u64, timeout: Duration) -> (common::mpirun::Output, Duration) {
    let prog = example("mpi_wait_check");
    let start = std::time::Instant::now();
    let out = mpirun(3, &prog, &[mode, "--timeout-ms", &ms.to_string()], timeout);
    (out, start.elapsed())
}

#[test]
fn bounded_mpi_waits_change_no_result_when_everyone_takes_part() {
    // A generous bound: this checks results, not the bound.
    let (out, _) = wait_check("ok", 30_000, Duration::from_secs(120));
    assert!(
        out.success && out.stdout.contains("WAIT-CHECK ok ranks=3"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn an_exchange_missing_a_message_times_out_and_cancels_its_receive() {
    // Rank 1 never sends: without the bound rank 0 waits forever and mpirun is killed here.
    let (out, took) = wait_check("exchange", 1000, Duration::from_secs(60));
    let show = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.success, "{show}");
    let line = |prefix: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line\n{show}"))
            .to_string()
    };
    let timeout = line("WAIT-CHECK exchange-timeout");
    assert!(
        timeout.contains("timed out after 1.000 s: rank 0 waiting for 1 receive (from rank 1)"),
        "{timeout}"
    );
    let waited: f64 = field(&timeout, "waited_s=");
    assert!((1.0..5.0).contains(&waited), "{timeout}");
    let drop = line("WAIT-CHECK exchange-drop");
    // After a timeout the receive is cancelled at once; an early drop waits one bound first.
    assert!(field(&drop, "cancel_s=") < 0.5, "{drop}");
    assert!(
        (1.0..5.0).contains(&field(&drop, "early_drop_s=")),
        "{drop}"
    );
    // Every rank returned and MPI_Finalize did not hang on the cancelled receives.
    assert!(
        out.stdout.contains("WAIT-CHECK exchange done ranks=3"),
        "{show}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}\n{show}");
}

#[test]
fn a_send_that_cannot_complete_aborts_the_job_with_a_message() {
    let (out, took) = wait_check("send-abort", 1000, Duration::from_secs(120));
    let show = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(!out.success, "{show}");
    assert!(
        out.stdout.contains(
            "WAIT-CHECK send-timeout error=timed out after 1.000 s: rank 0 waiting for 1 send \
             (to rank 1)"
        ),
        "{show}"
    );
    assert!(
        out.stderr.contains(
            "juxmem: rank 0 waited 1.0 s for 1 send (to rank 1) of 1 message of an MPI exchange"
        ) && out.stderr.contains("so the job is aborted"),
        "{show}"
    );
    assert!(!out.stdout.contains("without aborting"), "{show}");
    // Rank 1 sleeps 60 s: the job ended long before, aborted.
    assert!(took < Duration::from_secs(30), "took {took:?}\n{show}");
}

#[test]
fn a_rank_skipping_a_collective_makes_the_others_abort_the_job_with_a_message() {
    for (op, what) in [
        ("barrier", "barrier"),
        ("broadcast", "broadcast from the root"),
        ("allgather", "all-gather of lengths"),
        ("max", "maximum reduction"),
    ] {
        let (out, took) = wait_check(&format!("skip-{op}"), 1000, Duration::from_secs(120));
        let show = format!("{op}\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
        assert!(!out.success, "{show}");
        let message = format!(
            "waited 1.0 s in a juxmem collective ({what}): another rank of the job is stuck or \
             dead"
        );
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with("juxmem: rank ") && l.contains(&message)),
            "{show}"
        );
        assert!(!out.stdout.contains("returned after"), "{show}");
        assert!(!out.stdout.contains("was not aborted"), "{show}");
        // The skipping rank sleeps 60 s, mpirun would be killed after 120 s.
        assert!(took < Duration::from_secs(30), "took {took:?}\n{show}");
    }
}

/// The number after `key` in `line` (up to the next space).
fn field(line: &str, key: &str) -> f64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()..];
    rest.split(' ').next().unwrap().parse().unwrap()
}
