//! `juxmem federation init` and `juxmem credentials issue`: a federation's CA and its
//! clusters' TLS credentials (see `juxmem::credentials`).

use std::path::PathBuf;

use juxmem::credentials::{self, Validity};
use juxmem::error::{Error, Result};
use juxmem::transport::tcp::Role;

use crate::{only_flags, Args, USAGE};

fn days(args: &Args, default: u64) -> Result<u64> {
    args.options.get("days").map_or(Ok(default), |d| {
        d.parse::<u64>()
            .ok()
            .filter(|n| (1..=36_500).contains(n))
            .ok_or_else(|| Error::InvalidArgument(format!("--days {d:?}: 1 to 36500")))
    })
}

/// `juxmem federation init DIR [--name NAME] [--days N]`.
pub fn run_federation(args: &Args) -> Result<()> {
    only_flags(args, &[])?;
    let (Some(verb), Some(dir)) = (args.positional.first(), args.positional.get(1)) else {
        return Err(Error::InvalidArgument(format!(
            "federation init needs a directory\n{USAGE}"
        )));
    };
    if verb != "init" {
        return Err(Error::InvalidArgument(format!(
            "unknown verb federation {verb:?}\n{USAGE}"
        )));
    }
    let name = args.options.get("name").map_or("juxmem", String::as_str);
    let dir = PathBuf::from(dir);
    credentials::init_federation(&dir, name, Validity::days(days(args, 3650)?))?;
    println!(
        "federation {name:?}: CA in {} ({} is the trust file; keep {} secret)",
        dir.display(),
        credentials::CA_CERT,
        credentials::CA_KEY
    );
    Ok(())
}

/// `juxmem credentials issue --ca DIR --cluster NAME [--role manager|provider|both]
/// [--out DIR] [--days N]`.
pub fn run_credentials(args: &Args) -> Result<()> {
    only_flags(args, &[])?;
    if args.positional.first().map(String::as_str) != Some("issue") {
        return Err(Error::InvalidArgument(format!(
            "credentials needs the verb issue\n{USAGE}"
        )));
    }
    let need = |k: &str| {
        args.options
            .get(k)
            .ok_or_else(|| Error::InvalidArgument(format!("credentials issue needs --{k}")))
    };
    let ca = PathBuf::from(need("ca")?);
    let cluster = need("cluster")?;
    juxmem::service::protocol::check_name(cluster)?;
    let roles: &[Role] = match args.options.get("role").map_or("both", String::as_str) {
        "manager" => &[Role::Manager],
        "provider" => &[Role::Provider],
        "both" => &[Role::Manager, Role::Provider],
        other => {
            return Err(Error::InvalidArgument(format!(
                "--role {other:?}: manager, provider or both"
            )))
        }
    };
    let out = args
        .options
        .get("out")
        .map_or_else(|| ca.join(cluster), PathBuf::from);
    credentials::issue(&ca, cluster, roles, &out, Validity::days(days(args, 365)?))?;
    println!(
        "credentials of cluster {cluster} in {}: give its processes JUXMEM_CREDENTIALS={}",
        out.display(),
        out.display()
    );
    Ok(())
}
