//! Authorization (issue 9, item 2) against real daemons: requests from authenticated but
//! unauthorized peers are refused with a typed error (`Refused`) and change no state and no
//! data. A raw client speaks the protocol under a forged hello: until TLS backs identities the
//! hello is the identity, so each test forges what a valid credential of another process,
//! cluster or role could present.

mod common;

use std::io::Write;
use std::time::Duration;

use common::federation::{forged, manager_addr, LocalFederation};
use juxmem::service::protocol::{
    ArrayMeta, NodeInfo, NodeKind, Request, Response, Selection, Stamp, VersionReq,
};
use juxmem::transport::tcp::Conn;
use juxmem::{ArrayOptions, Dist, ErrorCode, Federation, Layout, Solo};

static SOLO: Solo = Solo;
const LEN: u64 = 8;

fn call(c: &mut Conn, req: &Request) -> Response {
    c.send(req).unwrap();
    c.recv().unwrap()
}

/// The message of a `Refused` answer (anything else fails the test).
fn refused(resp: Response, what: &str) -> String {
    match resp {
        Response::Error { code, message } if code == ErrorCode::Refused as u32 => message,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// `req` on a fresh connection as (`name`, `cluster`) must be refused; returns the message.
fn expect_refused(
    addr: &str,
    fed: &LocalFederation,
    (name, cluster): (&str, &str),
    req: &Request,
) -> String {
    let mut c = forged(addr, fed, name, cluster, 77);
    let m = refused(call(&mut c, req), &format!("{req:?} as {name}"));
    assert!(m.contains(name), "the refusal names the peer: {m}");
    m
}

fn members(fed: &LocalFederation, cluster: &str) -> Vec<NodeInfo> {
    let mut c = forged(&manager_addr(fed, cluster), fed, "T/tool", "T", 1);
    match call(&mut c, &Request::Members) {
        Response::Members(m) => m,
        other => panic!("{other:?}"),
    }
}

fn meta(fed: &LocalFederation, name: &str) -> ArrayMeta {
    let mut c = forged(&manager_addr(fed, "A"), fed, "T/tool", "T", 1);
    let req = Request::Lookup {
        name: name.into(),
        forwarded: false,
    };
    match call(&mut c, &req) {
        Response::Meta(m) => m,
        other => panic!("{other:?}"),
    }
}

/// A one-block array homed on a daemon, `clusters x per_cluster` copies.
fn one_block(clusters: u32, per_cluster: u32) -> ArrayOptions {
    ArrayOptions::new(Layout::one_d(LEN, Dist::Block, 1).unwrap())
        .homes_on_daemons()
        .redundancy(clusters, per_cluster)
}

/// The whole array, as a writer fills it.
fn write(a: &mut juxmem::SharedArray<'static, f64, Solo>, value: f64) -> u64 {
    a.acquire().unwrap();
    a.local_mut().unwrap().fill(value);
    a.release().unwrap()
}

/// Reads the latest version: (version, first element), every element the same.
fn read(a: &mut juxmem::SharedArray<'static, f64, Solo>) -> (u64, f64) {
    let v = a.acquire_read(VersionReq::Latest).unwrap();
    let x: Vec<f64> = a.local().unwrap().to_vec();
    a.release_read().unwrap();
    assert!(x.iter().all(|&y| y == x[0]), "torn: {x:?}");
    (v, x[0])
}

/// Reads stamp `stamp` of block 0 from the copy at `addr`, as any client may.
fn read_copy(addr: &str, fed: &LocalFederation, array: u64, stamp: Stamp) -> Result<f64, u32> {
    let mut c = forged(addr, fed, "T/tool", "T", 1);
    let req = Request::Read {
        array,
        block: 0,
        stamp,
        working: None,
        selection: Selection::Whole,
    };
    match call(&mut c, &req) {
        Response::Data { bytes } => {
            let mut b = vec![0u8; bytes as usize];
            std::io::Read::read_exact(c.stream(), &mut b).unwrap();
            let x: Vec<f64> = b
                .chunks(8)
                .map(|w| f64::from_le_bytes(w.try_into().unwrap()))
                .collect();
            assert!(x.iter().all(|&y| y == x[0]), "torn: {x:?}");
            Ok(x[0])
        }
        Response::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    }
}

fn status_of(client: &Federation, name: &str) -> juxmem::service::protocol::ArrayStatus {
    client
        .status()
        .unwrap()
        .into_iter()
        .flat_map(|c| c.arrays)
        .find(|a| a.meta.spec.name == name)
        .unwrap()
}

#[test]
fn another_sessions_epoch_pin_reader_or_membership_is_not_touched() {
    let fed = LocalFederation::start("authz-manager", &[("A", 1), ("B", 1)]);
    let a_mgr = manager_addr(&fed, "A");
    let b_mgr = manager_addr(&fed, "B");
    let writer = Federation::join(fed.config("A")).unwrap();
    let reader = Federation::join(fed.config("B")).unwrap();
    let thief = ("B/thief", "B");

    // ---- Commit and Abort of another session's epoch.
    let mut w = writer
        .create::<f64, _>(&SOLO, "authz/w", one_block(2, 1))
        .unwrap();
    let id = meta(&fed, "authz/w").id;
    w.acquire().unwrap(); // epoch 1, from version 0
    w.local_mut().unwrap().fill(7.0);
    let holder = status_of(&writer, "authz/w").writer;
    assert_eq!(holder.as_deref(), Some(writer.node().name.as_str()));
    let commit = Request::Commit {
        array: id,
        epoch: 1,
        version: 1,
        touched: vec![],
    };
    let m = expect_refused(&a_mgr, &fed, thief, &commit);
    assert!(m.contains("belongs to"), "{m}");
    expect_refused(
        &a_mgr,
        &fed,
        thief,
        &Request::Abort {
            array: id,
            epoch: 1,
        },
    );
    let st = status_of(&writer, "authz/w");
    assert_eq!(st.writer, holder, "the lock is still the writer's");
    assert_eq!(st.meta.committed, 0, "nothing committed");
    assert_eq!(
        w.release().unwrap(),
        1,
        "the writer's own release goes through"
    );
    let mut r = reader
        .open::<f64, _>(
            &SOLO,
            "authz/w",
            Layout::one_d(LEN, Dist::Block, 1).unwrap(),
        )
        .unwrap();
    assert_eq!(read(&mut r), (1, 7.0));

    // Confirming another process's creation.
    expect_refused(&a_mgr, &fed, thief, &Request::Created { array: id });

    // ---- Unpin of another session's pin: the reader's read above took pin 1 and released
    // it; this one takes pin 2 and holds it.
    let v = r.acquire_read(VersionReq::Latest).unwrap();
    let pins = status_of(&writer, "authz/w").pins;
    assert_eq!(pins, vec![v]);
    let m = expect_refused(&a_mgr, &fed, thief, &Request::Unpin { array: id, pin: 2 });
    assert!(m.contains("Unpin") && m.contains("belongs to"), "{m}");
    assert_eq!(status_of(&writer, "authz/w").pins, vec![v], "the pin stays");
    r.release_read()
        .expect("the reader's own unpin finds its pin");
    assert!(status_of(&writer, "authz/w").pins.is_empty());

    // ---- RemoveReader, and a read as another session's reader.
    let l = Layout::one_d(LEN, Dist::Block, 1).unwrap();
    let opts = one_block(1, 1).retention(2, juxmem::service::protocol::FullPolicy::Block);
    let mut w2 = writer.create::<f64, _>(&SOLO, "authz/r", opts).unwrap();
    let id2 = meta(&fed, "authz/r").id;
    let _r2 = reader.open::<f64, _>(&SOLO, "authz/r", l.clone()).unwrap(); // reader 1
    assert_eq!(write(&mut w2, 1.0), 1);
    assert_eq!(write(&mut w2, 2.0), 2);
    expect_refused(
        &a_mgr,
        &fed,
        thief,
        &Request::RemoveReader {
            array: id2,
            reader: 1,
        },
    );
    expect_refused(
        &a_mgr,
        &fed,
        thief,
        &Request::WaitVersion {
            array: id2,
            req: VersionReq::Latest,
            timeout_ms: 1000,
            pin: false,
            reader: Some(1),
        },
    );
    // Reader 1 has not read version 1, so (2 versions retained, Block) version 3 waits for it:
    // the registration is still there, and it has not passed anything.
    let e = w2.acquire_timeout(Duration::from_millis(1500)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Timeout, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("not read yet by reader {}", reader.node().name)),
        "{e}"
    );

    // ---- Leave for another node; Gone from a non-manager, or from the wrong manager.
    let a_members = members(&fed, "A");
    let victim = a_members
        .iter()
        .find(|n| n.name == "A/provider-0")
        .unwrap()
        .clone();
    let m = expect_refused(
        &a_mgr,
        &fed,
        ("A/intruder", "A"),
        &Request::Leave {
            node: victim.clone(),
        },
    );
    assert!(m.contains("leaves by itself"), "{m}");
    // A member's name under another cluster's credential: its heartbeat (which would make
    // this connection its control connection, whose close declares it dead) and its Leave.
    let mut c = forged(&a_mgr, &fed, &victim.name, "B", victim.incarnation);
    let m = refused(call(&mut c, &Request::Renew { rejoin: false }), "Renew");
    assert!(m.contains("is a member of cluster A"), "{m}");
    let m = refused(
        call(
            &mut c,
            &Request::Leave {
                node: victim.clone(),
            },
        ),
        "Leave",
    );
    assert!(m.contains(&victim.name), "{m}");
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let b_node = members(&fed, "B")
        .into_iter()
        .find(|n| n.name == "B/provider-0")
        .unwrap();
    let gone = Request::Gone {
        node: b_node.clone(),
    };
    expect_refused(&a_mgr, &fed, ("B/provider-7", "B"), &gone);
    expect_refused(&a_mgr, &fed, ("C/manager", "C"), &gone);
    let own = Request::Gone {
        node: victim.clone(),
    };
    expect_refused(&a_mgr, &fed, ("B/manager", "B"), &own);
    assert_eq!(members(&fed, "A"), a_members, "nobody evicted from A");
    let p = &meta(&fed, "authz/w").blocks[0];
    assert_eq!(p.term, 1, "no failover");
    assert!(p.replicas.iter().any(|n| n.same(&b_node)), "{p:?}");
    assert!(p.home.as_ref().is_some_and(|h| h.same(&victim)), "{p:?}");

    // ---- Reserve and Release only between managers.
    let before = writer.status().unwrap();
    let reserve = Request::Reserve {
        bytes: 1 << 20,
        count: 1,
        exclude: vec![],
    };
    expect_refused(&a_mgr, &fed, ("B/provider-7", "B"), &reserve);
    let release = Request::Release {
        node: victim.clone(),
        bytes: 1 << 20,
    };
    expect_refused(&a_mgr, &fed, ("A/provider-7", "A"), &release);
    let after = writer.status().unwrap();
    let reserved = |s: &[juxmem::service::protocol::ClusterStatus]| -> Vec<u64> {
        s.iter()
            .flat_map(|c| c.members.iter().map(|m| m.reserved))
            .collect()
    };
    assert_eq!(reserved(&before), reserved(&after), "no memory moved");

    // ---- Register as a provider of another cluster (a valid credential of A at B's manager).
    let impostor = NodeInfo {
        name: "B/provider-9".into(),
        cluster: "B".into(),
        addr: "127.0.0.1:9".into(),
        kind: NodeKind::Daemon,
        incarnation: 77,
    };
    let b_members = members(&fed, "B");
    let m = expect_refused(
        &b_mgr,
        &fed,
        ("B/provider-9", "A"),
        &Request::Register {
            node: impostor.clone(),
            capacity: 1 << 30,
            rejoin: false,
        },
    );
    assert!(m.contains("cluster B"), "{m}");
    assert_eq!(members(&fed, "B"), b_members, "nobody registered at B");

    // Each refusal is logged with the peer's address.
    let log = fed.log("A/manager");
    assert!(
        log.contains("refused a request from 127.0.0.1:") && log.contains("B/thief"),
        "{log}"
    );

    // The daemons still serve: a write and a read across clusters.
    assert_eq!(write(&mut w, 8.0), 2);
    assert_eq!(read(&mut r), (2, 8.0));
}

#[test]
fn forged_installs_and_manager_orders_change_no_copy() {
    let fed = LocalFederation::start("authz-provider", &[("A", 2)]);
    let client = Federation::join(fed.config("A")).unwrap();
    let mut a = client
        .create::<f64, _>(&SOLO, "authz/p", one_block(1, 2))
        .unwrap();
    assert_eq!(write(&mut a, 1.0), 1);
    let m = meta(&fed, "authz/p");
    let p = m.blocks[0].clone();
    let (home, replica) = (p.home.clone().unwrap(), p.replicas[0].clone());
    let v1 = p.latest();
    assert_eq!(read_copy(&replica.addr, &fed, m.id, v1), Ok(1.0));

    // ---- A forged Install of a higher version, to the replica and to the home.
    let forged_stamp = Stamp {
        version: 2,
        epoch: 99,
    };
    let install = |term| Request::Install {
        array: m.id,
        block: 0,
        term,
        stamp: forged_stamp,
        keep: vec![],
        bytes: LEN * 8,
    };
    let nines: Vec<u8> = (0..LEN).flat_map(|_| 9.0f64.to_le_bytes()).collect();
    let push = |to: &NodeInfo, (name, cluster, inc): (&str, &str, u64), term| {
        let mut c = forged(&to.addr, &fed, name, cluster, inc);
        c.send(&install(term)).unwrap();
        let _ = c.stream().write_all(&nines); // the copy may close without reading them
        let m = refused(
            c.recv().unwrap(),
            &format!("install as {name} at term {term}"),
        );
        assert!(m.contains(name) && m.contains("Install"), "{m}");
        m
    };
    // Another provider of the home's cluster; the home's name under another incarnation; a
    // manager; a term the manager never gave; and the home itself receiving a push.
    let m1 = push(&replica, ("A/provider-9", "A", 5), p.term);
    assert!(m1.contains(&home.name), "names the real home: {m1}");
    push(&replica, (&home.name, "A", home.incarnation + 1), p.term);
    push(&replica, ("A/manager", "A", 5), p.term);
    push(&replica, (&home.name, "B", home.incarnation), p.term);
    let m5 = push(&replica, (&home.name, "A", home.incarnation), p.term + 5);
    assert!(m5.contains("the block's manager says"), "{m5}");
    push(&home, ("A/provider-9", "A", 5), p.term);

    // ---- Orders only the array's manager gives.
    let orders = [
        Request::Drop { array: m.id },
        Request::Fence {
            array: m.id,
            block: 0,
            term: 100,
        },
        Request::Promote {
            array: m.id,
            block: 0,
            term: 100,
        },
        Request::Host {
            meta: m.clone(),
            block: 0,
        },
        Request::Restore {
            meta: m.clone(),
            block: 0,
            stamps: vec![forged_stamp],
            sources: vec![home.clone()],
        },
    ];
    for order in &orders {
        for who in [("A/provider-9", "A"), ("B/manager", "B")] {
            expect_refused(&replica.addr, &fed, who, order);
        }
    }

    // Nothing changed: no forged stamp anywhere, v1 intact on both copies, readers see v1.
    for copy in [&home, &replica] {
        assert_eq!(
            read_copy(&copy.addr, &fed, m.id, v1),
            Ok(1.0),
            "{}",
            copy.name
        );
        assert_eq!(
            read_copy(&copy.addr, &fed, m.id, forged_stamp),
            Err(ErrorCode::NotFound as u32),
            "{}",
            copy.name
        );
    }
    assert_eq!(read(&mut a), (1, 1.0));
    // The replica's term did not move: the real home's next push is taken, and both copies
    // hold version 2.
    assert_eq!(write(&mut a, 2.0), 2);
    let p2 = meta(&fed, "authz/p").blocks[0].clone();
    assert_eq!(p2.term, p.term);
    assert!(p2.replicas.iter().any(|n| n.same(&replica)), "{p2:?}");
    let v2 = p2.latest();
    for copy in [&home, &replica] {
        assert_eq!(
            read_copy(&copy.addr, &fed, m.id, v2),
            Ok(2.0),
            "{}",
            copy.name
        );
    }
    let st = status_of(&client, "authz/p");
    assert_eq!(format!("{:?}", st.health), "[Healthy]");
    let log = fed.log(&replica.name);
    assert!(
        log.contains("refused a request from 127.0.0.1:") && log.contains("A/provider-9"),
        "{log}"
    );
}

#[test]
fn after_a_failover_only_the_new_home_pushes() {
    let mut fed = LocalFederation::start("authz-failover", &[("A", 3)]);
    let client = Federation::join(fed.config("A")).unwrap();
    let mut a = client
        .create::<f64, _>(&SOLO, "authz/f", one_block(1, 3))
        .unwrap();
    assert_eq!(write(&mut a, 1.0), 1);
    let old = meta(&fed, "authz/f").blocks[0].clone();
    let old_home = old.home.clone().unwrap();
    fed.kill(&old_home.name);
    // The release goes to the new home; the other replica learns of it (a Fence told it the
    // term, not the home) by asking the manager, and takes its push.
    assert_eq!(write(&mut a, 2.0), 2);
    let m = meta(&fed, "authz/f");
    let p = m.blocks[0].clone();
    assert!(p.term > old.term, "{p:?}");
    let home = p.home.clone().unwrap();
    let other = p.replicas.iter().find(|n| !n.same(&home)).unwrap().clone();
    assert!(
        fed.log(&other.name)
            .contains(&format!("{} is its home at term {}", home.name, p.term)),
        "{}",
        fed.log(&other.name)
    );
    assert_eq!(read_copy(&other.addr, &fed, m.id, p.latest()), Ok(2.0));
    // At the new term, nobody else pushes: not the dead home's name, not another provider.
    let stamp = Stamp {
        version: 3,
        epoch: 99,
    };
    let nines: Vec<u8> = (0..LEN).flat_map(|_| 9.0f64.to_le_bytes()).collect();
    for (name, inc) in [
        (old_home.name.as_str(), old_home.incarnation),
        ("A/provider-9", 1),
    ] {
        let mut c = forged(&other.addr, &fed, name, "A", inc);
        c.send(&Request::Install {
            array: m.id,
            block: 0,
            term: p.term,
            stamp,
            keep: vec![],
            bytes: LEN * 8,
        })
        .unwrap();
        let _ = c.stream().write_all(&nines);
        let msg = refused(c.recv().unwrap(), name);
        assert!(msg.contains(&home.name), "{msg}");
    }
    assert_eq!(
        read_copy(&other.addr, &fed, m.id, stamp),
        Err(ErrorCode::NotFound as u32)
    );
    assert_eq!(read(&mut a), (2, 2.0));
}
