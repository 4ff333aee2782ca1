//! The CMake package `ci/install-lib` installs (`PREFIX/lib/cmake/juxmem`): the example
//! project (`examples/cmake`, the README's C and Fortran programs) configures with
//! `find_package(juxmem)`, builds with warnings as errors against `juxmem::juxmem` and
//! `juxmem::fortran`, and its programs run under `mpirun -np 2` in a local federation; a
//! C-only project gets `juxmem::juxmem` without needing Fortran; a version newer than the
//! installed one is refused.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::federation::LocalFederation;
use common::mpirun::{mpi_env, run_ok, run_with_timeout};
use common::repo;

fn cmake_configure(src: &Path, build: &Path, prefix: &Path) -> Command {
    let mut cmd = Command::new("cmake");
    cmd.arg("-S")
        .arg(src)
        .arg("-B")
        .arg(build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()));
    cmd
}

/// The README's program blocks of a language (in the "Using juxmem from C and Fortran" section).
fn readme_program(lang: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Using juxmem from C and Fortran")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a 'Using juxmem from C and Fortran' section");
    section
        .split(&format!("```{lang}\n"))
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no {lang} program in the README"))
        .to_string()
}

#[test]
fn cmake_package_builds_and_runs_the_readme_programs() {
    if Command::new("cmake").arg("--version").output().is_err() {
        // ci/install-deps installs it; ci/test runs that first.
        panic!("cmake is not installed: run ci/install-deps");
    }
    let limit = Duration::from_secs(600);
    let root = std::env::temp_dir().join(format!("juxmem-cmake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let prefix = root.join("prefix");

    // The example's programs are the README's, unchanged.
    let example = repo().join("examples/cmake");
    for (file, lang) in [("hello.c", "c"), ("hello.f90", "fortran")] {
        assert_eq!(
            std::fs::read_to_string(example.join(file)).unwrap(),
            readme_program(lang),
            "examples/cmake/{file} differs from the README's program"
        );
    }

    let mut install = Command::new(repo().join("ci/install-lib"));
    install.arg(&prefix);
    run_ok(install, "ci/install-lib", limit);
    let config = prefix.join("lib/cmake/juxmem");
    assert!(config.join("juxmemConfig.cmake").exists());
    assert!(config.join("juxmemConfigVersion.cmake").exists());

    let build = root.join("build");
    run_ok(
        cmake_configure(&example, &build, &prefix),
        "cmake configure",
        limit,
    );
    let mut make = Command::new("cmake");
    make.arg("--build").arg(&build);
    run_ok(make, "cmake --build", limit);

    let fed = LocalFederation::start("cmake-hello", &[("A", 0)]);
    for prog in ["hello_c", "hello_f"] {
        let mut cmd = Command::new("mpirun");
        mpi_env(&mut cmd);
        fed.env(&mut cmd, "A");
        cmd.args(["-np", "2"]).arg(build.join(prog));
        let out = run_ok(cmd, prog, Duration::from_secs(120));
        for rank in 0..2 {
            let want = format!("rank {rank}: 500 elements read back in cyclic layout, 0 wrong");
            assert!(
                out.stdout.contains(&want),
                "{prog}: missing {want:?}:\n{}",
                out.stdout
            );
        }
    }
    drop(fed);

    // A C-only project: juxmem::juxmem, MPI C only, no Fortran target.
    let conly = root.join("c-only");
    std::fs::create_dir_all(&conly).unwrap();
    std::fs::copy(example.join("hello.c"), conly.join("hello.c")).unwrap();
    std::fs::write(
        conly.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(c_only LANGUAGES C)\n\
         find_package(juxmem 0.1 REQUIRED)\n\
         if(TARGET juxmem::fortran)\n  message(FATAL_ERROR \"juxmem::fortran without Fortran\")\nendif()\n\
         if(NOT TARGET MPI::MPI_C)\n  message(FATAL_ERROR \"no MPI::MPI_C\")\nendif()\n\
         add_executable(hello_c hello.c)\ntarget_link_libraries(hello_c PRIVATE juxmem::juxmem)\n",
    )
    .unwrap();
    let conly_build = root.join("c-only-build");
    run_ok(
        cmake_configure(&conly, &conly_build, &prefix),
        "cmake configure (C only)",
        limit,
    );
    let mut make = Command::new("cmake");
    make.arg("--build").arg(&conly_build);
    run_ok(make, "cmake --build (C only)", limit);
    assert!(conly_build.join("hello_c").exists());

    // A version newer than the installed one is refused, naming the version found.
    let newer = root.join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(
        newer.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(newer LANGUAGES C)\n\
         find_package(juxmem 0.2 REQUIRED)\n",
    )
    .unwrap();
    let out = run_with_timeout(
        cmake_configure(&newer, &root.join("newer-build"), &prefix),
        limit,
    );
    assert!(
        !out.success,
        "find_package(juxmem 0.2) must fail:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("0.1.0"),
        "the refusal names the installed version:\n{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&root);
}
