//! A local federation for tests: managers and provider daemons as child processes of the
//! `juxmem` command, on loopback, in a temporary directory; stopped by PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use juxmem::config::{Config, Rendezvous};

/// A running local federation.
pub struct LocalFederation {
    pub dir: PathBuf,
    pub name: String,
    managers: Vec<Child>,
    providers: Vec<Child>,
}

fn juxmem_bin() -> &'static str {
    env!("CARGO_BIN_EXE_juxmem")
}

impl LocalFederation {
    /// Starts one manager and `providers` provider daemons per cluster.
    pub fn start(name: &str, clusters: &[(&str, u32)]) -> LocalFederation {
        let dir = std::env::temp_dir().join(format!("juxmem-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("federation"), name).unwrap();
        let mut fed = LocalFederation {
            dir,
            name: name.to_string(),
            managers: vec![],
            providers: vec![],
        };
        for (cluster, _) in clusters {
            let child = fed.spawn(
                &format!("{cluster}-manager"),
                &["manager", "--cluster", cluster],
                cluster,
            );
            fed.managers.push(child);
            let contact = fed.dir.join(format!("{cluster}.manager"));
            wait_for(&format!("manager of {cluster}"), || contact.exists());
        }
        for (cluster, n) in clusters {
            for k in 0..*n {
                let label = format!("provider-{k}");
                let child = fed.spawn(
                    &format!("{cluster}-{label}"),
                    &[
                        "provider",
                        "--cluster",
                        cluster,
                        "--name",
                        &label,
                        "--capacity",
                        "512MiB",
                    ],
                    cluster,
                );
                fed.providers.push(child);
            }
        }
        let want: usize = clusters.iter().map(|c| c.1 as usize).sum();
        let cfg = fed.config(clusters[0].0);
        wait_for("provider registration", || {
            let out = Command::new(juxmem_bin())
                .arg("status")
                .env("JUXMEM_FEDERATION_DIR", &fed.dir)
                .env("JUXMEM_CLUSTER", &cfg.cluster)
                .output();
            out.map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .matches("(provider daemon)")
                    .count()
                    >= want
            })
            .unwrap_or(false)
        });
        fed
    }

    fn spawn(&self, log: &str, args: &[&str], cluster: &str) -> Child {
        let out = std::fs::File::create(self.log_path(log)).unwrap();
        let mut cmd = Command::new(juxmem_bin());
        cmd.args(args).stdout(Stdio::null()).stderr(out);
        self.env(&mut cmd, cluster);
        cmd.env("JUXMEM_LOG", "info");
        cmd.spawn().expect("start juxmem")
    }

    /// Path of a daemon's log (`<cluster>-manager`, `<cluster>-provider-<k>`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// A daemon's log so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Sets the variables a client of `cluster` needs.
    pub fn env(&self, cmd: &mut Command, cluster: &str) {
        cmd.env("JUXMEM_FEDERATION_DIR", &self.dir)
            .env("JUXMEM_CLUSTER", cluster)
            .env_remove("JUXMEM_FEDERATION")
            .env_remove("JUXMEM_FEDERATION_ID");
    }

    /// Configuration for an in-process client of `cluster`.
    pub fn config(&self, cluster: &str) -> Config {
        let mut c = Config::default()
            .cluster(cluster)
            .rendezvous(Rendezvous::Dir(self.dir.clone()));
        c.federation = self.name.clone();
        c.net.io_timeout = Duration::from_secs(30);
        c
    }

    /// The contact directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn stop(children: &mut [Child]) {
    for c in children.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
    }
    for c in children.iter_mut() {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        stop(&mut self.providers);
        stop(&mut self.managers);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
