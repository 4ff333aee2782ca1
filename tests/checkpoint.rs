//! Checkpoint and restart (issue 12, item 3): a released version written by one job (2 ranks,
//! block layout) and restored by another (3 ranks, cyclic and block-cyclic) under another name,
//! every element checked; a corrupt, a torn and an unfinished checkpoint refused with a typed
//! error naming the file, leaving the name free. Real managers and MPI jobs, bounded.

mod common;

use std::process::Command;
use std::time::Duration;

use common::federation::LocalFederation;
use common::mpirun::{example, mpi_env, run_with_timeout, Output};
use juxmem::array::checkpoint::read_manifest;
use juxmem::ElemType;

const LIMIT: Duration = Duration::from_secs(180);

fn job(fed: &LocalFederation, cluster: &str, np: u32, args: &[&str]) -> Output {
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    fed.env(&mut cmd, cluster);
    cmd.arg("-np")
        .arg(np.to_string())
        .arg(example("fed_check"))
        .args(args);
    run_with_timeout(cmd, LIMIT)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_checkpoint_restores_in_other_layouts_and_bad_ones_are_refused() {
    let fed = LocalFederation::start("ckpt", &[("A", 0), ("B", 0)]);
    let dir = fed.dir().join("ckpt-x");
    let out = job(&fed, "A", 2, &["ckpt-write", dir.to_str().unwrap()]);
    assert!(
        out.success && out.stdout.contains("CKPT written version 1 on 2 ranks"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let m = read_manifest(&dir).unwrap();
    assert_eq!(
        (m.name.as_str(), m.elem, m.version),
        ("ckpt/x", ElemType::F64, 1)
    );
    assert_eq!(m.layout.nprocs(), 2);
    assert_eq!(m.blocks.len(), 2);

    // Another job, another cluster, other layouts.
    for (name, dist) in [("ckpt/y", "cyclic"), ("ckpt/z", "bc5")] {
        let out = job(
            &fed,
            "B",
            3,
            &["ckpt-restore", dir.to_str().unwrap(), name, dist],
        );
        assert!(
            out.success
                && out.stdout.contains(&format!(
                    "CKPT restored 3015 elements on 3 ranks ({dist}), 0 wrong"
                )),
            "{}\n{}",
            out.stdout,
            out.stderr
        );
    }

    // One byte flipped in a block file.
    let bad = fed.dir().join("ckpt-corrupt");
    copy_dir(&dir, &bad);
    let f = bad.join("block-1.bin");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&f, &bytes).unwrap();
    let out = job(
        &fed,
        "B",
        3,
        &["ckpt-refused", bad.to_str().unwrap(), "ckpt/bad"],
    );
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("block-1.bin is corrupt") && out.stdout.contains("InvalidArgument"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("CKPT name free"), "{}", out.stdout);

    // A block file cut short (a copy that did not finish).
    let torn = fed.dir().join("ckpt-torn");
    copy_dir(&dir, &torn);
    let f = torn.join("block-0.bin");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = job(
        &fed,
        "B",
        3,
        &["ckpt-refused", torn.to_str().unwrap(), "ckpt/bad"],
    );
    assert!(
        out.stdout.contains("block-0.bin has") && out.stdout.contains("torn"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("CKPT name free"), "{}", out.stdout);

    // No manifest: an unfinished checkpoint.
    let unfinished = fed.dir().join("ckpt-unfinished");
    copy_dir(&dir, &unfinished);
    std::fs::remove_file(unfinished.join("manifest")).unwrap();
    let out = job(
        &fed,
        "B",
        3,
        &["ckpt-refused", unfinished.to_str().unwrap(), "ckpt/bad"],
    );
    assert!(
        out.stdout.contains("NotFound") && out.stdout.contains("did not finish"),
        "{}",
        out.stdout
    );
}

/// `juxmem launch` of the weather pipeline (three stages and verify), its output.
fn launch_weather(dir: &std::path::Path, label: &str, stage_args: &str, cycles: u64) -> Output {
    let weather = example("weather");
    let pipeline = dir.join(format!("{label}.pipeline"));
    let (w, o) = (weather.display(), dir.display());
    std::fs::write(
        &pipeline,
        format!(
            "federation weather-{label}\ncluster A1 providers=1\ncluster A2 providers=1\ncluster A3 providers=1\n\
             stage A1 np=2 {w} --stage 1 --cycles {cycles} --out {o} {stage_args}\n\
             stage A2 np=3 {w} --stage 2 --cycles {cycles} --out {o} {stage_args}\n\
             stage A3 np=2 {w} --stage 3 --cycles {cycles} --out {o} {stage_args}\n\
             stage A3 np=1 {w} --stage verify --cycles {cycles} {stage_args}\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    mpi_env(&mut cmd);
    cmd.args(["launch", pipeline.to_str().unwrap(), "--timeout", "200"]);
    run_with_timeout(cmd, Duration::from_secs(300))
}

#[test]
fn the_weather_pipeline_restarts_from_its_last_checkpointed_cycle() {
    let dir = std::env::temp_dir().join(format!("juxmem-weather-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("checkpoints");
    // Two cycles, each final field checkpointed; then the whole federation stops.
    let out = launch_weather(
        &dir,
        "first",
        &format!("--checkpoint {}", ckpt.display()),
        2,
    );
    assert!(
        out.success && out.stdout.contains("launch: all stages succeeded"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(ckpt.join("cycle-1/manifest").exists());
    // A new federation resumes after cycle 1: cycles 2 and 3, and the last checkpoint restored
    // into the verify stage's own layout (1 rank) equals the model's.
    let out = launch_weather(&dir, "second", &format!("--restart {}", ckpt.display()), 4);
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    for want in [
        "stage 1: restarting after cycle 1, checkpointed",
        "stage verify cycle 1: final field restored from",
        "stage verify cycle 2: final field (day 3 version 1) read back: max |error| vs single process = 0.000e0",
        "stage verify cycle 3: final field (day 3 version 2) read back: max |error| vs single process = 0.000e0",
        "WEATHER stage verify verified: 2 cycles",
        "launch: all stages succeeded",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?}:\n{}", out.stdout);
    }
    let restored = out
        .stdout
        .lines()
        .find(|l| l.contains("final field restored from"))
        .unwrap();
    assert!(restored.ends_with("= 0.000e0"), "{restored}");
    let _ = std::fs::remove_dir_all(&dir);
}
