//! Healing data groups: a group short of the creator's redundancy gets a new copy on a
//! provider with room in the cluster that lacks one (a provider of that cluster not holding a
//! copy already), and every copy that is not current is restored from a current one: it
//! fetches the latest committed stamp and every older stamp a retained (possibly pinned)
//! version needs. A group that no provider can complete is reported degraded, never silently.

use std::sync::Arc;

use super::Manager;
use crate::error::Error;
use crate::service::contact::Contact;
use crate::service::groups::RestoreTask;
use crate::service::protocol::{ArrayId, ArrayMeta, Request, Response};

impl Manager {
    /// Adds the copies groups lack and starts the restores not yet under way.
    pub(super) fn heal(self: &Arc<Self>) {
        self.add_missing_copies();
        self.start_restores();
    }

    fn add_missing_copies(&self) {
        let mut wants = Vec::new();
        {
            let st = self.lock();
            for e in st.directory.entries() {
                for (block, cluster) in e.groups.missing() {
                    if let Ok(bytes) = Self::copy_bytes(&e.spec, u64::from(block)) {
                        wants.push((e.id, block, cluster, bytes, e.groups.holders(block)));
                    }
                }
            }
        }
        let mut outcome: Vec<(ArrayId, Option<String>)> = Vec::new();
        let peers = self.peers();
        for (array, block, cluster, bytes, exclude) in wants {
            let contact = if cluster == self.me.cluster {
                Some(Contact {
                    cluster: cluster.clone(),
                    addr: self.me.addr.clone(),
                    incarnation: Some(self.me.incarnation),
                    pid: None,
                    host: None,
                    fingerprint: None,
                })
            } else {
                peers.iter().find(|c| c.cluster == cluster).cloned()
            };
            let reserved = match contact {
                Some(c) => self.reserve_at(&c, bytes, 1, exclude),
                None => Err(Error::NotFound(format!(
                    "cluster {cluster} has no manager in the rendezvous"
                ))),
            };
            match reserved {
                Ok(nodes) => {
                    let mut st = self.lock();
                    if let (Ok(e), Some(n)) = (st.directory.get_mut(array), nodes.first()) {
                        tracing::info!(
                            "block {block} of {}: new copy on {} (restoring)",
                            e.spec.name,
                            n.name
                        );
                        e.groups.add_copy(block, n.clone());
                    }
                    outcome.push((array, None));
                }
                Err(e) => outcome.push((array, Some(e.to_string()))),
            }
        }
        let mut st = self.lock();
        for e in st.directory.entries_mut() {
            let failures: Vec<&String> = outcome
                .iter()
                .filter(|(a, _)| *a == e.id)
                .filter_map(|(_, f)| f.as_ref())
                .collect();
            let stuck = !failures.is_empty();
            if stuck && !e.stuck {
                tracing::warn!(
                    "{} is degraded: no provider can take a missing copy ({})",
                    e.spec.name,
                    failures[0]
                );
            }
            e.stuck = stuck;
        }
    }

    fn start_restores(self: &Arc<Self>) {
        let tasks: Vec<(ArrayMeta, RestoreTask)> = {
            let st = self.lock();
            st.directory
                .entries()
                .flat_map(|e| {
                    let meta = e.meta();
                    e.groups
                        .restore_tasks()
                        .into_iter()
                        .map(move |t| (meta.clone(), t))
                })
                .collect()
        };
        for (meta, task) in tasks {
            let key = (meta.id, task.block, task.target.id());
            if !self
                .restoring
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let m = self.clone();
            let spawned = std::thread::Builder::new()
                .name("juxmem-restore".into())
                .spawn(move || {
                    let again = m.run_restore(meta, task);
                    m.restoring
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    if again {
                        m.wake();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a restore thread: {e}");
            }
        }
    }

    /// Runs one restore round; true if another one should follow at once.
    fn run_restore(&self, meta: ArrayMeta, task: RestoreTask) -> bool {
        let (array, block, target) = (meta.id, task.block, task.target.clone());
        let name = meta.spec.name.clone();
        let req = Request::Restore {
            meta,
            block,
            stamps: task.stamps,
            sources: task.sources,
        };
        // The answer counts only from the incarnation the task names: another process at that
        // address means the target is gone.
        let answer = self.pool.with(&target.addr, |c| {
            if c.peer().incarnation != target.incarnation {
                return Err(Error::Network(format!(
                    "another incarnation of {} answers at {}",
                    target.name, target.addr
                )));
            }
            c.set_read_timeout(Some(self.cfg.net.io_timeout))?;
            c.send(&req)?;
            c.recv::<Response>()?.into_result()
        });
        let stuck = |m: &Manager, stuck: bool| {
            if let Ok(e) = m.lock().directory.get_mut(array) {
                e.stuck = stuck;
            }
        };
        match answer {
            Ok(Response::Restored { held }) => {
                let done = self
                    .lock()
                    .directory
                    .get_mut(array)
                    .map(|e| e.groups.restored(block, &target.id(), &held))
                    .unwrap_or(false);
                if done {
                    tracing::info!("block {block} of {name}: copy on {} restored", target.name);
                    self.changed.notify_all();
                }
                // Not done: a release committed meanwhile, one more round.
                !done
            }
            Ok(other) => {
                tracing::warn!("restoring block {block} of {name}: answer {other:?}");
                false
            }
            Err(e @ (Error::Network(_) | Error::Timeout { .. } | Error::Refused(_))) => {
                tracing::warn!("restoring block {block} of {name} on {}: {e}", target.name);
                self.check_suspects(std::slice::from_ref(&target));
                true
            }
            Err(e) => {
                // Say so (degraded) rather than show "restoring" forever; retried each tick.
                tracing::warn!("restoring block {block} of {name} on {}: {e}", target.name);
                stuck(self, true);
                false
            }
        }
    }
}
