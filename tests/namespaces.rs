//! Namespaces (issue 12, item 2; P3's name spaces): created in one cluster, one set of names
//! with arrays across the federation, listed from any cluster, destroyed with everything under
//! them in every cluster, only with a confirmation when they hold anything, never past an
//! array in use; checkpointed whole and restored under another name, never in part. Real
//! managers, three clusters; the `juxmem namespace` command too.

mod common;

use std::process::Command;

use common::federation::{juxmem_bin, LocalFederation};
use juxmem::array::checkpoint::{NamespaceManifest, NAMESPACE_MANIFEST};
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::VersionReq;
use juxmem::{ArrayOptions, ElemType, ErrorCode, Federation, Solo};

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

fn solo(shape: &[u64]) -> Layout {
    Layout::new(
        shape,
        &vec![Dist::Block; shape.len()],
        &vec![1; shape.len()],
    )
    .unwrap()
}

/// Reads the whole latest version of `name` (of `n` elements) and its version.
fn read_all<T: juxmem::Element + Default>(
    fed: &Federation,
    name: &str,
    shape: &[u64],
) -> (u64, Vec<T>) {
    let mut a = fed.open::<T, _>(&Solo, name, solo(shape)).unwrap();
    let v = a.acquire_read(VersionReq::Latest).unwrap();
    let n: u64 = shape.iter().product();
    let mut buf = vec![T::default(); n as usize];
    a.get(&vec![0; shape.len()], shape, &mut buf).unwrap();
    a.release_read().unwrap();
    (v, buf)
}

#[test]
fn a_namespace_checkpoint_restores_under_another_name_and_a_corrupt_one_leaves_nothing() {
    let fed = LocalFederation::start("ns-ckpt", &[("A1", 0), ("A2", 0), ("A3", 0)]);
    let c: Vec<Federation> = ["A1", "A2", "A3"]
        .iter()
        .map(|k| Federation::join(fed.config(k)).unwrap())
        .collect();
    c[0].create_namespace("m").unwrap();
    c[1].create_namespace("m/sub").unwrap();
    let f = |v: u64, i: usize| (v * 1000 + i as u64) as f64;
    let mut a = c[0]
        .create::<f64, _>(
            &Solo,
            "m/a",
            ArrayOptions::new(solo(&[16, 12])).attribute("units", "K"),
        )
        .unwrap();
    for v in 1..=2 {
        a.acquire().unwrap();
        let data: Vec<f64> = (0..192).map(|i| f(v, i)).collect();
        a.put(&[0, 0], &[16, 12], &data).unwrap();
        assert_eq!(a.release().unwrap(), v);
    }
    let mut b = c[1]
        .create::<i32, _>(&Solo, "m/b", ArrayOptions::new(solo(&[100])))
        .unwrap();
    b.acquire().unwrap();
    b.put(&[0], &[100], &(0..100).map(|i| -i).collect::<Vec<i32>>())
        .unwrap();
    b.release().unwrap();
    let mut z = c[2]
        .create::<u8, _>(&Solo, "m/sub/z", ArrayOptions::new(solo(&[7])))
        .unwrap();
    z.acquire().unwrap();
    z.put(&[0], &[7], &[1, 2, 3, 4, 5, 6, 7]).unwrap();
    z.release().unwrap();
    let _never = c[2]
        .create::<f32, _>(&Solo, "m/empty", ArrayOptions::new(solo(&[3])))
        .unwrap();

    // Written from any cluster, while the arrays live on.
    let dir = fed.dir().join("ns-ckpt");
    let done = c[2].checkpoint_namespace(&Solo, "m", &dir).unwrap();
    let paths: Vec<(&str, ElemType, u64)> = done
        .manifest
        .arrays
        .iter()
        .map(|a| (a.path.as_str(), a.elem, a.version))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("a", ElemType::F64, 2),
            ("b", ElemType::I32, 1),
            ("sub/z", ElemType::U8, 1)
        ]
    );
    assert_eq!(done.manifest.namespaces, owned(&["sub"]));
    assert_eq!(done.unreleased, owned(&["m/empty"]));
    assert_eq!(NamespaceManifest::read(&dir).unwrap(), done.manifest);

    // Restored under another name, from another cluster: every element, the attributes, the
    // namespaces.
    let names = c[1].restore_namespace(&Solo, &dir, "r").unwrap();
    assert_eq!(names, owned(&["r/a", "r/b", "r/sub/z"]));
    let (v, got) = read_all::<f64>(&c[0], "r/a", &[16, 12]);
    assert_eq!(v, 1);
    assert!(got.iter().enumerate().all(|(i, &x)| x == f(2, i)), "r/a");
    assert_eq!(
        c[0].lookup("r/a")
            .unwrap()
            .spec
            .attributes
            .get("units")
            .map(String::as_str),
        Some("K")
    );
    let (_, got) = read_all::<i32>(&c[2], "r/b", &[100]);
    assert_eq!(got, (0..100).map(|i| -i).collect::<Vec<i32>>());
    let (_, got) = read_all::<u8>(&c[0], "r/sub/z", &[7]);
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        names_of(&c[0], "r*"),
        vec![
            ("r".to_string(), "A2".to_string()),
            ("r/sub".to_string(), "A2".to_string())
        ]
    );

    // A byte flipped in one block file: a typed error naming the file, and nothing restored
    // stays (neither the arrays before it nor the namespaces).
    let bad = fed.dir().join("ns-ckpt-bad");
    copy_tree(&dir, &bad);
    let block = bad.join("sub/z/block-0.bin");
    let mut bytes = std::fs::read(&block).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(&block, bytes).unwrap();
    let e = c[1].restore_namespace(&Solo, &bad, "s").unwrap_err();
    assert!(e.to_string().contains("sub/z/block-0.bin"), "{e}");
    for n in ["s/a", "s/b", "s/sub/z"] {
        assert_eq!(code(c[0].lookup(n)), ErrorCode::NotFound, "{n}");
    }
    assert!(names_of(&c[0], "s*").is_empty());

    // A manifest naming a path outside its directory is refused before anything is made.
    let evil = fed.dir().join("ns-ckpt-evil");
    copy_tree(&dir, &evil);
    let text = std::fs::read_to_string(evil.join(NAMESPACE_MANIFEST)).unwrap();
    std::fs::write(
        evil.join(NAMESPACE_MANIFEST),
        text.replace("array=b ", "array=../b "),
    )
    .unwrap();
    let e = c[1].restore_namespace(&Solo, &evil, "t").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(names_of(&c[0], "t*").is_empty());
    // And the name taken: refused, the existing namespace untouched.
    assert_eq!(
        code(c[0].restore_namespace(&Solo, &dir, "r")),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        read_all::<u8>(&c[0], "r/sub/z", &[7]).1,
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    // So is a path with arrays under it but no namespace record: a failed restore must never
    // destroy what it did not make.
    let _loose = c[2]
        .create::<f64, _>(&Solo, "loose/x", ArrayOptions::new(solo(&[2])))
        .unwrap();
    assert_eq!(
        code(c[0].restore_namespace(&Solo, &dir, "loose")),
        ErrorCode::AlreadyExists
    );
    c[0].lookup("loose/x").unwrap();
    assert!(names_of(&c[0], "loose").is_empty());
    // Names that could not be checkpointed as directories are refused: at creation ('.' and
    // '..' segments), or at the checkpoint (a segment named as a checkpoint's own file).
    for bad in ["m/../x", "m/./x"] {
        assert_eq!(
            code(c[0].create_namespace(bad)),
            ErrorCode::InvalidArgument,
            "{bad}"
        );
    }
    let mut clash = c[0]
        .create::<f64, _>(&Solo, "clash/manifest", ArrayOptions::new(solo(&[2])))
        .unwrap();
    clash.acquire().unwrap();
    clash.release().unwrap();
    let e = c[0]
        .checkpoint_namespace(&Solo, "clash", &fed.dir().join("clash"))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

fn names_of(fed: &Federation, pattern: &str) -> Vec<(String, String)> {
    names(fed, pattern)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
