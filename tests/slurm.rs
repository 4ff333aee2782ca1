//! The Slurm example (`examples/slurm/`), run here through its stand-ins for `sbatch` and
//! `srun` (`examples/slurm/fake/`), with the real `juxmem` command and weather example: the
//! weather pipeline as three concurrent cluster jobs (each starts its manager and daemons,
//! waits for the others, runs its stage, lingers until every stage is over, stops what it
//! started) and a fourth that reads the final fields back once they are over, a failing stage failing its job, and a cancelled job stopping its stage and
//! daemons. The scripts also pass `bash -n` and shellcheck.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mpirun::example;
use common::repo;

fn scripts() -> Vec<PathBuf> {
    let s = repo().join("examples/slurm");
    vec![
        s.join("juxmem-cluster.sbatch"),
        s.join("submit-weather.sh"),
        s.join("fake/srun"),
        s.join("fake/sbatch"),
    ]
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a process this test started (a job or a step it recorded), by PID.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The PIDs a job's output says it started (`started ... (pid N)`).
fn started_pids(out: &str) -> Vec<u32> {
    out.lines()
        .filter(|l| l.contains(": started "))
        .filter_map(|l| l.split("(pid ").nth(1))
        .filter_map(|r| r.split(')').next())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The processes whose `JUXMEM_FEDERATION_DIR` lies under `dir` (daemons and ranks of the
/// federations there), from /proc.
fn members_of(dir: &Path) -> Vec<u32> {
    let want = format!("JUXMEM_FEDERATION_DIR={}", dir.display());
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env
                .split(|&b| b == 0)
                .any(|v| v.starts_with(want.as_bytes()))
            {
                found.push(pid);
            }
        }
    }
    found
}

/// A scratch directory of fake Slurm jobs: their ids, PIDs and exit statuses. On drop, every
/// job and every process a job logged as started that is still alive is stopped, by PID.
struct Jobs {
    root: PathBuf,
    outputs: Vec<PathBuf>,
}

impl Jobs {
    fn new(name: &str) -> Jobs {
        let root = std::env::temp_dir().join(format!("juxmem-slurm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("jobs")).unwrap();
        Jobs {
            root,
            outputs: vec![],
        }
    }

    /// A command with the fake Slurm and `juxmem` first on PATH, the MPI settings of this small
    /// machine, and nothing of the caller's federation.
    fn command(&self, program: &Path) -> Command {
        let fake = repo().join("examples/slurm/fake");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_juxmem"));
        let path = format!(
            "{}:{}:{}",
            fake.display(),
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env("PATH", path)
            .env("FAKE_SLURM_DIR", self.root.join("jobs"))
            .env("FAKE_SLURM_TIME_LIMIT", "300")
            .env("JUXMEM_INTERFACE", "lo")
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl", "^openib")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("OMPI_MCA_mpi_yield_when_idle", "1")
            .env("OMPI_MCA_hwloc_base_binding_policy", "none")
            .env_remove("OMPI_MCA_orte_tmpdir_base")
            .env_remove("JUXMEM_FEDERATION")
            .env_remove("JUXMEM_FEDERATION_DIR")
            .env_remove("JUXMEM_FEDERATION_ID")
            .env_remove("JUXMEM_CLUSTER")
            .env_remove("JUXMEM_BIN");
        cmd
    }

    /// Runs a submitting command (it returns at once, the jobs running in the background) and
    /// returns the job ids it printed.
    fn submit(&mut self, mut cmd: Command) -> Vec<String> {
        let out = cmd.output().expect("run the submitting command");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "submitting failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Vec<String> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("Submitted batch job "))
            .map(str::to_string)
            .collect();
        assert!(!ids.is_empty(), "no job submitted:\n{stdout}");
        ids
    }

    fn job_file(&self, id: &str, ext: &str) -> PathBuf {
        self.root.join("jobs").join(format!("{id}.{ext}"))
    }

    fn pid(&self, id: &str) -> Option<u32> {
        std::fs::read_to_string(self.job_file(id, "pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Every output file of the jobs so far, concatenated (for failure messages).
    fn all_output(&self) -> String {
        self.outputs
            .iter()
            .map(|p| {
                format!(
                    "==> {} <==\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the jobs to end; returns their exit statuses.
    fn wait(&self, ids: &[String], limit: Duration) -> Vec<i32> {
        let start = Instant::now();
        loop {
            let rcs: Vec<Option<i32>> = ids
                .iter()
                .map(|id| {
                    std::fs::read_to_string(self.job_file(id, "rc"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                })
                .collect();
            if rcs.iter().all(Option::is_some) {
                return rcs.into_iter().map(Option::unwrap).collect();
            }
            assert!(
                start.elapsed() < limit,
                "jobs {ids:?} not over within {limit:?}\n{}",
                self.all_output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        let mut pids: Vec<u32> = vec![];
        if let Ok(entries) = std::fs::read_dir(self.root.join("jobs")) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "pid") {
                    if let Some(p) = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        pids.push(p);
                    }
                }
            }
        }
        for o in &self.outputs {
            pids.extend(started_pids(
                &std::fs::read_to_string(o).unwrap_or_default(),
            ));
        }
        // And any process of this test's federations left (a daemon a broken script lost).
        pids.extend(members_of(&self.root));
        let left: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
        for &p in &left {
            signal(p, libc::SIGTERM);
        }
        let start = Instant::now();
        while left.iter().any(|&p| alive(p)) && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for &p in &left {
            if alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("fake Slurm jobs kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// What every job must show about its daemons once it is over: each started one stopped (by
/// SIGTERM, within the wait), none alive, and its manager's contact file gone (a manager
/// removes it when it stops cleanly).
fn check_stopped(out: &str, federation: &Path, cluster: &str, steps: usize) {
    let pids = started_pids(out);
    assert_eq!(pids.len(), steps, "daemon steps started:\n{out}");
    for p in &pids {
        assert!(!alive(*p), "pid {p} still alive after the job:\n{out}");
    }
    for what in ["manager", "provider daemons"].into_iter().take(steps) {
        assert!(
            out.contains(&format!("stopped {what} (pid ")),
            "{cluster}: {what} not stopped:\n{out}"
        );
    }
    assert!(
        !federation.join(format!("{cluster}.manager")).exists(),
        "{cluster}.manager left behind:\n{out}"
    );
}

/// No process of the federation in `dir` is left: every daemon and rank is gone.
fn check_none_left(dir: &Path) {
    let left = members_of(dir);
    assert!(
        left.is_empty(),
        "processes of {} still running: {left:?}",
        dir.display()
    );
}

#[test]
fn scripts_pass_bash_n_and_shellcheck() {
    for s in scripts() {
        let out = Command::new("bash").arg("-n").arg(&s).output().unwrap();
        assert!(
            out.status.success(),
            "bash -n {}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match Command::new("shellcheck").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let out = Command::new("shellcheck").args(scripts()).output().unwrap();
            assert!(
                out.status.success(),
                "shellcheck:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        _ => eprintln!("SKIPPED shellcheck: not installed (ci/install-deps installs it)"),
    }
}

#[test]
fn weather_pipeline_runs_as_three_slurm_jobs() {
    let weather = example("weather");
    let mut jobs = Jobs::new("weather");
    let run = jobs.root.join("run");
    let mut cmd = jobs.command(&repo().join("examples/slurm/submit-weather.sh"));
    cmd.arg(&run).env("WEATHER", &weather);
    let t0 = Instant::now();
    let ids = jobs.submit(cmd);
    assert_eq!(ids.len(), 4, "one job per cluster");
    for (cluster, id) in ["A1", "A2", "A3", "V"].iter().zip(&ids) {
        jobs.outputs.push(run.join(format!("{cluster}-{id}.out")));
    }
    let rcs = jobs.wait(&ids, Duration::from_secs(420));
    let all = jobs.all_output();
    assert_eq!(rcs, vec![0, 0, 0, 0], "every job succeeds\n{all}");
    let federation = run.join("federation");
    for (k, cluster) in ["A1", "A2", "A3"].iter().enumerate() {
        let out = std::fs::read_to_string(&jobs.outputs[k]).unwrap();
        let stage = k + 1;
        for want in [
            format!("juxmem-cluster {cluster} "),
            format!("cluster {cluster} ready; waiting for clusters A1,A2,A3,V"),
            format!("stage on {} ranks (srun): ", [2, 3, 2][k]),
            "stage exit status 0".to_string(),
            "exit status 0".to_string(),
        ] {
            assert!(out.contains(&want), "{cluster}: missing {want:?}:\n{out}");
        }
        // The stage ran only once every cluster was ready, and the daemons were stopped only
        // once every stage was over.
        let pos = |s: &str| {
            out.find(s)
                .unwrap_or_else(|| panic!("{cluster}: no {s:?}:\n{out}"))
        };
        assert!(pos("stage on ") > pos("waiting for clusters"));
        assert!(pos("stopped manager") > pos("waiting for the stages of clusters"));
        check_stopped(&out, &federation, cluster, 2);
        assert_eq!(
            std::fs::read_to_string(federation.join(format!("{cluster}.finished")))
                .unwrap()
                .trim(),
            "0"
        );
        // The stage's own check: its fields equal the single-process model's, every cycle.
        let verified = format!("WEATHER stage {stage} verified: 4 cycles");
        assert!(
            out.contains(&verified),
            "{cluster}: missing {verified:?}:\n{out}"
        );
        assert_eq!(
            out.matches("max |error| vs single process = 0.000e0")
                .count(),
            if stage == 1 { 4 } else { 8 },
            "{cluster}:\n{out}"
        );
    }
    // Cluster V (no daemons) read every final field back, from A3's daemons, once the three
    // stages were over: they kept the data until then.
    let out = std::fs::read_to_string(&jobs.outputs[3]).unwrap();
    let pos = |s: &str| out.find(s).unwrap_or_else(|| panic!("V: no {s:?}:\n{out}"));
    assert!(
        pos("stage on 1 ranks")
            > pos("waiting for the stages of clusters A1,A2,A3 to finish first"),
        "{out}"
    );
    assert!(
        out.contains("WEATHER stage verify verified: 4 cycles"),
        "{out}"
    );
    assert_eq!(
        out.matches("max |error| vs single process = 0.000e0")
            .count(),
        4,
        "{out}"
    );
    check_stopped(&out, &federation, "V", 1);
    check_none_left(&federation);
    // A3 runs two provider daemons (day 3 keeps two copies there).
    let logs = std::fs::read_to_string(federation.join("logs/A3-providers.log")).unwrap();
    assert_eq!(
        logs.matches("offering 1073741824 bytes").count(),
        2,
        "{logs}"
    );
    for cycle in 0..4 {
        for day in [1, 2, 3] {
            let png = run.join(format!("out/day{day}_cycle{cycle}.png"));
            assert!(png.exists(), "{} missing\n{all}", png.display());
        }
    }
    eprintln!(
        "weather pipeline as three fake Slurm jobs: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_failing_stage_fails_its_job_and_a_cancelled_job_stops_everything() {
    let mut jobs = Jobs::new("fail");
    let sbatch_script = repo().join("examples/slurm/juxmem-cluster.sbatch");
    let submit = |jobs: &mut Jobs, cluster: &str, stage: &[&str]| -> (String, PathBuf) {
        let federation = jobs.root.join(format!("fed-{cluster}"));
        // The cluster's credentials where its processes look (as submit-weather.sh makes them).
        juxmem::credentials::local_federation(
            &juxmem::config::local_credentials(&federation),
            "slurm-fail",
            &[cluster],
        )
        .unwrap();
        let mut cmd = jobs.command(&repo().join("examples/slurm/fake/sbatch"));
        cmd.env("JUXMEM_FEDERATION_DIR", &federation)
            .args(["--nodes=1", "--ntasks=1"])
            .arg(format!("--output={}/{cluster}-%j.out", jobs.root.display()))
            .arg(&sbatch_script)
            .args(["--cluster", cluster, "--capacity", "64MiB", "--"])
            .args(stage);
        let id = jobs.submit(cmd).remove(0);
        let out = jobs.root.join(format!("{cluster}-{id}.out"));
        jobs.outputs.push(out.clone());
        (id, federation)
    };
    let (failing, fed_f) = submit(&mut jobs, "F", &["false"]);
    // C's stage marks when it runs (under the step's own process), then sleeps.
    let running = jobs.root.join("C-stage-running");
    let mark = format!("touch {}; exec sleep 300", running.display());
    let (cancelled, fed_c) = submit(&mut jobs, "C", &["bash", "-c", &mark]);

    // Cancel C once its stage runs: SIGTERM to the job, as scancel sends.
    let out_c = jobs.outputs[1].clone();
    let start = Instant::now();
    while !running.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stage of C never started\n{}",
            jobs.all_output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(jobs.pid(&cancelled).expect("job pid"), libc::SIGTERM);

    let rcs = jobs.wait(
        &[failing.clone(), cancelled.clone()],
        Duration::from_secs(120),
    );
    let out_f = std::fs::read_to_string(&jobs.outputs[0]).unwrap();
    assert_eq!(rcs[0], 1, "the job's status is its stage's:\n{out_f}");
    assert!(out_f.contains("stage exit status 1"), "{out_f}");
    assert_eq!(
        std::fs::read_to_string(fed_f.join("F.finished"))
            .unwrap()
            .trim(),
        "1"
    );
    check_stopped(&out_f, &fed_f, "F", 2);
    check_none_left(&fed_f);

    let out_c = std::fs::read_to_string(&out_c).unwrap();
    assert_ne!(rcs[1], 0, "a cancelled job fails:\n{out_c}");
    assert!(out_c.contains("stopped stage (pid "), "{out_c}");
    assert!(out_c.contains("exit status 143"), "{out_c}");
    assert!(!fed_c.join("C.finished").exists(), "{out_c}");
    check_stopped(&out_c, &fed_c, "C", 2);
    check_none_left(&fed_c);
    // The stage (`sleep 300`) is gone too.
    let stage = out_c
        .lines()
        .find(|l| l.contains("stopped stage (pid "))
        .and_then(|l| l.split("(pid ").nth(1))
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse::<u32>().ok())
        .expect("the stage's pid");
    assert!(!alive(stage));
}
