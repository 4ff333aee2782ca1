//! Multi-rank tests: example programs run under `mpirun` at 1 to 4 ranks, each with a timeout.

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
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    let against = |b: &str| {
        lines
            .iter()
            .filter(|l| l.contains(b) && l.contains(" ratio="))
            .count()
    };
    assert_eq!(against("-vs-alltoallv "), 3, "{}", out.stdout);
    assert_eq!(against("-vs-memcpy "), 3, "{}", out.stdout);
}
