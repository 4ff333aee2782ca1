//! Layout math: owner / local offset / global index lookups and local-run iteration.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use juxmem::layout::{Dist, Layout};

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("layout-lookup");
    let cases = [
        ("1d-block", Layout::one_d(1 << 30, Dist::Block, 64).unwrap()),
        (
            "1d-bc64",
            Layout::one_d(1 << 30, Dist::BlockCyclic(64), 64).unwrap(),
        ),
        (
            "3d-mixed",
            Layout::new(
                &[1024, 1024, 1024],
                &[Dist::Block, Dist::Cyclic, Dist::BlockCyclic(8)],
                &[4, 4, 4],
            )
            .unwrap(),
        ),
    ];
    const N: u64 = 1024;
    g.throughput(Throughput::Elements(N));
    for (name, l) in &cases {
        let shape = l.shape();
        let idx: Vec<Vec<u64>> = (0..N)
            .map(|i| shape.iter().map(|&n| (i * 7919 + 13) % n).collect())
            .collect();
        g.bench_with_input(BenchmarkId::new("locate", name), l, |b, l| {
            b.iter(|| {
                for x in &idx {
                    black_box(l.locate(black_box(x)).unwrap());
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("global_index", name), l, |b, l| {
            b.iter(|| {
                for i in 0..N {
                    black_box(
                        l.global_index(black_box(i % l.nprocs()), black_box(i))
                            .unwrap(),
                    );
                }
            })
        });
    }
    g.finish();
}

fn local_runs(c: &mut Criterion) {
    let mut g = c.benchmark_group("layout-local-runs");
    let l = Layout::new(
        &[4096, 4096],
        &[Dist::Block, Dist::BlockCyclic(64)],
        &[2, 2],
    )
    .unwrap();
    g.throughput(Throughput::Elements(l.local_len(0).unwrap()));
    g.bench_function("2d-block-bc64-rank0", |b| {
        b.iter(|| {
            let mut n = 0u64;
            l.for_each_local_run(0, |_, _, len| n += len).unwrap();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, lookups, local_runs);
criterion_main!(benches);
