//! Runs example programs under `mpirun` from tests, always with a timeout.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The profile directory the running test was built in (`target/debug` or `target/release`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent() // deps
        .and_then(|p| p.parent())
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// Builds example `name` in the test's profile and returns its path.
pub fn example(name: &str) -> PathBuf {
    let dir = profile_dir();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--example", name]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    dir.join("examples").join(name)
}

/// The environment every `mpirun` here needs on a small shared machine, run as root.
pub fn mpi_env(cmd: &mut Command) {
    // Each mpirun its own session directory: Open MPI's shared one races when several start
    // at once ("File exists" in session_dir.c).
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let session = std::env::temp_dir().join(format!("juxmem-mpi-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&session);
    cmd.env("OMPI_MCA_orte_tmpdir_base", &session);
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl", "^openib")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_mpi_yield_when_idle", "1")
        .env("OMPI_MCA_hwloc_base_binding_policy", "none");
}

/// Output of a finished run.
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `mpirun -np <np> <program> <args>` and kills it (by PID) after `timeout`.
pub fn mpirun(np: u32, program: &PathBuf, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    cmd.arg("-np").arg(np.to_string()).arg(program).args(args);
    run_with_timeout(cmd, timeout)
}

/// Runs `mpirun <args>` (for MPMD launches) and kills it (by PID) after `timeout`.
pub fn mpirun_args(args: &[String], timeout: Duration) -> Output {
    let mut cmd = Command::new("mpirun");
    mpi_env(&mut cmd);
    cmd.args(args);
    run_with_timeout(cmd, timeout)
}

/// Runs `cmd`, collecting its output; on timeout sends SIGTERM (mpirun then stops its ranks),
/// then SIGKILL, and panics.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let described = format!("{cmd:?}");
    // The session directory `mpi_env` made, removed once the run is over.
    let session = cmd
        .get_envs()
        .find(|(k, _)| *k == "OMPI_MCA_orte_tmpdir_base")
        .and_then(|(_, v)| v.map(std::path::PathBuf::from));
    struct Cleanup(Option<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    let _cleanup = Cleanup(session);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out_t, err_t) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > timeout {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (
                out_t.join().unwrap_or_default(),
                err_t.join().unwrap_or_default(),
            );
            panic!("{described} timed out after {timeout:?}\nstdout:\n{o}\nstderr:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        success: status.success(),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Fails the test with both outputs unless the run succeeded.
pub fn check(out: &Output, what: &str) {
    assert!(
        out.success,
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

/// [`run_with_timeout`], failing the test unless the command succeeds.
pub fn run_ok(cmd: Command, what: &str, timeout: Duration) -> Output {
    let out = run_with_timeout(cmd, timeout);
    check(&out, what);
    out
}
