//! Attributes and search across the federation (issue 12, item 2): arrays carry user metadata
//! set at create and changed under a write acquire, and are found by name pattern, element
//! type, shape and attributes from any cluster. Real managers, three clusters.

mod common;

use common::federation::LocalFederation;
use juxmem::layout::{Dist, Layout};
use juxmem::service::protocol::Query;
use juxmem::{ArrayOptions, ElemType, ErrorCode, Federation, Solo};

fn grid(shape: &[u64]) -> Layout {
    Layout::new(
        shape,
        &vec![Dist::Block; shape.len()],
        &vec![1; shape.len()],
    )
    .unwrap()
}

fn found(fed: &Federation, q: Query) -> Vec<String> {
    fed.search(&q)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn attrs(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn arrays_are_found_by_attributes_type_and_shape_across_three_clusters() {
    let fed = LocalFederation::start("search", &[("A1", 0), ("A2", 0), ("A3", 0)]);
    let c: Vec<Federation> = ["A1", "A2", "A3"]
        .iter()
        .map(|k| Federation::join(fed.config(k)).unwrap())
        .collect();
    let cycle = ("cycle", "2026112200");
    let _d1 = c[0]
        .create::<f64, _>(
            &Solo,
            "fc/day1/t",
            ArrayOptions::new(grid(&[8, 8]))
                .attribute("units", "K")
                .attribute(cycle.0, cycle.1)
                .attribute("model", "arome"),
        )
        .unwrap();
    let mut d2 = c[1]
        .create::<f64, _>(
            &Solo,
            "fc/day2/t",
            ArrayOptions::new(grid(&[8, 8]))
                .attribute("units", "K")
                .attribute(cycle.0, cycle.1)
                .attribute("model", "arpege"),
        )
        .unwrap();
    let _p = c[2]
        .create::<f32, _>(
            &Solo,
            "fc/day2/p",
            ArrayOptions::new(grid(&[4]))
                .attribute("units", "Pa")
                .attribute(cycle.0, cycle.1),
        )
        .unwrap();
    let _o = c[2]
        .create::<f64, _>(&Solo, "obs/x", ArrayOptions::new(grid(&[8, 8])))
        .unwrap();
    let q = |kv: &[(&str, &str)]| Query {
        pattern: "*".into(),
        attributes: attrs(kv),
        ..Query::default()
    };
    // From every cluster, the same answers.
    for client in &c {
        assert_eq!(
            found(client, q(&[("units", "K")])),
            ["fc/day1/t", "fc/day2/t"]
        );
        assert_eq!(
            found(client, q(&[cycle])),
            ["fc/day1/t", "fc/day2/p", "fc/day2/t"]
        );
        assert_eq!(
            found(client, q(&[("units", "K"), ("model", "arpege")])),
            ["fc/day2/t"]
        );
        let by_type = Query {
            pattern: "*".into(),
            elem: Some(ElemType::F32),
            ..Query::default()
        };
        assert_eq!(found(client, by_type), ["fc/day2/p"]);
        let by_shape = Query {
            pattern: "*".into(),
            shape: Some(vec![8, 8]),
            ..Query::default()
        };
        assert_eq!(found(client, by_shape), ["fc/day1/t", "fc/day2/t", "obs/x"]);
        let by_name = Query {
            pattern: "fc/day2/*".into(),
            ..q(&[cycle])
        };
        assert_eq!(found(client, by_name), ["fc/day2/p", "fc/day2/t"]);
    }
    let hit = c[2].search(&q(&[("model", "arome")])).unwrap();
    assert_eq!(hit.len(), 1);
    assert_eq!(
        (hit[0].cluster.as_str(), hit[0].elem),
        ("A1", ElemType::F64)
    );
    assert_eq!(
        hit[0].attributes.get("units").map(String::as_str),
        Some("K")
    );

    // Changed under a write acquire only; seen at once from another cluster.
    let e = d2
        .set_attributes(&[("model", "arpege-v2")], &[])
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotAcquired, "{e}");
    d2.acquire().unwrap();
    d2.set_attributes(&[("model", "arpege-v2")], &["units"])
        .unwrap();
    assert_eq!(found(&c[2], q(&[("model", "arpege-v2")])), ["fc/day2/t"]);
    assert_eq!(found(&c[2], q(&[("units", "K")])), ["fc/day1/t"]);
    d2.release().unwrap();
    assert_eq!(
        d2.attributes().get("model").map(String::as_str),
        Some("arpege-v2")
    );

    // The same from the command line.
    let mut cmd = std::process::Command::new(common::federation::juxmem_bin());
    fed.env(&mut cmd, "A3");
    let out = cmd
        .args([
            "search",
            "fc/*",
            "--attr",
            "units=K",
            "--attr",
            "cycle=2026112200",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "fc/day1/t  f64  [8, 8]  cluster A1  version 0  cycle=2026112200 model=arome units=K"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");

    // Bad keys and values are typed errors.
    let e = c[0]
        .create::<f64, _>(
            &Solo,
            "fc/bad",
            ArrayOptions::new(grid(&[2])).attribute("un its", "K"),
        )
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = c[0]
        .create::<f64, _>(
            &Solo,
            "fc/bad",
            ArrayOptions::new(grid(&[2])).attribute("note", "x".repeat(2000)),
        )
        .err()
        .unwrap();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let e = c[0].search(&q(&[("", "K")])).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}
