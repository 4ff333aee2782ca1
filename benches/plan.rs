//! Plan building time against the array length: it must stay flat from 2^10 to 2^40 elements
//! (`ci/bench` reports the 2^40 / 2^10 ratio).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use juxmem::layout::{Dist, Layout};
use juxmem::Plan;

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan-build");
    let pairs: [(&str, Dist, u64, Dist, u64); 3] = [
        ("1d-block-to-cyclic-4to3", Dist::Block, 4, Dist::Cyclic, 3),
        (
            "1d-block-to-bc64-2to2",
            Dist::Block,
            2,
            Dist::BlockCyclic(64),
            2,
        ),
        (
            "1d-bc7-to-bc3-8to5",
            Dist::BlockCyclic(7),
            8,
            Dist::BlockCyclic(3),
            5,
        ),
    ];
    for (name, sd, p, dd, q) in pairs {
        for k in [10u32, 20, 30, 40] {
            let n = 1u64 << k;
            let s = Layout::one_d(n, sd, p).unwrap();
            let d = Layout::one_d(n, dd, q).unwrap();
            g.bench_with_input(
                BenchmarkId::new(name, format!("2^{k}")),
                &(s, d),
                |b, (s, d)| b.iter(|| black_box(Plan::new(black_box(s), black_box(d)).unwrap())),
            );
        }
    }
    for k in [10u32, 20, 30, 40] {
        let side = 1u64 << (k / 2);
        let s = Layout::new(&[side, side], &[Dist::Block, Dist::Block], &[2, 2]).unwrap();
        let d = Layout::new(&[side, side], &[Dist::Cyclic, Dist::Cyclic], &[3, 1]).unwrap();
        g.bench_with_input(
            BenchmarkId::new("2d-block-to-cyclic", format!("2^{k}")),
            &(s, d),
            |b, (s, d)| b.iter(|| black_box(Plan::new(black_box(s), black_box(d)).unwrap())),
        );
    }
    g.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
