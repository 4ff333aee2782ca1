//! Mutual TLS against real daemons (issue 9, part 1): peers without credentials, with a foreign
//! CA, with an expired certificate, speaking the old plain handshake, or claiming another
//! cluster are refused, and the manager logs each refusal with the peer's address; a bit
//! flipped on the wire closes the connection and nothing is applied. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::federation::{hello_frame, manager_addr, raw_tls, tls_net, wait_for, LocalFederation};
use juxmem::config::local_credentials;
use juxmem::credentials::{self, Validity};
use juxmem::service::node::hello_of;
use juxmem::service::protocol::{
    ArraySpec, HomePlacement, NodeInfo, NodeKind, Redundancy, Request, Response, Retention,
};
use juxmem::transport::tcp::{self, Conn, Hello, HelloReply, NetConfig, Role};
use juxmem::{ElemType, Error, Layout};

const LIMIT: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("juxmem-sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A client hello of `cluster` in `fed`.
fn hello(fed: &LocalFederation, cluster: &str, label: &str) -> Hello {
    let me = NodeInfo {
        name: format!("{cluster}/{label}"),
        cluster: cluster.into(),
        addr: String::new(),
        kind: NodeKind::Rank,
        incarnation: juxmem::service::node::new_incarnation(),
    };
    hello_of(&me, &fed.config(cluster))
}

fn net_with(creds: &Path) -> NetConfig {
    tls_net(creds, LIMIT)
}

fn connect(fed: &LocalFederation, creds: &Path, h: &Hello) -> juxmem::Result<Conn> {
    tcp::connect(&manager_addr(fed, "A"), h, &net_with(creds))
}

/// The manager of A's log lines about refused handshakes.
fn refusals(fed: &LocalFederation) -> Vec<String> {
    fed.log("A-manager")
        .lines()
        .filter(|l| l.contains("handshake refused"))
        .map(str::to_string)
        .collect()
}

/// Waits until the manager logged one more refusal than `before` and returns it.
fn next_refusal(fed: &LocalFederation, before: usize) -> String {
    wait_for("the refusal in the manager's log", || {
        refusals(fed).len() > before
    });
    refusals(fed)[before].clone()
}

fn spec(name: &str) -> ArraySpec {
    ArraySpec {
        name: name.into(),
        elem: ElemType::F64,
        layout: Layout::new(&[64], &[juxmem::Dist::Block], &[1]).unwrap(),
        redundancy: Redundancy::NONE,
        retention: Retention::default(),
        homes: HomePlacement::Daemons,
        replicate_to: vec![],
        attributes: Default::default(),
    }
}

fn create(conn: &mut Conn, name: &str) -> juxmem::Result<Response> {
    conn.send(&Request::Create {
        spec: spec(name),
        homes: vec![],
    })?;
    conn.recv::<Response>()
}

#[test]
fn outsiders_are_refused_and_logged() {
    let fed = LocalFederation::start("tls-refuse", &[("A", 1), ("B", 0)]);
    let own = local_credentials(fed.dir()).join("A");
    let scratch = scratch("refuse");

    // The federation's own credentials work (the control for everything below).
    let mut ok = connect(&fed, &own, &hello(&fed, "A", "good")).expect("own credentials");
    assert!(ok.stream().is_tls());
    assert!(matches!(
        create(&mut ok, "sec/control").unwrap(),
        Response::Meta(_)
    ));

    // No credentials at all: the library refuses to connect, saying how to get them.
    let missing = tcp::connect(
        &manager_addr(&fed, "A"),
        &hello(&fed, "A", "nocreds"),
        &NetConfig::default(),
    )
    .unwrap_err();
    assert!(
        missing.to_string().contains("JUXMEM_CREDENTIALS"),
        "{missing}"
    );

    // A TLS client presenting no certificate (it trusts whatever the server shows: the point
    // is what the server does).
    let before = refusals(&fed).len();
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(TrustAnything))
    .with_no_client_auth();
    let tcp_stream = TcpStream::connect(manager_addr(&fed, "A")).unwrap();
    tcp_stream.set_read_timeout(Some(LIMIT)).unwrap();
    let local = tcp_stream.local_addr().unwrap().to_string();
    let conn =
        rustls::ClientConnection::new(Arc::new(anonymous), juxmem::transport::tls::server_name())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp_stream);
    let sent = tls
        .write_all(&hello_frame(
            "A/anonymous",
            tcp::PROTOCOL_VERSION,
            &fed.name,
        ))
        .and_then(|()| tls.flush());
    let mut buf = [0u8; 64];
    let answered = sent.and_then(|()| tls.read(&mut buf));
    assert!(!matches!(answered, Ok(n) if n > 0), "{answered:?}");
    let line = next_refusal(&fed, before);
    assert!(line.contains(&local), "no peer address in {line:?}");
    assert!(line.contains("no certificates"), "{line}");

    // A foreign CA (another federation's credentials for a cluster of the same name).
    let before = refusals(&fed).len();
    credentials::local_federation(&scratch.join("foreign"), &fed.name, &["A"]).unwrap();
    let e = connect(
        &fed,
        &scratch.join("foreign/A"),
        &hello(&fed, "A", "foreign"),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    assert!(next_refusal(&fed, before).contains("peer=127.0.0.1:"));

    // An expired certificate from the federation's own CA.
    let before = refusals(&fed).len();
    let day = Duration::from_secs(86_400);
    let expired = Validity {
        not_before: SystemTime::now() - 10 * day,
        not_after: SystemTime::now() - day,
    };
    let ca = local_credentials(fed.dir()).join("ca");
    credentials::issue(
        &ca,
        "A",
        &[Role::Provider],
        &scratch.join("expired"),
        expired,
    )
    .unwrap();
    let e = connect(&fed, &scratch.join("expired"), &hello(&fed, "A", "expired")).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    let line = next_refusal(&fed, before);
    assert!(line.to_lowercase().contains("expired"), "{line}");

    // A plain-TCP client speaking the old handshake: told why, in its own framing.
    let before = refusals(&fed).len();
    let mut plain = TcpStream::connect(manager_addr(&fed, "A")).unwrap();
    plain.set_read_timeout(Some(LIMIT)).unwrap();
    let local = plain.local_addr().unwrap().to_string();
    plain
        .write_all(&hello_frame("A/plain", tcp::PROTOCOL_VERSION, &fed.name))
        .unwrap();
    let reply: HelloReply = tcp::recv(&mut plain, 1 << 16).unwrap();
    match reply {
        HelloReply::Refused(why) => assert!(why.contains("requires TLS"), "{why}"),
        other => panic!("a plain client was welcomed: {other:?}"),
    }
    let line = next_refusal(&fed, before);
    assert!(line.contains(&local), "no peer address in {line:?}");

    // A valid provider certificate of cluster B claiming to be a member of A, then claiming
    // to be A's manager with A's provider certificate.
    let before = refusals(&fed).len();
    let b = local_credentials(fed.dir()).join("B");
    let e = connect(&fed, &b, &hello(&fed, "A", "impostor")).unwrap_err();
    assert!(
        e.to_string()
            .contains("not that of a provider of cluster A"),
        "{e}"
    );
    assert!(next_refusal(&fed, before).contains("cluster A"));
    // (By hand: the library would present A's manager certificate for that hello.)
    let mut raw = raw_tls(&fed, &manager_addr(&fed, "A"), "A");
    raw.write_all(&hello_frame("A/manager", tcp::PROTOCOL_VERSION, &fed.name))
        .unwrap();
    match tcp::recv::<_, HelloReply>(&mut raw, 1 << 16).unwrap() {
        HelloReply::Refused(why) => assert!(why.contains("not that of a manager"), "{why}"),
        other => panic!("a provider certificate passed as a manager: {other:?}"),
    }

    // After all that, the manager still serves its own.
    let mut again = connect(&fed, &own, &hello(&fed, "A", "after")).expect("still serving");
    assert!(matches!(
        create(&mut again, "sec/after").unwrap(),
        Response::Meta(_)
    ));
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A client-side verifier that accepts any server certificate: for a client whose own lack of
/// credentials is under test.
#[derive(Debug)]
struct TrustAnything;

impl rustls::client::danger::ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TCP relay from a local port to `upstream` that flips one bit in the first chunk it
/// relays toward the server once `armed` is set.
fn flipping_relay(upstream: String, armed: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let server = TcpStream::connect(upstream).unwrap();
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (mut s_in, mut c_out) = (server, client);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = s_in.read(&mut buf) {
                if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = c_out.shutdown(std::net::Shutdown::Both);
        });
        let mut buf = vec![0u8; 65536];
        let mut flipped = false;
        while let Ok(n) = c_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            if !flipped && armed.load(Ordering::SeqCst) && n > 10 {
                buf[n / 2] ^= 0x10; // inside the record's ciphertext
                flipped = true;
            }
            if s_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_out.shutdown(std::net::Shutdown::Both);
    });
    addr
}

#[test]
fn a_flipped_bit_closes_the_connection_and_nothing_is_applied() {
    let fed = LocalFederation::start("tls-flip", &[("A", 1)]);
    let own = local_credentials(fed.dir()).join("A");
    let armed = Arc::new(AtomicBool::new(false));
    let relay = flipping_relay(manager_addr(&fed, "A"), armed.clone());
    let net = net_with(&own);
    let mut conn = tcp::connect(&relay, &hello(&fed, "A", "flip"), &net).expect("via the relay");
    // The relay is transparent until armed.
    assert!(matches!(
        create(&mut conn, "sec/before-flip").unwrap(),
        Response::Meta(_)
    ));
    armed.store(true, Ordering::SeqCst);
    let e = create(&mut conn, "sec/flipped").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Network(_) | Error::Refused(_) | Error::Protocol(_)
        ),
        "{e:?}"
    );
    let logged = || fed.log("A-manager").contains("closing connection");
    wait_for("the manager to log the bad record", logged);
    // Nothing was applied: the name is still free.
    let mut direct = connect(&fed, &own, &hello(&fed, "A", "check")).unwrap();
    assert!(matches!(
        create(&mut direct, "sec/flipped").unwrap(),
        Response::Meta(_)
    ));
}

#[test]
fn insecure_must_be_asked_for_and_warns() {
    let dir = scratch("insecure");
    let pipeline = dir.join("p.pipeline");
    std::fs::write(
        &pipeline,
        "federation insecure-test\ncluster A providers=1\nstage A np=1 true\n",
    )
    .unwrap();
    let run = |insecure: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_juxmem"));
        common::mpirun::mpi_env(&mut cmd);
        cmd.env_remove("JUXMEM_CREDENTIALS")
            .args(["launch", pipeline.to_str().unwrap(), "--timeout", "60"])
            .args([
                "--dir",
                dir.join(if insecure { "i" } else { "s" }).to_str().unwrap(),
            ]);
        if insecure {
            cmd.env("JUXMEM_INSECURE", "1");
        } else {
            cmd.env_remove("JUXMEM_INSECURE");
        }
        common::mpirun::run_with_timeout(cmd, Duration::from_secs(90))
    };
    let secure = run(false);
    assert!(secure.success, "{}{}", secure.stdout, secure.stderr);
    assert!(
        !format!("{}{}", secure.stdout, secure.stderr).contains("JUXMEM_INSECURE"),
        "{}{}",
        secure.stdout,
        secure.stderr
    );
    let insecure = run(true);
    assert!(insecure.success, "{}{}", insecure.stdout, insecure.stderr);
    let said = format!("{}{}", insecure.stdout, insecure.stderr);
    assert!(
        said.contains("JUXMEM_INSECURE=1: connections are plain TCP"),
        "no warning:\n{said}"
    );
    assert!(
        !dir.join("i/credentials").exists(),
        "credentials made for an insecure federation"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
