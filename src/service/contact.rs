//! Rendezvous through a federation directory: each manager writes a contact file
//! `<dir>/<cluster>.manager` with its address, incarnation and pid. A file whose address
//! answers with another incarnation, or does not answer, is stale (left by a crashed run) and
//! is reported as such, never trusted.
//!
//! A manager holds its cluster with an exclusive lock on `<dir>/<cluster>.manager.lock` for as
//! long as it lives ([`claim`]): a second manager of the cluster is refused even while the
//! first does not answer (paused), and a contact file found when the lock is free is stale.
//!
//! A contact file also names the manager's certificate (SHA-256): a client checks that the
//! manager answering at the address presents that very certificate. Contact files are private
//! (mode 0600).

use std::path::{Path, PathBuf};

use crate::config::{Config, Rendezvous};
use crate::error::{Error, Result};
use crate::service::protocol::NodeInfo;
use crate::transport::tcp::{self, Hello, Role, Security};

/// A manager's contact file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Cluster.
    pub cluster: String,
    /// `host:port` of the manager.
    pub addr: String,
    /// The manager's incarnation; `None` for address lists (nothing to compare).
    pub incarnation: Option<u64>,
    /// Process id, for operators (and to tell a crashed manager from an unreachable one).
    pub pid: Option<u32>,
    /// The host it runs on.
    pub host: Option<String>,
    /// SHA-256 of the manager's TLS certificate (`None`: plain TCP, or an address list).
    pub fingerprint: Option<String>,
}

/// This host's name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn path(dir: &Path, cluster: &str) -> PathBuf {
    dir.join(format!("{cluster}.manager"))
}

/// Writes a contact file atomically (write, then rename).
pub fn write(dir: &Path, c: &Contact) -> Result<()> {
    let text = render(c);
    let tmp = dir.join(format!(".{}.manager.{}", c.cluster, std::process::id()));
    let io = |e: std::io::Error| {
        Error::Network(format!(
            "cannot write contact file in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, path(dir, &c.cluster)).map_err(io)
}

/// Removes a contact file if it is still ours (same incarnation).
pub fn remove(dir: &Path, cluster: &str, incarnation: u64) {
    if let Ok(c) = read_file(&path(dir, cluster)) {
        if c.incarnation == Some(incarnation) {
            let _ = std::fs::remove_file(path(dir, cluster));
        }
    }
}

/// The text of a contact file.
pub fn render(c: &Contact) -> String {
    let mut text = format!(
        "cluster={}\naddr={}\nincarnation={}\npid={}\nhost={}\n",
        c.cluster,
        c.addr,
        c.incarnation.unwrap_or(0),
        c.pid.unwrap_or(0),
        c.host.as_deref().unwrap_or("")
    );
    if let Some(f) = &c.fingerprint {
        text.push_str(&format!("cert=sha256:{f}\n"));
    }
    text
}

fn read_file(p: &Path) -> Result<Contact> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| Error::NotFound(format!("no contact file {}: {e}", p.display())))?;
    parse(&text, &p.display().to_string())
}

/// Parses the text of a contact file; `origin` (its path) names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Contact> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::trim)
    };
    let bad = || Error::Protocol(format!("malformed contact file {origin}"));
    Ok(Contact {
        cluster: get("cluster").ok_or_else(bad)?.to_string(),
        addr: get("addr").ok_or_else(bad)?.to_string(),
        incarnation: Some(
            get("incarnation")
                .and_then(|v| v.parse().ok())
                .ok_or_else(bad)?,
        ),
        pid: get("pid").and_then(|v| v.parse().ok()),
        host: get("host").filter(|h| !h.is_empty()).map(str::to_string),
        fingerprint: get("cert")
            .and_then(|c| c.strip_prefix("sha256:"))
            .map(str::to_string),
    })
}

/// Every manager the rendezvous names.
pub fn managers(cfg: &Config) -> Result<Vec<Contact>> {
    match &cfg.rendezvous {
        None => Err(Error::InvalidArgument(
            "no federation to join: set JUXMEM_FEDERATION_DIR (a directory of contact files) or \
             JUXMEM_FEDERATION (CLUSTER=HOST:PORT,...)"
                .into(),
        )),
        Some(Rendezvous::Addresses(list)) => Ok(list
            .iter()
            .map(|(cluster, addr)| Contact {
                cluster: cluster.clone(),
                addr: addr.clone(),
                incarnation: None,
                pid: None,
                host: None,
                fingerprint: None,
            })
            .collect()),
        Some(Rendezvous::Dir(dir)) => {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(dir).map_err(|e| {
                Error::NotFound(format!("federation directory {}: {e}", dir.display()))
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "manager") {
                    out.push(read_file(&p)?);
                }
            }
            out.sort_by(|a, b| a.cluster.cmp(&b.cluster));
            Ok(out)
        }
    }
}

/// The manager of `cluster`.
pub fn manager_of(cfg: &Config, cluster: &str) -> Result<Contact> {
    let all = managers(cfg)?;
    let known: Vec<String> = all.iter().map(|c| c.cluster.clone()).collect();
    all.into_iter()
        .find(|c| c.cluster == cluster)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no manager for cluster {cluster} (the federation knows clusters {known:?})"
            ))
        })
}

/// The error for a contact that does not answer as it should, saying which case it is where
/// that can be told: a manager on this host whose process is gone (a crashed run), one that is
/// alive but unreachable (what it advertised), or, elsewhere, either.
pub fn stale(c: &Contact, why: &str) -> Error {
    let said = format!(
        "contact for cluster {} names {} (incarnation {}, pid {}{})",
        c.cluster,
        c.addr,
        c.incarnation.map_or("-".into(), |e| e.to_string()),
        c.pid.map_or("-".into(), |p| p.to_string()),
        c.host
            .as_ref()
            .map_or(String::new(), |h| format!(" on {h}")),
    );
    let here = c.host.as_deref().is_some_and(|h| h == hostname());
    // SAFETY: signal 0 only checks that the process exists.
    let alive = c
        .pid
        .filter(|&p| p != 0)
        .map(|p| unsafe { libc::kill(p as libc::pid_t, 0) } == 0);
    let case = match (here, alive) {
        (true, Some(false)) => "a stale contact from a crashed run (that process is gone): \
                                start the cluster's manager again (it replaces the file)"
            .to_string(),
        (true, Some(true)) => format!(
            "that manager is alive but nothing answers at {} from here: it advertised an address \
             this process cannot reach (check JUXMEM_INTERFACE / JUXMEM_LISTEN)",
            c.addr
        ),
        _ => format!(
            "nothing answers at {} (advertised by a live process? check JUXMEM_INTERFACE), or a \
             stale contact from a crashed run (start the cluster's manager again: it replaces \
             the file)",
            c.addr
        ),
    };
    Error::Stale(format!("{said} but {why}: {case}"))
}

/// A manager's hold on its cluster in the federation directory: an exclusive lock on
/// `<dir>/<cluster>.manager.lock`, held as long as this value lives (the kernel releases it when
/// the process dies, however it dies).
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    _lock: Option<std::fs::File>,
}

impl Claim {
    /// The federation directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Publishes `me` as the manager of its cluster in the federation directory (if the rendezvous
/// is one), after taking the cluster's manager lock: refused (`AlreadyExists`) while another
/// manager of the cluster holds it, even one that does not answer (paused); a contact file left
/// behind is then stale by construction and replaced. On a file system without locks, a
/// manager that answers at the contact's address as its incarnation is what refuses.
pub fn claim(cfg: &Config, me: &NodeInfo, hello: &Hello) -> Result<Option<Claim>> {
    let Some(Rendezvous::Dir(dir)) = &cfg.rendezvous else {
        return Ok(None);
    };
    let lock = lock_cluster(dir, &cfg.cluster)?;
    if lock.is_none() {
        if let Ok(old) = manager_of(cfg, &cfg.cluster) {
            if let Ok(c) = tcp::connect(&old.addr, hello, &cfg.net) {
                if Some(c.peer().incarnation) == old.incarnation {
                    return Err(Error::AlreadyExists(format!(
                        "a manager for cluster {} already runs at {} (incarnation {}, pid {})",
                        cfg.cluster,
                        old.addr,
                        c.peer().incarnation,
                        old.pid.unwrap_or(0)
                    )));
                }
            }
        }
    }
    if let Ok(old) = read_file(&path(dir, &cfg.cluster)) {
        tracing::warn!(
            "replacing the stale contact file of cluster {} ({}, pid {})",
            cfg.cluster,
            old.addr,
            old.pid.unwrap_or(0)
        );
    }
    write(
        dir,
        &Contact {
            cluster: cfg.cluster.clone(),
            addr: me.addr.clone(),
            incarnation: Some(me.incarnation),
            pid: Some(std::process::id()),
            host: Some(hostname()),
            fingerprint: match &cfg.net.security {
                Security::Tls(c) => c.fingerprint(Role::Manager).map(str::to_string),
                _ => None,
            },
        },
    )?;
    Ok(Some(Claim {
        dir: dir.clone(),
        _lock: lock,
    }))
}

/// Takes the manager lock of `cluster` in `dir`: `Ok(None)` where the file system has no
/// locks, `AlreadyExists` naming the holder if another process holds it.
fn lock_cluster(dir: &Path, cluster: &str) -> Result<Option<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(format!("{cluster}.manager.lock"));
    let io = |e: std::io::Error| Error::Network(format!("cannot open {}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&p)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(Error::AlreadyExists(format!(
                "a manager for cluster {cluster} already runs ({}; it holds {}): stop it \
                 first, even if it does not answer (a paused manager still holds the cluster)",
                holder.trim(),
                p.display()
            )));
        }
        tracing::warn!(
            "no lock on {} ({e}): two managers of cluster {cluster} started at once would not \
             be told apart",
            p.display()
        );
        return Ok(None);
    }
    // Who holds it, for the message of the next one to try.
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = write!(f, "pid {} on {}", std::process::id(), hostname());
    Ok(Some(f))
}

/// The contact of the manager `node`.
pub fn of_node(node: &NodeInfo) -> Contact {
    Contact {
        cluster: node.cluster.clone(),
        addr: node.addr.clone(),
        incarnation: Some(node.incarnation),
        pid: None,
        host: None,
        fingerprint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn contact_files_are_private_and_name_the_certificate() {
        let dir = std::env::temp_dir().join(format!("juxmem-contact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = Contact {
            cluster: "A1".into(),
            addr: "127.0.0.1:4000".into(),
            incarnation: Some(7),
            pid: Some(42),
            host: Some("node1".into()),
            fingerprint: Some("ab".repeat(32)),
        };
        write(&dir, &c).unwrap();
        let p = path(&dir, "A1");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "contact file mode {mode:o}");
        assert_eq!(read_file(&p).unwrap(), c);
        // Without TLS there is no certificate to name.
        let plain = Contact {
            fingerprint: None,
            ..c
        };
        write(&dir, &plain).unwrap();
        assert_eq!(read_file(&p).unwrap(), plain);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
