//! `juxmem namespace create|destroy|list`: namespaces of the federation.

use juxmem::array::namespace;
use juxmem::error::{Error, Result};
use juxmem::service::contact;

use crate::status::client_pool;
use crate::{config, only_flags, Args, USAGE};

/// `juxmem namespace create NAME`, `destroy NAME [--confirm]` or `list [PATTERN]`.
pub fn run_namespace(args: &Args) -> Result<()> {
    let what = args.positional.first().map(String::as_str);
    let name = args.positional.get(1);
    let cfg = config(args)?;
    let pool = client_pool(&cfg, "namespace")?;
    let home = contact::manager_of(&cfg, &cfg.cluster)?;
    let need_name = || {
        name.ok_or_else(|| {
            Error::InvalidArgument(format!("juxmem namespace {what:?} needs a name\n{USAGE}"))
        })
    };
    match what {
        Some("create") => {
            only_flags(args, &[])?;
            namespace::create(&pool, &home, need_name()?)?;
            println!("created the namespace {}", need_name()?);
        }
        Some("destroy") => {
            let confirm = only_flags(args, &["confirm"])?.contains(&"confirm");
            let managers = contact::managers(&cfg)?;
            let done = namespace::destroy(&pool, &managers, need_name()?, confirm)?;
            for a in &done.arrays {
                println!("destroyed the array {a}");
            }
            for n in &done.namespaces {
                println!("destroyed the namespace {n}");
            }
        }
        Some("list") => {
            only_flags(args, &[])?;
            let pattern = name.map_or("*", String::as_str);
            let found = namespace::list(&pool, &home, pattern)?;
            for n in &found {
                println!("{}  cluster {}", n.name, n.cluster);
            }
            if found.is_empty() {
                eprintln!("no namespace matches");
            }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "juxmem namespace {other:?}: create, destroy or list\n{USAGE}"
            )))
        }
    }
    Ok(())
}
