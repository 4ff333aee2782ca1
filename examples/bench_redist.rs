//! MPI redistribution benchmark: juxmem against two competent hand-written MPI redistributions
//! on the same data in the same run. Run with `mpirun -np 2` (see `ci/bench`).
//!
//! Baselines, written as an HPC programmer who cares about speed writes them; everything an
//! application would compute once (index lists as strided groups, datatypes, buffers) is built
//! before the timing, on both sides of the comparison (juxmem's plan is cached too):
//!
//! - `alltoallv`: per axis, the runs each peer takes, as strided groups (`count` runs of `len`
//!   elements, `stride` apart) computed once with the owner formulas; buffers allocated once.
//!   Timed: a strided pack per destination (tight loops over the groups, no div/mod per
//!   element), the same-process part copied directly from source to destination (not sent),
//!   `MPI_Alltoall` of the counts, `MPI_Alltoallv`, and a strided unpack per source.
//! - `alltoallw`: the same groups as MPI derived datatypes (hvectors of doubles per column
//!   group, resized to a row, hvectors of rows per row group, combined by struct), one send
//!   and one receive datatype per peer, built and committed once (freed at the end); timed:
//!   one `MPI_Alltoallw` straight from the source into the destination (no pack, no unpack by
//!   the program). The same-process part is either left to MPI or copied by hand first,
//!   whichever is faster on this machine (see `SELF_BY_HAND`).
//! - `memcpy`: one copy of the rank's part into a preallocated buffer, the least any
//!   redistribution must do (the bandwidth floor).
//!
//! Each case runs every implementation in turn (juxmem, alltoallv, alltoallw, memcpy; one
//! warm-up round not counted), times each as the slowest rank's time, checks every result
//! element by element against f(global index) outside the timing, and prints
//! `BENCH name=<case>-vs-best-mpi juxmem_s=<median> baseline_s=<median> ratio=<juxmem/baseline>`
//! (the baseline being the faster of the two MPI programs, by median), a second line
//! `<case>-vs-memcpy`, and a comment line with every median, min and max.
//!
//! Usage: `bench_redist [--reps N] [--quick] [--case SUBSTRING]` (`--quick` shrinks the sizes
//! for smoke tests; `--case` runs only the cases whose name contains SUBSTRING).

use std::os::raw::c_int;
use std::time::Instant;

use juxmem::layout::{balanced_grid, Dist, Layout};
use juxmem::redistribute::mpi::{redistribute, RankMap};
use juxmem::transport::mpi::check_thread_level;
use juxmem::Plan;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::ffi;
use mpi::traits::*;

/// The `alltoallw` baseline copies its same-process part by hand before the call (true) or
/// lets MPI copy it through the datatypes (false). Measured here (2 ranks, 2^25 f64 and the 2-D
/// cases): by hand is faster, MPI's local datatype copy being element-by-element slow.
const SELF_BY_HAND: bool = true;

fn f(linear: u64) -> f64 {
    linear as f64 * 0.25 + 1.0
}

/// Source part of `rank`, each element f(global row-major index).
fn fill(layout: &Layout, rank: u64) -> juxmem::Result<Vec<f64>> {
    let mut v = vec![0.0; layout.local_len(rank)? as usize];
    let mut bad = None;
    layout.for_each_local_run(rank, |g, off, len| match layout.linear_index(g) {
        Ok(first) => {
            for (i, x) in v[off as usize..(off + len) as usize].iter_mut().enumerate() {
                *x = f(first + i as u64);
            }
        }
        Err(e) => bad = Some(e),
    })?;
    bad.map_or(Ok(v), Err)
}

/// The baselines' view of one axis: the block-cyclic formulas users write by hand.
#[derive(Clone, Copy)]
struct Axis {
    n: usize,
    procs: usize,
    block: usize,
}

impl Axis {
    fn new(n: usize, procs: usize, dist: Dist) -> Axis {
        let block = match dist {
            Dist::Block => n.div_ceil(procs).max(1),
            Dist::Cyclic => 1,
            Dist::BlockCyclic(b) => b as usize,
        };
        Axis { n, procs, block }
    }
    fn owner(&self, g: usize) -> usize {
        (g / self.block) % self.procs
    }
    fn local(&self, g: usize) -> usize {
        (g / (self.block * self.procs)) * self.block + g % self.block
    }
    fn local_len(&self, p: usize) -> usize {
        (0..self.n).filter(|&g| self.owner(g) == p).count()
    }
}

/// `count` runs of `len` indices; run `i` starts at `a + i*sa` on one side and `b + i*sb` on
/// the other (for one-sided groups `b`/`sb` mirror `a`/`sa`).
#[derive(Clone, Copy, Debug)]
struct Group {
    a: usize,
    b: usize,
    len: usize,
    count: usize,
    sa: usize,
    sb: usize,
}

impl Group {
    fn elements(&self) -> usize {
        self.len * self.count
    }
}

/// Builds groups from indices pushed in increasing order: consecutive indices make runs, runs
/// of equal length at a constant stride make a group.
#[derive(Default)]
struct Groups {
    list: Vec<Group>,
    run: Option<(usize, usize, usize)>,
}

impl Groups {
    fn push(&mut self, a: usize, b: usize) {
        if let Some((ra, rb, len)) = &mut self.run {
            if a == *ra + *len && b == *rb + *len {
                *len += 1;
                return;
            }
        }
        self.flush();
        self.run = Some((a, b, 1));
    }
    fn flush(&mut self) {
        let Some((a, b, len)) = self.run.take() else {
            return;
        };
        if let Some(g) = self.list.last_mut() {
            if g.len == len {
                if g.count == 1 {
                    (g.sa, g.sb, g.count) = (a - g.a, b - g.b, 2);
                    return;
                }
                if a == g.a + g.count * g.sa && b == g.b + g.count * g.sb {
                    g.count += 1;
                    return;
                }
            }
        }
        self.list.push(Group {
            a,
            b,
            len,
            count: 1,
            sa: 0,
            sb: 0,
        });
    }
    fn finish(mut self) -> Vec<Group> {
        self.flush();
        self.list
    }
}

/// What one rank needs along one axis: the groups of its source indices per destination
/// coordinate, of its destination indices per source coordinate, and the pairs (source local,
/// destination local) it keeps.
struct AxisPlan {
    send: Vec<Vec<Group>>,
    recv: Vec<Vec<Group>>,
    own: Vec<Group>,
}

fn axis_plan(src: Axis, dst: Axis, sc: usize, dc: usize) -> AxisPlan {
    let mut send: Vec<Groups> = (0..dst.procs).map(|_| Groups::default()).collect();
    let mut recv: Vec<Groups> = (0..src.procs).map(|_| Groups::default()).collect();
    let mut own = Groups::default();
    for g in 0..src.n {
        let (s, d) = (src.owner(g), dst.owner(g));
        if s == sc {
            let l = src.local(g);
            send[d].push(l, l);
            if d == dc {
                own.push(l, dst.local(g));
            }
        }
        if d == dc {
            let l = dst.local(g);
            recv[s].push(l, l);
        }
    }
    AxisPlan {
        send: send.into_iter().map(Groups::finish).collect(),
        recv: recv.into_iter().map(Groups::finish).collect(),
        own: own.finish(),
    }
}

fn group_elements(groups: &[Group]) -> usize {
    groups.iter().map(Group::elements).sum()
}

/// Calls `f(a, b)` for every index of the groups (both sides), in order.
#[inline(always)]
fn each_index(groups: &[Group], mut f: impl FnMut(usize, usize)) {
    for g in groups {
        for i in 0..g.count {
            let (a, b) = (g.a + i * g.sa, g.b + i * g.sb);
            for j in 0..g.len {
                f(a + j, b + j);
            }
        }
    }
}

/// Copies `g`'s runs from `src` (side a, offset by `sbase`) to `dst` (side b, offset by
/// `dbase`); with `packed_src` / `packed_dst` that side is consecutive from its base instead.
///
/// # Safety
/// Every index touched must be in bounds (checked by the callers' asserts on the totals and
/// by construction of the groups from the local lengths).
#[inline(always)]
unsafe fn copy_group(
    g: &Group,
    src: *const f64,
    sbase: usize,
    packed_src: bool,
    dst: *mut f64,
    dbase: usize,
    packed_dst: bool,
) {
    let (sa, sb) = (
        if packed_src { g.len } else { g.sa },
        if packed_dst { g.len } else { g.sb },
    );
    let (a, b) = (
        sbase + if packed_src { 0 } else { g.a },
        dbase + if packed_dst { 0 } else { g.b },
    );
    if g.len == 1 {
        let (s, d) = (src.add(a), dst.add(b));
        for i in 0..g.count {
            *d.add(i * sb) = *s.add(i * sa);
        }
    } else if g.count == 1 || (sa == g.len && sb == g.len) {
        std::ptr::copy_nonoverlapping(src.add(a), dst.add(b), g.len * g.count);
    } else {
        for i in 0..g.count {
            std::ptr::copy_nonoverlapping(src.add(a + i * sa), dst.add(b + i * sb), g.len);
        }
    }
}

/// The baselines' precomputed state for one rank (built once, outside the timing).
struct Baseline {
    size: usize,
    me: usize,
    /// Local row lengths (elements) of the source and destination parts.
    src_cols: usize,
    dst_cols: usize,
    /// Per destination rank: (row groups, column groups) over the source part.
    send: Vec<(Vec<Group>, Vec<Group>)>,
    /// Per source rank: (row groups, column groups) over the destination part.
    recv: Vec<(Vec<Group>, Vec<Group>)>,
    /// The same-process pairs: (row pairs, column pairs).
    own: (Vec<Group>, Vec<Group>),
    counts: Vec<i32>,
    displs: Vec<i32>,
    rcounts: Vec<i32>,
    rdispls: Vec<i32>,
    sendbuf: Vec<f64>,
    recvbuf: Vec<f64>,
    /// Alltoallw: one datatype per peer each way (or null), counts (0 or 1), displacements 0.
    wsend: Vec<ffi::MPI_Datatype>,
    wrecv: Vec<ffi::MPI_Datatype>,
    wscounts: Vec<c_int>,
    wrcounts: Vec<c_int>,
    wzero: Vec<c_int>,
}

/// Handles 1-D as 2-D with a leading axis of extent 1.
fn axes_2d(l: &Layout) -> [Axis; 2] {
    let a: Vec<Axis> = l
        .dims()
        .iter()
        .map(|d| Axis::new(d.extent() as usize, d.procs() as usize, d.dist()))
        .collect();
    match a[..] {
        [x] => [
            Axis {
                n: 1,
                procs: 1,
                block: 1,
            },
            x,
        ],
        [x, y] => [x, y],
        _ => unreachable!("the baselines handle 1-D and 2-D"),
    }
}

impl Baseline {
    fn new<C: Communicator>(comm: &C, src: &Layout, dst: &Layout) -> Baseline {
        let size = comm.size() as usize;
        let me = comm.rank() as usize;
        let (sa, da) = (axes_2d(src), axes_2d(dst));
        // Row-major rank <-> grid coordinates.
        let coords = |axes: &[Axis; 2], r: usize| [r / axes[1].procs, r % axes[1].procs];
        let (sc, dc) = (coords(&sa, me), coords(&da, me));
        let plans = [
            axis_plan(sa[0], da[0], sc[0], dc[0]),
            axis_plan(sa[1], da[1], sc[1], dc[1]),
        ];
        let src_cols = sa[1].local_len(sc[1]);
        let dst_cols = da[1].local_len(dc[1]);
        let send: Vec<_> = (0..size)
            .map(|d| {
                let c = coords(&da, d);
                (plans[0].send[c[0]].clone(), plans[1].send[c[1]].clone())
            })
            .collect();
        let recv: Vec<_> = (0..size)
            .map(|s| {
                let c = coords(&sa, s);
                (plans[0].recv[c[0]].clone(), plans[1].recv[c[1]].clone())
            })
            .collect();
        let own = (plans[0].own.clone(), plans[1].own.clone());
        let piece = |(r, c): &(Vec<Group>, Vec<Group>)| group_elements(r) * group_elements(c);
        let counts: Vec<i32> = (0..size)
            .map(|d| if d == me { 0 } else { piece(&send[d]) as i32 })
            .collect();
        let displs = prefix(&counts);
        let recv_total: usize = (0..size)
            .filter(|&s| s != me)
            .map(|s| piece(&recv[s]))
            .sum();
        let send_total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut b = Baseline {
            size,
            me,
            src_cols,
            dst_cols,
            send,
            recv,
            own,
            counts,
            displs,
            rcounts: vec![0; size],
            rdispls: vec![0; size],
            sendbuf: vec![0.0; send_total],
            recvbuf: vec![0.0; recv_total],
            wsend: Vec::new(),
            wrecv: Vec::new(),
            wscounts: Vec::new(),
            wrcounts: Vec::new(),
            wzero: vec![0; size],
        };
        for peer in 0..size {
            let skip = peer == me && SELF_BY_HAND;
            // SAFETY: plain datatype constructors over groups within the local parts.
            let (s, r) = unsafe {
                (
                    piece_type(&b.send[peer].0, &b.send[peer].1, b.src_cols),
                    piece_type(&b.recv[peer].0, &b.recv[peer].1, b.dst_cols),
                )
            };
            b.wscounts.push(c_int::from(s.is_some() && !skip));
            b.wrcounts.push(c_int::from(r.is_some() && !skip));
            b.wsend.push(s.unwrap_or(unsafe { ffi::RSMPI_DOUBLE }));
            b.wrecv.push(r.unwrap_or(unsafe { ffi::RSMPI_DOUBLE }));
        }
        b
    }

    /// The same-process part, straight from source to destination.
    fn copy_own(&self, data: &[f64], out: &mut [f64]) {
        let (rows, cols) = &self.own;
        assert!(group_elements(rows) * group_elements(cols) <= out.len());
        let (sp, dp) = (data.as_ptr(), out.as_mut_ptr());
        each_index(rows, |rs, rd| {
            for c in cols {
                // SAFETY: the groups were built from the local lengths.
                unsafe {
                    copy_group(
                        c,
                        sp,
                        rs * self.src_cols,
                        false,
                        dp,
                        rd * self.dst_cols,
                        false,
                    )
                };
            }
        });
    }

    /// The hand-written `MPI_Alltoallv` redistribution.
    fn alltoallv<C: Communicator>(&mut self, comm: &C, data: &[f64], out: &mut [f64]) {
        // Pack per destination.
        let sp = data.as_ptr();
        for d in (0..self.size).filter(|&d| d != self.me) {
            let (rows, cols) = &self.send[d];
            let mut k = self.displs[d] as usize;
            assert!(k + group_elements(rows) * group_elements(cols) <= self.sendbuf.len());
            let bp = self.sendbuf.as_mut_ptr();
            each_index(rows, |r, _| {
                for c in cols {
                    // SAFETY: within `data` (groups built from the local lengths) and within
                    // this destination's slice of `sendbuf` (asserted above).
                    unsafe { copy_group(c, sp, r * self.src_cols, false, bp, k, true) };
                    k += c.elements();
                }
            });
        }
        self.copy_own(data, out);
        comm.all_to_all_into(&self.counts[..], &mut self.rcounts[..]);
        let mut acc = 0;
        for (d, &c) in self.rdispls.iter_mut().zip(&self.rcounts) {
            *d = acc;
            acc += c;
        }
        {
            let s = Partition::new(&self.sendbuf[..], &self.counts[..], &self.displs[..]);
            let mut r =
                PartitionMut::new(&mut self.recvbuf[..], &self.rcounts[..], &self.rdispls[..]);
            comm.all_to_all_varcount_into(&s, &mut r);
        }
        // Unpack per source.
        let dp = out.as_mut_ptr();
        for s in (0..self.size).filter(|&s| s != self.me) {
            let (rows, cols) = &self.recv[s];
            let mut k = self.rdispls[s] as usize;
            assert!(k + group_elements(rows) * group_elements(cols) <= self.recvbuf.len());
            assert_eq!(
                self.rcounts[s] as usize,
                group_elements(rows) * group_elements(cols)
            );
            let bp = self.recvbuf.as_ptr();
            each_index(rows, |r, _| {
                for c in cols {
                    // SAFETY: as for the pack.
                    unsafe { copy_group(c, bp, k, true, dp, r * self.dst_cols, false) };
                    k += c.elements();
                }
            });
        }
    }

    /// The `MPI_Alltoallw` redistribution with derived datatypes.
    fn alltoallw<C: Communicator>(&mut self, comm: &C, data: &[f64], out: &mut [f64]) {
        if SELF_BY_HAND {
            self.copy_own(data, out);
        }
        // SAFETY: the datatypes describe elements within `data` and `out` (built from the
        // local lengths); counts, displacements and types have one entry per rank.
        let rc = unsafe {
            ffi::MPI_Alltoallw(
                data.as_ptr().cast(),
                self.wscounts.as_ptr(),
                self.wzero.as_ptr(),
                self.wsend.as_ptr(),
                out.as_mut_ptr().cast(),
                self.wrcounts.as_ptr(),
                self.wzero.as_ptr(),
                self.wrecv.as_ptr(),
                comm.as_raw(),
            )
        };
        assert_eq!(rc, ffi::MPI_SUCCESS as c_int, "MPI_Alltoallw failed");
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        for t in self.wsend.iter_mut().chain(self.wrecv.iter_mut()) {
            // SAFETY: every non-predefined type here was created and committed by `piece_type`.
            unsafe {
                if *t != ffi::RSMPI_DOUBLE {
                    ffi::MPI_Type_free(t);
                }
            }
        }
    }
}

fn prefix(c: &[i32]) -> Vec<i32> {
    c.iter()
        .scan(0, |acc, &x| {
            let d = *acc;
            *acc += x;
            Some(d)
        })
        .collect()
}

/// One datatype for `groups` of `elem` items, `unit` bytes apart: an hvector per group at its
/// byte displacement, combined by a struct. The caller frees `elem`.
unsafe fn groups_type(groups: &[Group], elem: ffi::MPI_Datatype, unit: usize) -> ffi::MPI_Datatype {
    let mut parts = Vec::new();
    let mut disps = Vec::new();
    for g in groups {
        let mut t = ffi::RSMPI_DATATYPE_NULL;
        let stride = (g.sa.max(g.len) * unit) as ffi::MPI_Aint;
        let rc =
            ffi::MPI_Type_create_hvector(g.count as c_int, g.len as c_int, stride, elem, &mut t);
        assert_eq!(rc, ffi::MPI_SUCCESS as c_int);
        parts.push(t);
        disps.push((g.a * unit) as ffi::MPI_Aint);
    }
    let ones = vec![1 as c_int; parts.len()];
    let mut t = ffi::RSMPI_DATATYPE_NULL;
    let rc = ffi::MPI_Type_create_struct(
        parts.len() as c_int,
        ones.as_ptr(),
        disps.as_ptr(),
        parts.as_ptr(),
        &mut t,
    );
    assert_eq!(rc, ffi::MPI_SUCCESS as c_int);
    for p in &mut parts {
        ffi::MPI_Type_free(p);
    }
    t
}

/// The committed datatype of one piece (rows x columns of a part with `cols` elements per
/// row), or `None` if the piece is empty.
unsafe fn piece_type(rows: &[Group], cols: &[Group], ncols: usize) -> Option<ffi::MPI_Datatype> {
    if group_elements(rows) * group_elements(cols) == 0 {
        return None;
    }
    let elem = std::mem::size_of::<f64>();
    let mut row = groups_type(cols, ffi::RSMPI_DOUBLE, elem);
    let mut row_sized = ffi::RSMPI_DATATYPE_NULL;
    let rc = ffi::MPI_Type_create_resized(row, 0, (ncols * elem) as ffi::MPI_Aint, &mut row_sized);
    assert_eq!(rc, ffi::MPI_SUCCESS as c_int);
    let mut t = groups_type(rows, row_sized, ncols * elem);
    ffi::MPI_Type_free(&mut row);
    ffi::MPI_Type_free(&mut row_sized);
    let rc = ffi::MPI_Type_commit(&mut t);
    assert_eq!(rc, ffi::MPI_SUCCESS as c_int);
    Some(t)
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn slowest<C: Communicator>(comm: &C, t: f64) -> f64 {
    let mut m = 0.0;
    comm.all_reduce_into(&t, &mut m, SystemOperation::max());
    m
}

/// Runs `op` once between barriers and returns the slowest rank's time.
fn timed<C: Communicator>(comm: &C, op: impl FnOnce()) -> f64 {
    comm.barrier();
    let t0 = Instant::now();
    op();
    slowest(comm, t0.elapsed().as_secs_f64())
}

fn check(name: &str, what: &str, me: i32, out: &mut [f64], want: &[f64]) {
    if let Some(i) = out.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{name}: {what} result wrong on rank {me} at local offset {i}: {} instead of {}",
            out[i], want[i]
        );
    }
    out.iter_mut().for_each(|x| *x = 0.0);
}

fn run_case<C: Communicator>(
    comm: &C,
    name: &str,
    src: &Layout,
    dst: &Layout,
    reps: usize,
) -> juxmem::Result<()> {
    let me = comm.rank();
    let ranks = RankMap::same(comm.size() as usize);
    let data = fill(src, me as u64)?;
    let want = fill(dst, me as u64)?;
    let plan = Plan::cached(src, dst)?;
    let mut out = vec![0.0; want.len()];
    let mut base = Baseline::new(comm, src, dst);
    let mut copy = vec![0.0f64; data.len()];

    let names = ["juxmem", "alltoallv", "alltoallw", "memcpy"];
    let mut times: [Vec<f64>; 4] = Default::default();
    for rep in 0..=reps {
        let mut failed = Ok(());
        let t = [
            timed(comm, || {
                failed = redistribute(comm, &plan, &ranks, Some(&data), Some(&mut out));
            }),
            {
                check(name, "juxmem", me, &mut out, &want);
                timed(comm, || base.alltoallv(comm, &data, &mut out))
            },
            {
                check(name, "alltoallv", me, &mut out, &want);
                timed(comm, || base.alltoallw(comm, &data, &mut out))
            },
            {
                check(name, "alltoallw", me, &mut out, &want);
                timed(comm, || copy.copy_from_slice(&data))
            },
        ];
        failed?;
        assert!(copy == data, "{name}: memcpy wrong on rank {me}");
        if rep > 0 {
            for (v, x) in times.iter_mut().zip(t) {
                v.push(x);
            }
        }
    }
    let s: Vec<Stats> = times.into_iter().map(stats).collect();
    let (j, m) = (s[0].median, s[3].median);
    let best = if s[1].median <= s[2].median { 1 } else { 2 };
    let b = s[best].median;
    if me == 0 {
        println!(
            "BENCH name={name}-vs-best-mpi juxmem_s={j:.6} baseline_s={b:.6} ratio={:.3}",
            j / b
        );
        println!(
            "BENCH name={name}-vs-memcpy juxmem_s={j:.6} baseline_s={m:.6} ratio={:.3}",
            j / m
        );
        let detail: Vec<String> = names
            .iter()
            .zip(&s)
            .map(|(n, s)| format!("{n} {:.4} [{:.4}, {:.4}]", s.median, s.min, s.max))
            .collect();
        println!(
            "# {name}: median [min, max] s over {reps} runs: {}; best MPI: {}",
            detail.join(", "),
            names[best]
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_redist: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .ok_or("MPI is already initialised")?;
    check_thread_level(level)?;
    let world = universe.world();
    let comm = world.duplicate();
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let quick = args.iter().any(|a| a == "--quick");
    let reps = arg("--reps")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 2 } else { 7 });
    let only = arg("--case").unwrap_or_default();
    let (n1, n2, n3) = if quick {
        (1u64 << 16, 256u64, 256u64)
    } else {
        (1u64 << 25, 8192u64, 4096u64)
    };
    let np = comm.size() as u64;
    if comm.rank() == 0 {
        eprintln!(
            "bench_redist: {np} ranks, 1-D {n1} f64, 2-D {n2}x{n2} and {n3}x{n3} f64, {reps} \
             repetitions"
        );
    }
    let l = |shape: &[u64], dists: &[Dist], grid: &[u64]| Layout::new(shape, dists, grid);
    let grid2 = balanced_grid(np, 2)?;
    let (bc64, bc16) = (Dist::BlockCyclic(64), Dist::BlockCyclic(16));
    let cases = [
        (
            "redist-1d-block-to-cyclic",
            l(&[n1], &[Dist::Block], &[np])?,
            l(&[n1], &[Dist::Cyclic], &[np])?,
        ),
        (
            "redist-1d-block-to-bc64",
            l(&[n1], &[Dist::Block], &[np])?,
            l(&[n1], &[bc64], &[np])?,
        ),
        (
            "redist-2d-block-block-to-cyclic-cyclic",
            l(&[n2, n2], &[Dist::Block, Dist::Block], &grid2)?,
            l(&[n2, n2], &[Dist::Cyclic, Dist::Cyclic], &grid2)?,
        ),
        (
            "redist-2d-bc64-grid-px1-to-bc16-grid-1xp",
            l(&[n3, n3], &[bc64, bc64], &[np, 1])?,
            l(&[n3, n3], &[bc16, bc16], &[1, np])?,
        ),
        (
            "redist-2d-bc64-grid-px1-to-cyclic-grid-1xp",
            l(&[n3, n3], &[bc64, bc64], &[np, 1])?,
            l(&[n3, n3], &[Dist::Cyclic, Dist::Cyclic], &[1, np])?,
        ),
    ];
    for (name, src, dst) in &cases {
        if name.contains(only.as_str()) {
            run_case(&comm, name, src, dst, reps)?;
        }
    }
    Ok(())
}
