//! The weather pipeline on a federation of clusters: the README's main job (`ci/demo` runs it
//! with `juxmem launch examples/weather.pipeline`).
//!
//! Three stages, each its own `mpirun` in its own cluster, hand a 2-D temperature field along
//! as named shared arrays, one version per forecast cycle:
//!
//! - stage 1 (A1, block rows): computes day 1 (advection-diffusion stencil with halo rows) and
//!   releases `forecast/day1/t`, with a copy placed in A2 at release;
//! - stage 2 (A2, cyclic rows): opens day 1 in its own layout (automatic redistribution, read
//!   from the copy in its cluster), computes day 2 (row-wise implicit diffusion), releases
//!   `forecast/day2/t` with a copy in A3;
//! - stage 3 (A3, block-cyclic tiles): opens day 2, computes day 3 (dense per-tile smoothing),
//!   releases `forecast/day3/t` (home plus a provider daemon in A3).
//!
//! Every stage checks what it receives and what it computes against a single-process run of
//! the same model; stage 2 writes day 1 and stage 3 days 2 and 3 as PNG heat maps.
//!
//! A fourth stage, `--stage verify` (one rank), reads every cycle's final field
//! (`forecast/day3/t`) back from the federation and compares it with the single-process model:
//! whatever produced the days (these Rust stages, or the C and Fortran stages of
//! `ffi/examples`), the final fields must be the same.
//!
//! Checkpoint and restart: with `--checkpoint DIR`, stage 3 writes each cycle's final field to
//! `DIR/cycle-<c>` (`SharedArray::checkpoint`; the manifest, written last, marks it done). With
//! `--restart DIR`, every stage resumes after the last cycle checkpointed there (a new
//! federation: the arrays start again at version 1, for that cycle), and `verify` first
//! restores that last checkpoint into its own layout and checks it against the model.
//!
//! Usage: `weather --stage 1|2|3|verify [--cycles C] [--out DIR] [--checkpoint DIR]
//! [--restart DIR]` (under mpirun, with JUXMEM_CLUSTER and JUXMEM_FEDERATION_DIR set, as
//! `juxmem launch` does).

#[path = "weather/model.rs"]
mod model;
// The heat maps of `juxmem show` (colour bar, title, ticks): the command's own renderer,
// shared by path so that the library carries no drawing code.
#[path = "../src/bin/juxmem/picture.rs"]
#[allow(dead_code)]
mod picture;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use juxmem::config::Config;
use juxmem::layout::Layout;
use juxmem::service::protocol::{FullPolicy, VersionReq};
use juxmem::{ArrayOptions, Federation, SharedArray};
use model::Params;
use mpi::collective::SystemOperation;
use mpi::traits::*;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(120);

struct Ctx<'a> {
    world: &'a mpi::topology::SimpleCommunicator,
    params: Params,
    out: PathBuf,
    ok: bool,
}

impl Ctx<'_> {
    fn rank(&self) -> u64 {
        self.world.rank() as u64
    }

    fn layout(&self, stage: usize) -> juxmem::Result<Layout> {
        model::stage_layout(&self.params, stage, self.world.size() as u64)
    }

    /// Checks a part against the reference over the stage; prints on rank 0.
    fn check(
        &mut self,
        stage: usize,
        cycle: u64,
        what: &str,
        layout: &Layout,
        part: &[f64],
        reference: &[f64],
    ) -> Res<()> {
        let err = model::max_error(&self.params, layout, self.rank(), part, reference)?;
        let mut worst = 0.0;
        self.world
            .all_reduce_into(&err, &mut worst, SystemOperation::max());
        if self.rank() == 0 {
            println!(
                "stage {} cycle {cycle}: {what}: max |error| vs single process = {worst:.3e}",
                if stage == 4 {
                    "verify".to_string()
                } else {
                    stage.to_string()
                }
            );
        }
        self.ok &= worst == 0.0;
        Ok(())
    }

    /// Rank 0 reads the whole field of a held version and writes it as a PNG.
    fn picture(
        &self,
        array: &SharedArray<'_, f64, mpi::topology::SimpleCommunicator>,
        name: &str,
    ) -> Res<()> {
        if self.rank() != 0 {
            return Ok(());
        }
        let (rows, cols) = (self.params.rows, self.params.cols);
        let mut field = vec![0.0; rows * cols];
        array.get(&[0, 0], &[rows as u64, cols as u64], &mut field)?;
        let path = self.out.join(name);
        let map = picture::HeatMap {
            field: &field,
            rows,
            cols,
            range: Some((255.0, 315.0)),
            title: format!(
                "{} version {} ({rows} x {cols}, K)",
                array.name(),
                array.version().unwrap_or(0)
            ),
            row_label: "row (south to north)".into(),
            col_label: "column (west to east)".into(),
        };
        picture::render(&map)
            .image
            .write_png(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
        Ok(())
    }
}

/// The last cycle whose checkpoint in `dir` is complete (its manifest written), if any.
fn last_checkpointed(dir: &std::path::Path) -> Res<Option<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("--restart {}: {e}", dir.display()).into()),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.path().join(juxmem::array::checkpoint::MANIFEST).exists())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("cycle-")?.parse().ok())
        .max())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("weather: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .ok_or("MPI is already initialised")?;
    juxmem::transport::mpi::check_thread_level(level)?;
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let stage_arg = arg("--stage").cloned().unwrap_or_default();
    let stage: usize = match stage_arg.as_str() {
        "verify" => 4,
        s => s
            .parse()
            .ok()
            .filter(|n| (1..=3).contains(n))
            .ok_or_else(|| format!("--stage {s:?}: 1, 2, 3 or verify"))?,
    };
    let cycles: u64 = match arg("--cycles") {
        Some(c) => c.parse().map_err(|e| format!("--cycles {c:?}: {e}"))?,
        None => 3,
    };
    let out = PathBuf::from(arg("--out").map_or("out/weather", |s| s.as_str()));
    let checkpoints = arg("--checkpoint").map(PathBuf::from);
    let restart = arg("--restart").map(PathBuf::from);
    // The cycle to start from: after the last one checkpointed (a restart), else 0.
    let last_done = restart
        .as_deref()
        .map(last_checkpointed)
        .transpose()?
        .flatten();
    let first = last_done.map_or(0, |c| c + 1);
    // This run's arrays are new: version 1 is the first cycle it computes.
    let version_of = |cycle: u64| cycle - first + 1;
    let world = universe.world();
    let cfg = Config::from_env()?;
    let cluster = cfg.cluster.clone();
    let fed = Federation::join_as(cfg, &format!("rank{}", world.rank()))?;
    let mut ctx = Ctx {
        world: &world,
        params: Params::demo(),
        out,
        ok: true,
    };
    let me = ctx.layout(stage)?;
    if ctx.rank() == 0 {
        println!(
            "stage {stage_arg} on cluster {cluster}: {} ranks, field held as {me}",
            world.size()
        );
        if let Some(c) = last_done {
            println!("stage {stage_arg}: restarting after cycle {c}, checkpointed");
        }
    }
    let t0 = Instant::now();
    match stage {
        1 => {
            let mut day1 = fed.create::<f64, _>(
                &world,
                "forecast/day1/t",
                ArrayOptions::new(me.clone())
                    .redundancy(2, 1)
                    .replicate_to(["A2"])
                    .retention(2, FullPolicy::Block)
                    .expect_readers(1),
            )?;
            for cycle in first..cycles {
                let reference = model::serial(&ctx.params, cycle);
                let init = model::initial_part(&ctx.params, cycle, &me, ctx.rank())?;
                let band = model::day1_band(&ctx.params, &world, &me, init);
                day1.acquire_overwrite()?; // every element is written
                day1.local_mut()?.copy_from_slice(&band);
                let v = day1.release()?;
                ctx.check(
                    1,
                    cycle,
                    &format!("day 1 released as version {v}"),
                    &me,
                    &band,
                    &reference[0],
                )?;
            }
        }
        2 => {
            let l1 = me.clone();
            let mut day1 = fed.open_wait::<f64, _>(&world, "forecast/day1/t", l1, WAIT)?;
            let mut day2 = fed.create::<f64, _>(
                &world,
                "forecast/day2/t",
                ArrayOptions::new(me.clone())
                    .redundancy(2, 1)
                    .replicate_to(["A3"])
                    .retention(2, FullPolicy::Block)
                    .expect_readers(1),
            )?;
            for cycle in first..cycles {
                let reference = model::serial(&ctx.params, cycle);
                let v = day1.acquire_read_timeout(VersionReq::Exactly(version_of(cycle)), WAIT)?;
                let mut rows = day1.local()?.to_vec();
                ctx.check(
                    2,
                    cycle,
                    &format!("day 1 version {v} received (block -> cyclic)"),
                    &me,
                    &rows,
                    &reference[0],
                )?;
                ctx.picture(&day1, &format!("day1_cycle{cycle}.png"))?;
                day1.release_read()?;
                model::day2_rows(&ctx.params, &me, ctx.rank(), &mut rows);
                day2.acquire_overwrite()?; // every element is written
                day2.local_mut()?.copy_from_slice(&rows);
                let v2 = day2.release()?;
                ctx.check(
                    2,
                    cycle,
                    &format!("day 2 released as version {v2}"),
                    &me,
                    &rows,
                    &reference[1],
                )?;
            }
        }
        4 => {
            if let (Some(dir), Some(c)) = (&restart, last_done) {
                // The last checkpoint, restored into this stage's own layout.
                let from = dir.join(format!("cycle-{c}"));
                let mut kept = fed.restore::<f64, _>(
                    &world,
                    &from,
                    "forecast/day3/restored",
                    ArrayOptions::new(me.clone()),
                )?;
                kept.acquire_read(VersionReq::Exactly(1))?;
                let part = kept.local()?.to_vec();
                let reference = model::serial(&ctx.params, c);
                let what = format!("final field restored from {}", from.display());
                ctx.check(4, c, &what, &me, &part, &reference[2])?;
                kept.release_read()?;
            }
            let mut day3 = fed.open_wait::<f64, _>(&world, "forecast/day3/t", me.clone(), WAIT)?;
            for cycle in first..cycles {
                let reference = model::serial(&ctx.params, cycle);
                let v = day3.acquire_read_timeout(VersionReq::Exactly(version_of(cycle)), WAIT)?;
                let part = day3.local()?.to_vec();
                let what = format!("final field (day 3 version {v}) read back");
                ctx.check(4, cycle, &what, &me, &part, &reference[2])?;
                day3.release_read()?;
            }
        }
        _ => {
            let mut day2 = fed.open_wait::<f64, _>(&world, "forecast/day2/t", me.clone(), WAIT)?;
            let mut day3 = fed.create::<f64, _>(
                &world,
                "forecast/day3/t",
                ArrayOptions::new(me.clone())
                    .redundancy(1, 2)
                    .expect_readers(1),
            )?;
            for cycle in first..cycles {
                let reference = model::serial(&ctx.params, cycle);
                let v = day2.acquire_read_timeout(VersionReq::Exactly(version_of(cycle)), WAIT)?;
                let mut part = day2.local()?.to_vec();
                ctx.check(
                    3,
                    cycle,
                    &format!("day 2 version {v} received (cyclic -> block-cyclic)"),
                    &me,
                    &part,
                    &reference[1],
                )?;
                ctx.picture(&day2, &format!("day2_cycle{cycle}.png"))?;
                day2.release_read()?;
                model::day3_tiles(&ctx.params, &me, ctx.rank(), &mut part)?;
                day3.acquire_overwrite()?; // every element is written
                day3.local_mut()?.copy_from_slice(&part);
                let v3 = day3.release()?;
                ctx.check(
                    3,
                    cycle,
                    &format!("day 3 released as version {v3}"),
                    &me,
                    &part,
                    &reference[2],
                )?;
                day3.acquire_read(VersionReq::Exactly(v3))?;
                ctx.picture(&day3, &format!("day3_cycle{cycle}.png"))?;
                if let Some(dir) = &checkpoints {
                    let to = dir.join(format!("cycle-{cycle}"));
                    day3.checkpoint(&to)?;
                    if ctx.rank() == 0 {
                        println!(
                            "stage 3 cycle {cycle}: day 3 checkpointed to {}",
                            to.display()
                        );
                    }
                }
                day3.release_read()?;
            }
        }
    }
    let cycles = cycles.saturating_sub(first);
    let mut failed = 0i32;
    world.all_reduce_into(&i32::from(!ctx.ok), &mut failed, SystemOperation::sum());
    if world.rank() == 0 {
        if failed == 0 {
            println!(
                "WEATHER stage {stage_arg} verified: {cycles} cycles in {:.2} s, every field equal to the single-process model",
                t0.elapsed().as_secs_f64()
            );
        } else {
            println!(
                "WEATHER stage {stage_arg} FAILED: a field differs from the single-process model"
            );
        }
    }
    world.barrier();
    drop(fed); // leave: homes move to the replicas before the job ends
    if failed != 0 {
        return Err("a field differs from the single-process model".into());
    }
    Ok(())
}
