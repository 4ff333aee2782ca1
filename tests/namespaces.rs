//! Namespaces (issue 12, item 2; P3's name spaces): created in one cluster, one set of names
//! with arrays across the federation, listed from any cluster, destroyed with everything under
//! them in every cluster, only with a confirmation when they hold anything, never past an
//! array in use. Real managers, three clusters; the `juxmem namespace` command too.

mod common;

use std::process::Command;

use common::federation::{juxmem_bin, LocalFederation};
use juxmem::layout::{Dist, Layout};
use juxmem::{ArrayOptions, ErrorCode, Federation, Solo};

fn layout() -> Layout {
    Layout::new(&[8, 8], &[Dist::Block, Dist::Block], &[1, 1]).unwrap()
}

fn names(fed: &Federation, pattern: &str) -> Vec<(String, String)> {
    fed.namespaces(pattern)
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.cluster))
        .collect()
}

fn code<T>(r: juxmem::Result<T>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_namespace_is_destroyed_with_everything_under_it_in_every_cluster_once_confirmed() {
    let fed = LocalFederation::start("namespaces", &[("A1", 0), ("A2", 0), ("A3", 0)]);
    let c: Vec<Federation> = ["A1", "A2", "A3"]
        .iter()
        .map(|k| Federation::join(fed.config(k)).unwrap())
        .collect();
    let create =
        |i: usize, name: &str| c[i].create::<f64, _>(&Solo, name, ArrayOptions::new(layout()));

    // One set of names with arrays, across the federation.
    c[0].create_namespace("fc").unwrap();
    assert_eq!(code(c[1].create_namespace("fc")), ErrorCode::AlreadyExists);
    let e = create(2, "fc").map(|_| ()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
    assert!(e.to_string().contains("namespace"), "{e}");
    let _x = create(1, "x").unwrap();
    assert_eq!(code(c[0].create_namespace("x")), ErrorCode::AlreadyExists);
    assert_eq!(
        code(c[0].create_namespace("bad//name")),
        ErrorCode::InvalidArgument
    );
    c[1].create_namespace("fc/day2").unwrap();

    let _t1 = create(0, "fc/day1/t").unwrap();
    let _t2 = create(1, "fc/day2/t").unwrap();
    let mut p = create(2, "fc/day2/p").unwrap();
    let _obs = create(2, "obs/x").unwrap();

    // Listed from any cluster.
    let both = vec![
        ("fc".to_string(), "A1".to_string()),
        ("fc/day2".to_string(), "A2".to_string()),
    ];
    for client in &c {
        assert_eq!(names(client, "*"), both);
    }
    assert_eq!(names(&c[0], "fc/"), vec![both[1].clone()]);

    // Not empty: refused without the confirmation, saying what it holds; nothing changes.
    let e = c[2].destroy_namespace("fc", false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Busy, "{e}");
    assert!(e.to_string().contains("3 arrays and 1 namespaces"), "{e}");
    for a in ["fc/day1/t", "fc/day2/t", "fc/day2/p"] {
        c[0].lookup(a).unwrap();
    }
    assert_eq!(names(&c[0], "*"), both);

    // An array in use by another process is not destroyed, and is named; the others are; the
    // namespaces stay.
    p.acquire().unwrap();
    let e = c[0].destroy_namespace("fc", true).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Busy, "{e}");
    assert!(e.to_string().contains("fc/day2/p"), "{e}");
    assert!(e.to_string().contains("write lock"), "{e}");
    for a in ["fc/day1/t", "fc/day2/t"] {
        assert_eq!(code(c[1].lookup(a)), ErrorCode::NotFound, "{a}");
    }
    c[1].lookup("fc/day2/p").unwrap();
    assert_eq!(names(&c[1], "*"), both);

    // Once it is free, a second destroy finishes: deepest namespace first.
    p.release().unwrap();
    let done = c[0].destroy_namespace("fc", true).unwrap();
    assert_eq!(done.arrays, owned(&["fc/day2/p"]));
    assert_eq!(done.namespaces, owned(&["fc/day2", "fc"]));
    assert_eq!(code(c[0].lookup("fc/day2/p")), ErrorCode::NotFound);
    assert!(names(&c[2], "*").is_empty());
    c[0].lookup("obs/x").unwrap();
    c[0].lookup("x").unwrap();
    assert_eq!(
        code(c[0].destroy_namespace("fc", true)),
        ErrorCode::NotFound
    );

    // The names are free again, in any cluster.
    c[2].create_namespace("fc").unwrap();
    let _again = create(1, "fc/day1/t").unwrap();
    assert_eq!(
        names(&c[0], "fc"),
        vec![("fc".to_string(), "A3".to_string())]
    );

    // An empty namespace needs no confirmation.
    c[1].create_namespace("empty").unwrap();
    let done = c[0].destroy_namespace("empty", false).unwrap();
    assert!(done.arrays.is_empty());
    assert_eq!(done.namespaces, owned(&["empty"]));

    // The command does the same.
    let juxmem = |args: &[&str]| {
        let mut cmd = Command::new(juxmem_bin());
        fed.env(&mut cmd, "A2");
        let out = cmd.args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = juxmem(&["namespace", "create", "cli"]);
    assert!(ok, "{text}");
    let _cli = create(0, "cli/a").unwrap();
    let (ok, text) = juxmem(&["namespace", "list"]);
    assert!(
        ok && text.contains("cli  cluster A2") && text.contains("fc  cluster A3"),
        "{text}"
    );
    let (ok, text) = juxmem(&["namespace", "destroy", "cli"]);
    assert!(
        !ok && text.contains("not empty") && text.contains("Busy"),
        "{text}"
    );
    let (ok, text) = juxmem(&["namespace", "destroy", "cli", "--confirm"]);
    assert!(ok, "{text}");
    assert!(text.contains("destroyed the array cli/a"), "{text}");
    assert_eq!(code(c[0].lookup("cli/a")), ErrorCode::NotFound);
}
