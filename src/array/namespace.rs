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

use crate::error::{Error, Result};
use crate::service::contact::{self, Contact};
use crate::service::pool::Pool;
use crate::service::protocol::{check_name, NameEntry, NamespaceEntry, Query, Request, Response};

use super::unexpected;

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
    check_name(name)?;
    let under = format!("{name}/");
    let (mut records, mut subs, mut arrays) = (Vec::new(), Vec::new(), Vec::new());
    for m in managers {
        records.extend(namespaces_at(pool, m, name)?);
        subs.extend(namespaces_at(pool, m, &under)?);
        arrays.extend(arrays_at(pool, m, &under)?);
    }
    let Some(record) = records.into_iter().find(|r| r.name == name) else {
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
