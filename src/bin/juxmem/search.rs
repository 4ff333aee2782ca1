//! `juxmem search`: arrays of the whole federation by name pattern, element type, shape and
//! attributes.

use juxmem::config::Config;
use juxmem::error::{Error, Result};
use juxmem::service::contact;
use juxmem::service::protocol::{Query, Request, Response};
use juxmem::ElemType;

use crate::status::client_pool;

/// The query `juxmem search [PATTERN] [--type T] [--shape A,B,..] [--attr KEY=VALUE]...` asks.
pub fn query(
    raw: &[String],
    pattern: Option<&str>,
    elem: Option<&str>,
    shape: Option<&str>,
) -> Result<Query> {
    let mut q = Query {
        pattern: pattern.unwrap_or("*").to_string(),
        ..Query::default()
    };
    if let Some(t) = elem {
        q.elem = Some(
            ElemType::ALL
                .into_iter()
                .find(|e| e.name() == t)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("--type {t:?}: i8 .. u64, f32, f64"))
                })?,
        );
    }
    if let Some(s) = shape {
        q.shape = Some(
            s.split(',')
                .map(|x| {
                    x.trim()
                        .parse::<u64>()
                        .map_err(|e| Error::InvalidArgument(format!("--shape {s:?}: {e}")))
                })
                .collect::<Result<_>>()?,
        );
    }
    // Every --attr (parse_args keeps the last of a repeated option).
    for w in raw.windows(2).filter(|w| w[0] == "--attr") {
        let (k, v) = w[1]
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("--attr {:?}: KEY=VALUE", w[1])))?;
        q.attributes.insert(k.to_string(), v.to_string());
    }
    Ok(q)
}

/// Prints the arrays matching `q`, one per line.
pub fn run_search(cfg: &Config, q: Query) -> Result<()> {
    let pool = client_pool(cfg, "search")?;
    let managers = contact::managers(cfg)?;
    let first = managers
        .iter()
        .find(|c| c.cluster == cfg.cluster)
        .or(managers.first())
        .ok_or_else(|| Error::NotFound("no manager in the federation".into()))?;
    let found = match pool.call_manager(
        first,
        &Request::Search {
            query: q,
            forwarded: false,
        },
    )? {
        Response::Names(n) => n,
        other => {
            return Err(Error::Protocol(format!(
                "unexpected answer to Search: {other:?}"
            )))
        }
    };
    for e in &found {
        let shape: Vec<String> = e.shape.iter().map(u64::to_string).collect();
        let attrs: Vec<String> = e
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{}  {}  [{}]  cluster {}  version {}  {}",
            e.name,
            e.elem,
            shape.join(", "),
            e.cluster,
            e.committed,
            attrs.join(" ")
        );
    }
    if found.is_empty() {
        eprintln!("no array matches");
    }
    Ok(())
}
