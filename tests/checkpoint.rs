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
