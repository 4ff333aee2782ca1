//! Several hosts on this machine for tests: `ci/netlab` network namespaces behind a router with
//! rate-limited links and a delaying relay. Everything a test starts in them is stopped by PID,
//! and the namespaces are deleted, when the [`Lab`] is dropped (also on a failed assertion).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::federation::juxmem_bin;
use super::mpirun::example;
use super::repo;

/// Hosts `1..=n`, each a network namespace with address `198.18.<k>.2` on `jxnet0`.
pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    daemons: Vec<(String, Child)>,
}

impl Lab {
    /// Brings `hosts` hosts up with `rate` links and `delay_ms` each way between hosts; `None`
    /// (after printing SKIPPED and the reason) where this machine refuses network namespaces.
    pub fn up(tag: &str, hosts: u32, rate: &str, delay_ms: u32) -> Option<Lab> {
        let name = format!("jx{}{tag}", std::process::id() % 100_000);
        let probe = format!("{name}-probe");
        match Command::new("ip").args(["netns", "add", &probe]).output() {
            Ok(o) if o.status.success() => {
                let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            }
            Ok(o) => {
                println!(
                    "SKIPPED: cannot create network namespaces here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                println!("SKIPPED: cannot run `ip` to create network namespaces: {e}");
                return None;
            }
        }
        let relay = example("delay_relay");
        let target = relay
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .expect("target/<profile>/examples");
        let dir = std::env::temp_dir().join(format!("juxmem-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            name,
            dir,
            daemons: vec![],
        };
        let out = Command::new(repo().join("ci/netlab"))
            .args([
                "up",
                &lab.name,
                &hosts.to_string(),
                rate,
                &delay_ms.to_string(),
            ])
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("run ci/netlab");
        assert!(
            out.status.success(),
            "ci/netlab up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(lab)
    }

    /// The namespace of host `k`.
    pub fn host(&self, k: u32) -> String {
        format!("{}-h{k}", self.name)
    }

    /// Host `k`'s address.
    pub fn addr(k: u32) -> String {
        format!("198.18.{k}.2")
    }

    /// `program` to run on host `k`, with no juxmem setting inherited from the test's
    /// environment.
    pub fn command(&self, k: u32, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(k)]).arg(program);
        for (key, _) in std::env::vars() {
            if key.starts_with("JUXMEM_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Starts `juxmem ARGS` on host `k` in the background (stopped when the lab is dropped),
    /// its error output in `<dir>/<log>.log`.
    pub fn spawn_juxmem(&mut self, k: u32, args: &[&str], env: &[(&str, String)], log: &str) {
        let mut cmd = self.command(k, &juxmem_bin());
        cmd.args(args).envs(env.iter().map(|(k, v)| (*k, v)));
        let err = std::fs::File::create(self.dir.join(format!("{log}.log"))).unwrap();
        cmd.stdout(Stdio::null()).stderr(err);
        // `ip netns exec` execs the program: the child's PID is juxmem's.
        let child = cmd.spawn().expect("start juxmem in a namespace");
        self.daemons.push((log.to_string(), child));
    }

    /// A daemon's log.
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|(name, _)| format!("--- {name}\n{}", self.log(name)))
            .collect()
    }

    /// Waits up to `limit` for `ready`, panicking with the logs.
    pub fn wait_for(&self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ready() {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.daemons {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let start = Instant::now();
        for (_, child) in &mut self.daemons {
            while child.try_wait().ok().flatten().is_none() && start.elapsed().as_secs() < 5 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(repo().join("ci/netlab"))
            .args(["down", &self.name])
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
