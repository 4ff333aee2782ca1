//! Making a federation's credentials (rcgen): its certificate authority and each cluster's
//! certificates. Using them is [`crate::transport::tls`]'s part.
//!
//! A CA directory (`juxmem federation init DIR`) holds `ca.pem` (the trust file every process
//! of the federation needs), `ca.key` (mode 0600: whoever holds it can admit clusters) and
//! `federation` (the name in the CA's subject). `juxmem credentials issue` writes a cluster's
//! credentials directory: `trust.pem`, and `manager.pem`/`.key` and `provider.pem`/`.key`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};
use crate::transport::tcp::Role;
use crate::transport::tls::{identity_name, role_file, TRUST_FILE};

/// The CA's certificate in a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key in a CA directory.
pub const CA_KEY: &str = "ca.key";

/// How long a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Not valid before.
    pub not_before: SystemTime,
    /// Not valid after.
    pub not_after: SystemTime,
}

impl Validity {
    /// From now (less an hour, for clocks a little apart) for `days` days.
    pub fn days(days: u64) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }
}

fn gen_error(what: &str, e: rcgen::Error) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("cannot write {}: {e}", path.display()))
}

/// Writes `text` to `path` with `mode`, refusing to replace an existing file.
fn create(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_error(path, e))
}

fn set_validity(p: &mut CertificateParams, v: Validity) {
    p.not_before = v.not_before.into();
    p.not_after = v.not_after.into();
}

/// The CA's parameters, the same at creation and at every issue (the issuer's name and key
/// identifier method are what a signature refers to).
fn ca_params(federation: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "juxmem");
    dn.push(
        DnType::CommonName,
        format!("juxmem federation {federation} CA"),
    );
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// Creates a federation's CA in `dir` (created if missing; existing CA files are never
/// replaced).
pub fn init_federation(dir: &Path, federation: &str, validity: Validity) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let key = KeyPair::generate().map_err(|e| gen_error("CA key", e))?;
    let mut params = ca_params(federation);
    set_validity(&mut params, validity);
    let cert = params
        .self_signed(&key)
        .map_err(|e| gen_error("CA certificate", e))?;
    create(&dir.join(CA_KEY), &key.serialize_pem(), 0o600)?;
    create(&dir.join(CA_CERT), &cert.pem(), 0o644)?;
    create(&dir.join("federation"), &format!("{federation}\n"), 0o644)
}

/// Issues `cluster`'s credentials for `roles` into `out` (created if missing, mode 0700),
/// signed by the CA in `ca_dir`.
pub fn issue(
    ca_dir: &Path,
    cluster: &str,
    roles: &[Role],
    out: &Path,
    validity: Validity,
) -> Result<()> {
    let read = |name: &str| {
        std::fs::read_to_string(ca_dir.join(name)).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot read {} ({e}): is {} a CA directory made by `juxmem federation init`?",
                ca_dir.join(name).display(),
                ca_dir.display()
            ))
        })
    };
    let federation = read("federation")?.trim().to_string();
    let ca_key = KeyPair::from_pem(&read(CA_KEY)?).map_err(|e| gen_error("CA key", e))?;
    let ca_cert = read(CA_CERT)?;
    let issuer = Issuer::new(ca_params(&federation), ca_key);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(|e| io_error(out, e))?;
    let trust = out.join(TRUST_FILE);
    if !trust.exists() {
        create(&trust, &ca_cert, 0o644)?;
    }
    for &role in roles {
        let name = identity_name(cluster, role)?;
        let key = KeyPair::generate().map_err(|e| gen_error("key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, format!("juxmem {federation}"));
        dn.push(
            DnType::CommonName,
            format!("{} of cluster {cluster}", role_file(role)),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(
            name.try_into().map_err(|e| gen_error("identity name", e))?,
        )];
        // Every process is both a client and a server of others.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| gen_error("certificate", e))?;
        let stem = role_file(role);
        let (cert_path, key_path) = (
            out.join(format!("{stem}.pem")),
            out.join(format!("{stem}.key")),
        );
        let _ = std::fs::remove_file(&cert_path);
        let _ = std::fs::remove_file(&key_path);
        create(&key_path, &key.serialize_pem(), 0o600)?;
        create(&cert_path, &cert.pem(), 0o644)?;
    }
    Ok(())
}

/// A whole local federation's credentials under `dir`: the CA in `dir/ca`, each cluster's in
/// `dir/<cluster>` (what `juxmem launch` and the tests make).
pub fn local_federation(dir: &Path, federation: &str, clusters: &[&str]) -> Result<()> {
    let ca = dir.join("ca");
    if !ca.join(CA_KEY).exists() {
        init_federation(&ca, federation, Validity::days(30))?;
    }
    for c in clusters {
        if !dir.join(c).join("provider.pem").exists() {
            issue(
                &ca,
                c,
                &[Role::Manager, Role::Provider],
                &dir.join(c),
                Validity::days(30),
            )?;
        }
    }
    Ok(())
}
