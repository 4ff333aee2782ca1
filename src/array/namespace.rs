//! Namespaces (P3's name spaces): a path under which arrays and other namespaces are named,
//! created and destroyed as a whole.
//!
//! A namespace is a record in the directory of the cluster that created it (replicated with
//! the rest of its book). Arrays and namespaces share one set of names across the federation,
//! claimed the same way (see [`crate::service::names`]), so a path is never both. Arrays may
//! still be named under a path no namespace was created for (an implicit namespace, as before):
//! the record is what makes a namespace listable while empty and destroyable as one.
//!
//! Destroying a namespace destroys what is under it (its arrays and namespaces, in every
//! cluster), and asks for a confirmation when that is not nothing. The client drives it: it
//! asks every cluster's manager directly what is under the path (a cluster that cannot be asked
//! fails the destroy, rather than leaving arrays behind), destroys each array at its manager,
//! then the namespaces, deepest first. An array in use is not destroyed: the error names it,
//! and the namespace stays until it can be (a retry finishes the work). An array created under
//! the path while the destroy runs may survive it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::{balanced_grid, Dist, Layout};
use crate::service::contact::{self, Contact};
use crate::service::pool::Pool;
use crate::service::protocol::{
    check_name, NameEntry, NamespaceEntry, Query, Request, Response, VersionReq,
};

use super::checkpoint::{read_manifest, relative_dir, NamespaceArray, NamespaceManifest};
use super::group::{on_root, Group};
use super::{unexpected, ArrayOptions, Federation};

/// What a namespace's destroy destroyed, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// The arrays under it.
    pub arrays: Vec<String>,
    /// The namespaces: those under it, deepest first, then itself.
    pub namespaces: Vec<String>,
}

/// Creates the namespace `name`, at the manager `home` (its cluster keeps the record).
pub fn create(pool: &Pool, home: &Contact, name: &str) -> Result<()> {
    check_name(name)?;
    match pool.call_manager(
        home,
        &Request::CreateNamespace {
            name: name.to_string(),
        },
    )? {
        Response::Ok => Ok(()),
        other => Err(unexpected("CreateNamespace", &other)),
    }
}

/// The namespaces of the whole federation matching `pattern` (`*` any run; a pattern ending
/// in `/` every path under it), by name, asking the manager `home`.
pub fn list(pool: &Pool, home: &Contact, pattern: &str) -> Result<Vec<NamespaceEntry>> {
    match pool.call_manager(
        home,
        &Request::Namespaces {
            pattern: pattern.to_string(),
            forwarded: false,
        },
    )? {
        Response::Namespaces(n) => Ok(n),
        other => Err(unexpected("Namespaces", &other)),
    }
}

/// Destroys the namespace `name` and everything under it, asking each of `managers` (every
/// cluster's). Without `confirm`, a namespace that holds anything is refused (`Busy`, saying
/// what it holds) and nothing changes.
pub fn destroy(pool: &Pool, managers: &[Contact], name: &str, confirm: bool) -> Result<Destroyed> {
    let Contents {
        record,
        mut subs,
        arrays,
    } = contents(pool, managers, name)?;
    let Some(record) = record else {
        let asked: Vec<&str> = managers.iter().map(|m| m.cluster.as_str()).collect();
        return Err(Error::NotFound(format!(
            "no namespace named {name:?} in the federation (clusters asked: {})",
            asked.join(", ")
        )));
    };
    let empty = arrays.is_empty() && subs.is_empty();
    if !confirm && !empty {
        let mut some: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
        some.extend(subs.iter().map(|s| s.name.as_str()));
        let more = some.len().saturating_sub(5);
        some.truncate(5);
        return Err(Error::Busy(format!(
            "the namespace {name:?} is not empty: {} arrays and {} namespaces under it ({}{}); \
             destroying it destroys them all, so it needs the confirmation (confirm = true, \
             --confirm)",
            arrays.len(),
            subs.len(),
            some.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        )));
    }

    let mut done = Destroyed::default();
    let mut in_use = Vec::new();
    for a in &arrays {
        match destroy_array(pool, managers, a) {
            Ok(()) | Err(Error::NotFound(_)) => done.arrays.push(a.name.clone()),
            Err(Error::Busy(why)) => in_use.push(why),
            Err(e) => return Err(e),
        }
    }
    if !in_use.is_empty() {
        return Err(Error::Busy(format!(
            "the namespace {name:?} stays: {} of its {} arrays are in use and were not \
             destroyed (the others were): {}",
            in_use.len(),
            arrays.len(),
            in_use.join("; ")
        )));
    }
    // Deepest first, so that no namespace is ever left under a destroyed one.
    subs.sort_by_key(|s| std::cmp::Reverse(s.name.matches('/').count()));
    subs.push(record);
    for ns in subs {
        match pool.call_manager(
            cluster_manager(managers, &ns.cluster)?,
            &Request::DestroyNamespace {
                name: ns.name.clone(),
            },
        ) {
            Ok(_) | Err(Error::NotFound(_)) => done.namespaces.push(ns.name),
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// What the federation holds at and under the path `name`.
struct Contents {
    /// The namespace `name` itself, if there is one.
    record: Option<NamespaceEntry>,
    /// The namespaces under it.
    subs: Vec<NamespaceEntry>,
    /// The arrays under it.
    arrays: Vec<NameEntry>,
}

/// What is at and under `name`, asking every cluster's manager (`managers`) directly: a
/// cluster that cannot be asked is an error, never a silent gap.
fn contents(pool: &Pool, managers: &[Contact], name: &str) -> Result<Contents> {
    check_name(name)?;
    let under = format!("{name}/");
    let mut c = Contents {
        record: None,
        subs: Vec::new(),
        arrays: Vec::new(),
    };
    for m in managers {
        c.record = c.record.or(namespaces_at(pool, m, name)?
            .into_iter()
            .find(|r| r.name == name));
        c.subs.extend(namespaces_at(pool, m, &under)?);
        c.arrays.extend(arrays_at(pool, m, &under)?);
    }
    c.subs.sort_by(|a, b| a.name.cmp(&b.name));
    c.arrays.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(c)
}

/// The namespaces matching `pattern` at the manager `m` alone.
fn namespaces_at(pool: &Pool, m: &Contact, pattern: &str) -> Result<Vec<NamespaceEntry>> {
    let req = Request::Namespaces {
        pattern: pattern.to_string(),
        forwarded: true,
    };
    match pool.call_manager(m, &req).map_err(|e| at(m, e))? {
        Response::Namespaces(n) => Ok(n),
        other => Err(unexpected("Namespaces", &other)),
    }
}

/// The arrays matching `pattern` at the manager `m` alone.
fn arrays_at(pool: &Pool, m: &Contact, pattern: &str) -> Result<Vec<NameEntry>> {
    let req = Request::Search {
        query: Query {
            pattern: pattern.to_string(),
            ..Query::default()
        },
        forwarded: true,
    };
    match pool.call_manager(m, &req).map_err(|e| at(m, e))? {
        Response::Names(n) => Ok(n),
        other => Err(unexpected("Search", &other)),
    }
}

/// Destroys the array `a` at its manager (`Busy` while others use it).
fn destroy_array(pool: &Pool, managers: &[Contact], a: &NameEntry) -> Result<()> {
    let lookup = Request::Lookup {
        name: a.name.clone(),
        forwarded: true,
    };
    let meta = match pool.call_manager(cluster_manager(managers, &a.cluster)?, &lookup)? {
        Response::Meta(m) => m.check().map(|()| m)?,
        other => return Err(unexpected("Lookup", &other)),
    };
    let destroy = Request::Destroy {
        array: meta.id,
        force: false,
    };
    pool.call_manager(&contact::of_node(&meta.manager), &destroy)
        .map(|_| ())
}

/// The manager of `cluster` among `managers`.
fn cluster_manager<'a>(managers: &'a [Contact], cluster: &str) -> Result<&'a Contact> {
    managers
        .iter()
        .find(|m| m.cluster == cluster)
        .ok_or_else(|| Error::NotFound(format!("no manager of cluster {cluster} is known")))
}

/// `e`, saying which cluster could not be asked.
fn at(m: &Contact, e: Error) -> Error {
    Error::from_wire(
        e.code().as_u32(),
        format!(
            "cannot ask cluster {} what is under the namespace: {}",
            m.cluster,
            e.detail()
        ),
    )
}

/// What a namespace's checkpoint wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpointed {
    /// Its manifest (arrays with the versions written, namespaces).
    pub manifest: NamespaceManifest,
    /// Arrays under it with no released version yet: nothing to write, not in the checkpoint.
    pub unreleased: Vec<String>,
}

impl Federation {
    /// Writes the latest released version of every array under the namespace `name` (in every
    /// cluster) to the directory `dir`, one array checkpoint per array in the subdirectory of
    /// its relative path, then a manifest listing them and the namespaces under `name` (see
    /// [`checkpoint`](super::checkpoint) for the format). Collective over `group`: each array
    /// is read in a block layout over the group, every member writing its part. Writers go on
    /// meanwhile (released versions are immutable). `NotFound` if nothing is under `name`
    /// and no namespace has that name.
    pub fn checkpoint_namespace<G: Group + ?Sized>(
        &self,
        group: &G,
        name: &str,
        dir: &Path,
    ) -> Result<Checkpointed> {
        check_name(name)?;
        let under = format!("{name}/");
        let (arrays, namespaces): (Vec<NameEntry>, Vec<String>) = on_root(group, || {
            let managers = contact::managers(&self.inner.cfg)?;
            let c = contents(&self.inner.pool, &managers, name)?;
            if c.arrays.is_empty() && c.record.is_none() {
                return Err(Error::NotFound(format!(
                    "no namespace named {name:?} and no array under it in the federation"
                )));
            }
            let rel = c
                .subs
                .into_iter()
                .map(|n| n.name[under.len()..].to_string());
            Ok((c.arrays, rel.collect()))
        })?;
        let mut done = Checkpointed {
            manifest: NamespaceManifest {
                name: name.to_string(),
                namespaces,
                arrays: Vec::new(),
            },
            unreleased: Vec::new(),
        };
        for a in arrays {
            if a.committed == 0 {
                done.unreleased.push(a.name);
                continue;
            }
            let path = a.name[under.len()..].to_string();
            let sub = dir.join(relative_dir(&path)?);
            let layout = block_layout(&a.shape, group.size())?;
            let version = crate::with_elem_type!(a.elem, T => {
                let mut h = self.inspect::<T, G>(group, &a.name, layout)?;
                h.acquire_read(VersionReq::Latest)?;
                let written = h.checkpoint(&sub);
                h.release_read()?;
                written?
            });
            done.manifest.arrays.push(NamespaceArray {
                path,
                elem: a.elem,
                version,
            });
        }
        let manifest = &done.manifest;
        on_root(group, || manifest.write(dir))?;
        Ok(done)
    }

    /// Restores the namespace checkpoint in `dir` (written by
    /// [`Federation::checkpoint_namespace`]) as the new namespace `name`, in this process's
    /// cluster: its namespaces, then each array (restored as [`Federation::restore`] does, in
    /// a block layout over `group`, its first version holding the checkpointed data).
    /// Collective. A missing, torn or corrupt file is a typed error naming it, and what was
    /// restored so far is destroyed again: never a partial restore. Returns the arrays'
    /// names.
    pub fn restore_namespace<G: Group + ?Sized>(
        &self,
        group: &G,
        dir: &Path,
        name: &str,
    ) -> Result<Vec<String>> {
        check_name(name)?;
        let m: NamespaceManifest = on_root(group, || {
            let m = NamespaceManifest::read(dir)?;
            // Nothing may be there already: a failed restore then destroys only what it made.
            let managers = contact::managers(&self.inner.cfg)?;
            let there = contents(&self.inner.pool, &managers, name)?;
            if there.record.is_some() || !there.subs.is_empty() || !there.arrays.is_empty() {
                return Err(Error::AlreadyExists(format!(
                    "{name:?} is a namespace already, or arrays or namespaces are named under \
                     it: a namespace is restored under a new name"
                )));
            }
            self.create_namespace(name)?;
            let subs = m
                .namespaces
                .iter()
                .try_for_each(|n| self.create_namespace(&format!("{name}/{n}")));
            if let Err(e) = subs {
                let _ = self.destroy_namespace(name, true);
                return Err(e);
            }
            Ok(m)
        })?;
        let restored = (|| {
            let mut names = Vec::new();
            for a in &m.arrays {
                let full = format!("{name}/{}", a.path);
                let sub = dir.join(relative_dir(&a.path)?);
                // The shape, for a block layout over the group (restore reads the manifest
                // again, and checks the type and shape against it).
                let shape: Vec<u64> = on_root(group, || Ok(read_manifest(&sub)?.layout.shape()))?;
                let opts = ArrayOptions::new(block_layout(&shape, group.size())?);
                crate::with_elem_type!(a.elem, T => {
                    drop(self.restore::<T, G>(group, &sub, &full, opts)?);
                });
                names.push(full);
            }
            Ok(names)
        })();
        if restored.is_err() {
            // Nothing restored stays (a member's failure is every member's: restore is
            // collective). Everything under `name` was made by this restore (checked above).
            let _ = on_root(group, || self.destroy_namespace(name, true).map(|_| ()));
        }
        restored
    }
}

/// A block layout of `shape` over `nprocs` processes (the grid balanced over the axes).
fn block_layout(shape: &[u64], nprocs: usize) -> Result<Layout> {
    let grid = balanced_grid(nprocs as u64, shape.len())?;
    Layout::new(shape, &vec![Dist::Block; shape.len()], &grid)
}
