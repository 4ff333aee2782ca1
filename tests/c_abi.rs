//! The C ABI and the Fortran module, tested from the outside: the header is current (and the
//! check catches a stale one), C and Fortran programs build without warnings against the
//! installed library, the README's programs build exactly as shown and run, the error paths
//! return their documented codes, and a mixed pipeline (Rust stage 1, C stage 2, Fortran
//! stage 3) produces exactly the final fields of the all-Rust one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::federation::LocalFederation;
use common::mpirun::{example, mpi_env, run_ok, Output};
use common::repo;

const LIMIT: Duration = Duration::from_secs(300);

fn run(cmd: Command, what: &str) -> Output {
    run_ok(cmd, what, LIMIT)
}

/// `mpirun -np NP PROG ARGS` (one of the built programs) in cluster A of `fed`.
fn mpirun_in(fed: &LocalFederation, np: u32, prog: &str, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    fed.env(&mut cmd, "A");
    cmd.args(["-np", &np.to_string()])
        .arg(built().bin.join(prog))
        .args(args);
    run(cmd, prog)
}

fn shell(script: &str, dir: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-ec").arg(script).current_dir(dir);
    mpi_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, script)
}

/// The library installed once for all tests here, and a directory of built programs.
struct Built {
    prefix: PathBuf,
    bin: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo().join("target").join("c-abi-test");
        let _ = std::fs::remove_dir_all(&root);
        let (prefix, bin) = (root.join("prefix"), root.join("bin"));
        std::fs::create_dir_all(&bin).unwrap();
        let mut install = Command::new(repo().join("ci/install-lib"));
        install.arg(&prefix);
        run(install, "ci/install-lib");
        let pc = [("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig").display().to_string())];
        let ffi = repo().join("ffi");
        // The examples and tests, with every warning an error.
        shell(
            &format!(
                "cc -O2 -std=c11 -Wall -Wextra -Werror -ffp-contract=off {e}/examples/weather_stage2.c $(pkg-config --cflags --libs juxmem) -o weather_stage2\n\
                 cc -std=c11 -Wall -Wextra -Werror {e}/tests/c/errors.c $(pkg-config --cflags --libs juxmem) -o errors\n\
                 cc -std=c11 -Wall -Wextra -Werror {e}/tests/c/errors.c $(pkg-config --cflags juxmem) {p}/lib/libjuxmem.a $(pkg-config --libs mpi-c) -lpthread -ldl -lm -o errors_static\n\
                 mpifort -O2 -Wall -Werror -ffp-contract=off {e}/examples/weather_stage3.f90 $(pkg-config --cflags --libs juxmem-fortran) -o weather_stage3\n\
                 mpifort -Wall -Werror {e}/tests/fortran/search.f90 $(pkg-config --cflags --libs juxmem-fortran) -o search_f\n\
                 cc -O2 -std=c11 -Wall -Wextra -Werror {e}/examples/checkpoint.c $(pkg-config --cflags --libs juxmem) -o checkpoint_c\n\
                 cc -O2 -std=c11 -Wall -Wextra -Werror {e}/examples/nonblocking.c $(pkg-config --cflags --libs juxmem) -o nonblocking_c\n\
                 mpifort -O2 -Wall -Werror {e}/examples/nonblocking.f90 $(pkg-config --cflags --libs juxmem-fortran) -o nonblocking_f\n\
                 mpifort -O2 -Wall -Werror {e}/examples/checkpoint.f90 $(pkg-config --cflags --libs juxmem-fortran) -o checkpoint_f",
                e = ffi.display(),
                p = prefix.display()
            ),
            &bin,
            &pc,
        );
        // The README's programs, written out and compiled with the README's own commands.
        let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
        let section = readme
            .split("## Using juxmem from C and Fortran")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a 'Using juxmem from C and Fortran' section");
        let block = |lang: &str| -> Vec<String> {
            section
                .split(&format!("```{lang}\n"))
                .skip(1)
                .map(|b| b.split("```").next().unwrap().to_string())
                .collect()
        };
        let (c, f) = (block("c"), block("fortran"));
        assert_eq!((c.len(), f.len()), (1, 1), "one C and one Fortran program in the README");
        std::fs::write(bin.join("hello.c"), &c[0]).unwrap();
        std::fs::write(bin.join("hello.f90"), &f[0]).unwrap();
        let commands: Vec<String> = block("sh")
            .iter()
            .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.starts_with("cc ") || l.starts_with("mpifort "))
            .collect();
        assert_eq!(commands.len(), 2, "the README shows how to compile each program: {commands:?}");
        shell(&commands.join("\n"), &bin, &pc);
        Built { prefix, bin }
    })
}

#[test]
fn header_is_current_and_the_check_catches_a_stale_one() {
    run(
        Command::new(repo().join("ci/install-tools")),
        "ci/install-tools",
    );
    let mut check = Command::new(repo().join("ci/check-header"));
    check.current_dir(repo());
    run(check, "ci/check-header");
    // Change a signature in a copy of the sources: the same generation differs from the
    // committed header, so ci/check-header would fail.
    let tmp = std::env::temp_dir().join(format!("juxmem-header-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    for f in std::fs::read_dir(repo().join("ffi/src")).unwrap().flatten() {
        std::fs::copy(f.path(), tmp.join(f.file_name())).unwrap();
    }
    let layout = std::fs::read_to_string(tmp.join("layout.rs")).unwrap();
    let changed = layout.replacen(
        "    ndims: u32,\n    shape: *const u64,",
        "    ndims: u64,\n    shape: *const u64,",
        1,
    );
    assert_ne!(layout, changed, "the signature to change was not found");
    std::fs::write(tmp.join("layout.rs"), changed).unwrap();
    let out_h = tmp.join("juxmem.h");
    let mut gen = Command::new(repo().join("target/tools/bin/cbindgen"));
    gen.args(["--quiet", "--config"])
        .arg(repo().join("ffi/cbindgen.toml"))
        .arg("--output")
        .arg(&out_h)
        .arg(tmp.join("lib.rs"));
    run(gen, "cbindgen on the changed copy");
    let diff = Command::new("diff")
        .arg(repo().join("include/juxmem.h"))
        .arg(&out_h)
        .output()
        .unwrap();
    assert!(
        !diff.status.success(),
        "a changed signature must change the header"
    );
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("uint64_t ndims"), "{text}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn fortran_constants_match_the_header() {
    let header = std::fs::read_to_string(repo().join("include/juxmem.h")).unwrap();
    let module = std::fs::read_to_string(repo().join("ffi/fortran/juxmem.f90")).unwrap();
    let mut h: Vec<(String, i64)> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define JUXMEM_"))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (format!("JUXMEM_{k}"), v)))
        .collect();
    let mut f: Vec<(String, i64)> = module
        .lines()
        .filter_map(|l| l.trim().strip_prefix("integer, parameter, public :: "))
        .filter_map(|l| l.split_once(" = "))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k.trim().to_string(), v)))
        .collect();
    h.sort();
    f.sort();
    assert!(h.len() >= 40, "{h:?}");
    assert_eq!(
        h, f,
        "the Fortran module's constants differ from the header's"
    );
}

#[test]
fn error_paths_return_their_documented_codes() {
    for prog in ["errors", "errors_static"] {
        // Each run creates the same names: a federation of its own.
        let fed = LocalFederation::start(&format!("c-{prog}"), &[("A", 0)]);
        let out = mpirun_in(&fed, 1, prog, &[]);
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("ERRORS"))
            .unwrap_or_default()
            .to_string();
        assert!(
            line.starts_with("ERRORS ok") && line.ends_with("failures=0"),
            "{prog}: {}",
            out.stdout
        );
        eprintln!("{prog}: {line}");
    }
}

#[test]
fn fortran_searches_by_name_type_shape_and_attributes() {
    let fed = LocalFederation::start("f-search", &[("A", 0)]);
    let out = mpirun_in(&fed, 1, "search_f", &[]);
    assert!(
        out.stdout.contains("SEARCH ok failures=0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Runs checkpoint example `prog` (C or Fortran) on 2 ranks in a federation of its own: it
/// checkpoints a field, restores it in another layout and counts the elements that differ.
fn checkpoint_example_restores_every_element(fed_name: &str, prog: &str) {
    let fed = LocalFederation::start(fed_name, &[("A", 0)]);
    let dir = fed.dir().join("ckpt");
    let out = mpirun_in(&fed, 2, prog, &[dir.as_os_str()]);
    assert!(
        out.stdout.contains("CHECKPOINT version=1 wrong=0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // The checkpoint was written where it was asked to be.
    assert!(dir.join("manifest").exists(), "{}", dir.display());
    // The namespace's too: its two arrays (the field and its restored copy), read back whole
    // from the namespace's copy, whose destroy needed the confirmation.
    let ns = if prog.ends_with("_c") {
        "NAMESPACE restored=2 wrong=0 busy=1"
    } else {
        "NAMESPACE wrong=0 busy=1"
    };
    assert!(out.stdout.contains(ns), "{}\n{}", out.stdout, out.stderr);
    let m =
        juxmem::array::checkpoint::NamespaceManifest::read(&dir.with_file_name("ckpt-ns")).unwrap();
    assert_eq!(m.arrays.len(), 2, "{m:?}");
}

#[test]
fn the_c_checkpoint_example_restores_every_element_in_another_layout() {
    checkpoint_example_restores_every_element("c-checkpoint", "checkpoint_c");
}

#[test]
fn the_fortran_checkpoint_example_restores_every_element_in_another_layout() {
    checkpoint_example_restores_every_element("f-checkpoint", "checkpoint_f");
}

/// Runs non-blocking example `prog` (C or Fortran) on 2 ranks: puts and gets in flight
/// together, an acquire_read completed after a computation, every element checked.
fn nonblocking_example_delivers_every_element(fed_name: &str, prog: &str) {
    let fed = LocalFederation::start(fed_name, &[("A", 0)]);
    let out = mpirun_in(&fed, 2, prog, &[]);
    assert!(
        out.stdout.contains("NONBLOCKING requests=10 wrong=0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn the_c_nonblocking_example_delivers_every_element() {
    nonblocking_example_delivers_every_element("c-nonblocking", "nonblocking_c");
}

#[test]
fn the_fortran_nonblocking_example_delivers_every_element() {
    nonblocking_example_delivers_every_element("f-nonblocking", "nonblocking_f");
}

#[test]
fn readme_programs_run_in_a_federation() {
    let b = built();
    let fed = LocalFederation::start("c-hello", &[("A", 0)]);
    for prog in ["hello_c", "hello_f"] {
        let out = mpirun_in(&fed, 2, prog, &[]);
        let ok = out
            .stdout
            .matches("elements read back in cyclic layout, 0 wrong")
            .count();
        assert_eq!(ok, 2, "{prog}:\n{}", out.stdout);
    }
    assert!(b.prefix.join("include/juxmem.mod").exists());
}

#[test]
fn mixed_rust_c_fortran_pipeline_gives_the_all_rust_fields() {
    let b = built();
    let weather = example("weather");
    let dir = std::env::temp_dir().join(format!("juxmem-mixed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = dir.join("mixed.pipeline");
    let (w, o) = (weather.display(), dir.display());
    let (c, f) = (b.bin.join("weather_stage2"), b.bin.join("weather_stage3"));
    std::fs::write(
        &pipeline,
        format!(
            "federation mixed-test\ncluster A1 providers=1\ncluster A2 providers=1\ncluster A3 providers=1\n\
             stage A1 np=2 {w} --stage 1 --cycles 2 --out {o}\n\
             stage A2 np=3 {} 2\n\
             stage A3 np=2 {} 2\n\
             stage A3 np=1 {w} --stage verify --cycles 2\n",
            c.display(),
            f.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_juxmem"));
    mpi_env(&mut cmd);
    cmd.args(["launch", pipeline.to_str().unwrap(), "--timeout", "240"]);
    let out = run(cmd, "the mixed pipeline");
    for want in [
        "stage 2 (C) cycle 1: day 1 version 2 received, day 2 released as version 2",
        "stage 3 (Fortran) cycle 1: day 2 version 2 received, day 3 released as version 2",
        "stage verify cycle 0: final field (day 3 version 1) read back: max |error| vs single process = 0.000e0",
        "stage verify cycle 1: final field (day 3 version 2) read back: max |error| vs single process = 0.000e0",
        "WEATHER stage verify verified: 2 cycles",
        "launch: all stages succeeded",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?}:\n{}", out.stdout);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
