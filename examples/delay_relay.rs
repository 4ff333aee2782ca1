//! A delaying TCP relay for the multi-host tests (`ci/netlab`): this kernel has no `netem`, so
//! the latency between network-namespace "hosts" comes from here. It runs in the router
//! namespace, where an nftables rule redirects every forwarded TCP connection to it; it reads
//! each connection's original destination (`SO_ORIGINAL_DST`), connects there, and forwards
//! both directions, holding every chunk for `--delay-ms` before writing it on.
//!
//! Usage: `delay_relay --listen ADDR --delay-ms MS`. Runs until killed.
//!
//! A relay adds latency to every exchange (a request and its answer each wait the delay), not to
//! TCP's acknowledgements, so a bulk stream's rate stays bounded by the link (`tc` limits it),
//! not by the delay.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

use juxmem::transport::tcp::tune_bulk;

/// Chunks read at once; at most `QUEUED` of them wait per direction (bounded memory).
const CHUNK: usize = 256 << 10;
const QUEUED: usize = 64;

fn original_destination(s: &TcpStream) -> std::io::Result<SocketAddr> {
    // SO_ORIGINAL_DST (linux/netfilter_ipv4.h): the address before the nftables redirect.
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: getsockopt writes at most `len` bytes into a sockaddr_in we own.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            &mut addr as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

/// One direction: a reader stamps chunks, a writer sends each once its delay has passed.
fn pump(mut from: TcpStream, to: TcpStream, delay: Duration) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(QUEUED);
    let writer = std::thread::spawn(move || deliver(rx, to, delay));
    loop {
        let mut buf = vec![0u8; CHUNK];
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.truncate(n);
                if tx.send((Instant::now(), buf)).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}

fn deliver(rx: Receiver<(Instant, Vec<u8>)>, mut to: TcpStream, delay: Duration) {
    for (at, buf) in rx {
        let due = at + delay;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if to.write_all(&buf).is_err() {
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
    // The sender closed its side: pass the end of stream on.
    let _ = to.shutdown(Shutdown::Write);
}

fn relay(client: TcpStream, delay: Duration) {
    let dst = match original_destination(&client) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("delay_relay: no original destination: {e}");
            return;
        }
    };
    let server = match TcpStream::connect_timeout(&dst, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delay_relay: cannot reach {dst}: {e}");
            return;
        }
    };
    let _ = tune_bulk(&client);
    let _ = tune_bulk(&server);
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let up = std::thread::spawn(move || pump(client, server, delay));
    pump(s2, c2, delay);
    let _ = up.join();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(listen), Some(delay)) = (arg("--listen"), arg("--delay-ms")) else {
        eprintln!("usage: delay_relay --listen ADDR --delay-ms MS");
        std::process::exit(2);
    };
    let delay = match delay.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => {
            eprintln!("delay_relay: --delay-ms {delay:?}: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("delay_relay: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "delay_relay: listening on {listen}, {} ms each way",
        delay.as_millis()
    );
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                std::thread::spawn(move || relay(c, delay));
            }
            Err(e) => eprintln!("delay_relay: accept: {e}"),
        }
    }
}
