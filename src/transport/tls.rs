//! Mutual TLS between juxmem processes (rustls, ring).
//!
//! A federation has one certificate authority (`juxmem federation init`); each cluster gets a
//! certificate per role, manager or provider (`juxmem credentials issue`), signed by it. A
//! certificate names its identity as a DNS name, `<role>.c<hex of the cluster>.juxmem` (hex:
//! cluster names are free text, DNS names are not, and DNS compares case-insensitively).
//!
//! Both sides of every connection present a certificate and check the other's chain against
//! the federation's CA (expiry included). The handshake's server name is not used: a process
//! connects to addresses, not names. Instead, once the juxmem hello is exchanged inside TLS,
//! each side checks that the peer's certificate is valid for the identity its hello claims
//! (cluster and role, see [`Identity::claimed_by`]): a provider of A1 cannot speak as A2's
//! manager. Names within a cluster (`A1/rank3@host-12`) are not certified.
//!
//! A cluster's credentials directory (`JUXMEM_CREDENTIALS`) holds [`TRUST_FILE`] (the CA's
//! certificate) and, for each role it may act as, `<role>.pem` and `<role>.key`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::{Error, Result};
use crate::transport::tcp::{Identity, Role};

/// The federation CA's certificate, in a credentials directory.
pub const TRUST_FILE: &str = "trust.pem";

/// File stem of a role's certificate and key in a credentials directory.
pub fn role_file(role: Role) -> &'static str {
    match role {
        Role::Manager => "manager",
        Role::Provider => "provider",
    }
}

/// The DNS name a certificate carries for `cluster` and `role`.
pub fn identity_name(cluster: &str, role: Role) -> Result<String> {
    let hex: String = cluster.bytes().map(|b| format!("{b:02x}")).collect();
    // DNS labels hold at most 63 characters: long names take several labels.
    let labels: Vec<String> = hex
        .as_bytes()
        .chunks(60)
        .map(|c| format!("c{}", std::str::from_utf8(c).expect("hex is ASCII")))
        .collect();
    let name = format!("{}.{}.juxmem", role_file(role), labels.join("."));
    if cluster.is_empty() || name.len() > 253 {
        return Err(Error::InvalidArgument(format!(
            "cluster name {cluster:?} cannot be certified (1 to 120 bytes)"
        )));
    }
    Ok(name)
}

/// SHA-256 of a certificate, as lower-case hex (contact files carry the manager's).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    // AES-128-GCM first: as strong as needed here and the fastest with AES-NI on bulk data.
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

fn tls_error(what: &str, e: impl fmt::Display) -> Error {
    Error::InvalidArgument(format!("{what}: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!(
            "cannot read {} ({e}); make credentials with `juxmem credentials issue`",
            path.display()
        ))
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_error(&format!("{}: not PEM certificates", path.display()), e))?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// One role's certificate chain and key.
struct Own {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A process's credentials: the federation's CA and its own certificates, ready-made TLS
/// configurations for each role it holds.
pub struct Credentials {
    dir: PathBuf,
    client: [Option<Arc<ClientConfig>>; 2],
    server: [Option<Arc<ServerConfig>>; 2],
    fingerprints: [Option<String>; 2],
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({})", self.dir.display())
    }
}

fn slot(role: Role) -> usize {
    match role {
        Role::Manager => 0,
        Role::Provider => 1,
    }
}

impl Credentials {
    /// Loads a credentials directory: [`TRUST_FILE`] and at least one role's certificate and
    /// key.
    pub fn load(dir: &Path) -> Result<Credentials> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for c in certs(&dir.join(TRUST_FILE))? {
            roots
                .add(c)
                .map_err(|e| tls_error(&format!("{}: bad CA certificate", dir.display()), e))?;
        }
        let roots = Arc::new(roots);
        let mut creds = Credentials {
            dir: dir.to_path_buf(),
            client: [None, None],
            server: [None, None],
            fingerprints: [None, None],
        };
        for role in [Role::Manager, Role::Provider] {
            let stem = role_file(role);
            let (cert, key) = (
                dir.join(format!("{stem}.pem")),
                dir.join(format!("{stem}.key")),
            );
            if !cert.exists() {
                continue;
            }
            let chain = certs(&cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(&key)?)
                .map_err(|e| tls_error(&format!("{}: no private key", key.display()), e))?;
            let own = Own { chain, key };
            let i = slot(role);
            creds.fingerprints[i] = Some(fingerprint(&own.chain[0]));
            creds.client[i] = Some(Arc::new(client_config(&provider, &roots, &own)?));
            creds.server[i] = Some(Arc::new(server_config(&provider, &roots, own)?));
        }
        if creds.client.iter().all(Option::is_none) {
            return Err(Error::InvalidArgument(format!(
                "{} holds no manager.pem or provider.pem; make credentials with `juxmem \
                 credentials issue`",
                dir.display()
            )));
        }
        Ok(creds)
    }

    /// The directory they were loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn missing(&self, role: Role) -> Error {
        Error::InvalidArgument(format!(
            "{} holds no {}.pem: this process needs the {} credentials of its cluster",
            self.dir.display(),
            role_file(role),
            role_file(role)
        ))
    }

    /// The client side of a connection made as `role`.
    pub fn client(&self, role: Role) -> Result<Arc<ClientConfig>> {
        self.client[slot(role)]
            .clone()
            .ok_or_else(|| self.missing(role))
    }

    /// The server side of a connection accepted as `role`.
    pub fn server(&self, role: Role) -> Result<Arc<ServerConfig>> {
        self.server[slot(role)]
            .clone()
            .ok_or_else(|| self.missing(role))
    }

    /// SHA-256 of this process's certificate for `role`.
    pub fn fingerprint(&self, role: Role) -> Option<&str> {
        self.fingerprints[slot(role)].as_deref()
    }
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    own: &Own,
) -> Result<ClientConfig> {
    let verifier = Arc::new(ChainVerifier {
        roots: roots.clone(),
        algs: provider.signature_verification_algorithms,
    });
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS client set-up", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
        .map_err(|e| tls_error("TLS client certificate", e))?;
    // Connections are long-lived and pooled: no resumption state to keep.
    c.resumption = rustls::client::Resumption::disabled();
    Ok(c)
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    own: Own,
) -> Result<ServerConfig> {
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| tls_error("TLS client verifier", e))?;
    let mut s = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS server set-up", e))?
        .with_client_cert_verifier(clients)
        .with_single_cert(own.chain, own.key)
        .map_err(|e| tls_error("TLS server certificate", e))?;
    // No session tickets: they would arrive unasked after the handshake, and a pooled
    // connection with unread bytes looks closed (see `Conn::peer_closed`).
    s.send_tls13_tickets = 0;
    s.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(s)
}

/// Checks a server's chain against the federation's CA, not its name: processes connect to
/// addresses, and the identity is checked against the peer's hello afterwards
/// ([`check_identity`]).
#[derive(Debug)]
struct ChainVerifier {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The server name sent in the handshake: unused (see [`ChainVerifier`]), but TLS wants one.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("peer.juxmem").expect("a valid DNS name")
}

/// Checks that `cert` (already verified against the CA) is valid for `claimed`.
pub fn check_identity(cert: &CertificateDer<'_>, claimed: &Identity) -> Result<()> {
    let name = identity_name(&claimed.cluster, claimed.role)?;
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|e| Error::Refused(format!("unreadable peer certificate: {e}")))?;
    let dns = ServerName::try_from(name.as_str())
        .map_err(|e| Error::Refused(format!("identity {name}: {e}")))?;
    rustls::client::verify_server_name(&parsed, &dns).map_err(|_| {
        Error::Refused(format!(
            "its certificate is not that of a {} of cluster {}",
            role_file(claimed.role),
            claimed.cluster
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::local_federation;

    #[test]
    fn identity_names_are_valid_dns_names_and_tell_clusters_apart() {
        let a = identity_name("A1", Role::Manager).unwrap();
        assert_eq!(a, "manager.c4131.juxmem");
        // Case and punctuation survive (DNS compares case-insensitively; hex does not care).
        assert_ne!(
            identity_name("a1", Role::Manager).unwrap(),
            identity_name("A1", Role::Manager).unwrap()
        );
        let long = "x".repeat(100);
        let name = identity_name(&long, Role::Provider).unwrap();
        assert!(ServerName::try_from(name.as_str()).is_ok(), "{name}");
        assert!(identity_name(&"x".repeat(200), Role::Provider).is_err());
        assert!(identity_name("", Role::Provider).is_err());
    }

    #[test]
    fn a_certificate_is_valid_for_its_own_identity_only() {
        let dir = std::env::temp_dir().join(format!("juxmem-tls-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        local_federation(&dir, "t", &["A1", "A2"]).unwrap();
        let cert = |cluster: &str, role: &str| {
            let pem = std::fs::read(dir.join(cluster).join(format!("{role}.pem"))).unwrap();
            CertificateDer::pem_slice_iter(&pem)
                .next()
                .unwrap()
                .unwrap()
        };
        let id = |cluster: &str, role| Identity {
            cluster: cluster.into(),
            role,
        };
        let m1 = cert("A1", "manager");
        assert!(check_identity(&m1, &id("A1", Role::Manager)).is_ok());
        assert!(check_identity(&m1, &id("A1", Role::Provider)).is_err());
        assert!(check_identity(&m1, &id("A2", Role::Manager)).is_err());
        let p2 = cert("A2", "provider");
        assert!(check_identity(&p2, &id("A2", Role::Provider)).is_ok());
        assert!(check_identity(&p2, &id("A1", Role::Provider)).is_err());
        // Loading gives both roles and their fingerprints.
        let creds = Credentials::load(&dir.join("A1")).unwrap();
        assert_eq!(
            creds.fingerprint(Role::Manager),
            Some(fingerprint(&m1).as_str())
        );
        assert!(creds.client(Role::Provider).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
