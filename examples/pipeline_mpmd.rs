//! The three-stage weather pipeline inside one MPMD `mpirun`, handing a 2-D field from stage to
//! stage with automatic redistribution:
//!
//! ```text
//! mpirun -np 2 pipeline_mpmd --stage 1 : -np 3 pipeline_mpmd --stage 2 : -np 2 pipeline_mpmd --stage 3
//! ```
//!
//! Stage 1 holds the field in (block, block) rows and computes day 1 (stencil with halo rows),
//! stage 2 in (cyclic, block) rows and computes day 2 (row-wise implicit diffusion), stage 3 in
//! (block-cyclic(16), block-cyclic(16)) tiles and computes day 3 (dense per-tile smoothing).
//! Several forecast cycles stream through. Every stage checks the field it receives and the one
//! it computes against a single-process run of the same model, element by element.

#[path = "weather/model.rs"]
mod model;

use juxmem::layout::Layout;
use juxmem::redistribute::mpi::{redistribute, RankMap};
use juxmem::transport::mpi::check_thread_level;
use juxmem::Plan;
use model::Params;
use mpi::collective::SystemOperation;
use mpi::topology::Color;
use mpi::traits::*;

struct Stage<'a, C: Communicator> {
    world: &'a C,
    local: mpi::topology::SimpleCommunicator,
    number: usize,
    /// World ranks of each stage (index 0 = stage 1).
    ranks: Vec<Vec<i32>>,
    params: Params,
}

impl<C: Communicator> Stage<'_, C> {
    fn layout(&self, stage: usize) -> juxmem::Result<Layout> {
        model::stage_layout(&self.params, stage, self.ranks[stage - 1].len() as u64)
    }

    fn grid_rank(&self) -> u64 {
        self.local.rank() as u64
    }

    /// Hands the field from stage `from` to stage `from + 1`; returns the receiver's part.
    fn hand_off(&self, from: usize, part: Option<&[f64]>) -> juxmem::Result<Option<Vec<f64>>> {
        let (src, dst) = (self.layout(from)?, self.layout(from + 1)?);
        let plan = Plan::cached(&src, &dst)?;
        let map = RankMap {
            src: self.ranks[from - 1].clone(),
            dst: self.ranks[from].clone(),
        };
        let mut out = if self.number == from + 1 {
            Some(vec![0.0; dst.local_len(self.grid_rank())? as usize])
        } else {
            None
        };
        redistribute(self.world, &plan, &map, part, out.as_deref_mut())?;
        Ok(out)
    }

    /// Largest difference (over the stage) between its parts and the reference field.
    fn max_error(&self, layout: &Layout, part: &[f64], reference: &[f64]) -> juxmem::Result<f64> {
        let err = model::max_error(&self.params, layout, self.grid_rank(), part, reference)?;
        let mut worst = 0.0;
        self.local
            .all_reduce_into(&err, &mut worst, SystemOperation::max());
        Ok(worst)
    }

    fn report(&self, cycle: u64, what: &str, err: f64) -> bool {
        if self.local.rank() == 0 {
            println!(
                "stage {} cycle {cycle}: {what}: max |error| = {err:.3e}",
                self.number
            );
        }
        err == 0.0
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("pipeline_mpmd: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let (universe, level) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        .ok_or("MPI is already initialised")?;
    check_thread_level(level)?;
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let number: usize = arg("--stage")
        .and_then(|s| s.parse().ok())
        .filter(|n| (1..=3).contains(n))
        .ok_or("--stage 1|2|3 is required")?;
    let cycles: u64 = match arg("--cycles") {
        Some(c) => c.parse().map_err(|e| format!("--cycles {c:?}: {e}"))?,
        None => 3,
    };

    let world = universe.world().duplicate();
    let mut stages = vec![0i32; world.size() as usize];
    world.all_gather_into(&(number as i32), &mut stages[..]);
    let ranks: Vec<Vec<i32>> = (1..=3)
        .map(|s| {
            (0..world.size())
                .filter(|&r| stages[r as usize] == s)
                .collect()
        })
        .collect();
    if ranks.iter().any(|r| r.is_empty()) {
        return Err("every stage needs at least one rank (--stage 1, 2 and 3)".into());
    }
    let local = world
        .split_by_color(Color::with_value(number as i32))
        .ok_or("no communicator for this stage")?;
    let stage = Stage {
        world: &world,
        local,
        number,
        ranks,
        params: Params::demo(),
    };
    if world.rank() == 0 {
        println!(
            "pipeline: {}x{} field, {cycles} cycles, stages on ranks {:?}",
            stage.params.rows, stage.params.cols, stage.ranks
        );
    }
    let layout = stage.layout(number)?;
    if stage.local.rank() == 0 {
        println!(
            "stage {number}: {} ranks, layout {layout}",
            stage.local.size()
        );
    }
    let mut ok = true;
    for cycle in 0..cycles {
        let reference = model::serial(&stage.params, cycle);
        let part = match number {
            1 => {
                let init = model::initial_part(&stage.params, cycle, &layout, stage.grid_rank())?;
                model::day1_band(&stage.params, &stage.local, &layout, init)
            }
            2 => {
                let mut got = stage.hand_off(1, None)?.ok_or("stage 2 received nothing")?;
                let err = stage.max_error(&layout, &got, &reference[0])?;
                ok &= stage.report(cycle, "day 1 received", err);
                model::day2_rows(&stage.params, &layout, stage.grid_rank(), &mut got);
                got
            }
            _ => {
                let mut got = stage.hand_off(2, None)?.ok_or("stage 3 received nothing")?;
                let err = stage.max_error(&layout, &got, &reference[1])?;
                ok &= stage.report(cycle, "day 2 received", err);
                model::day3_tiles(&stage.params, &layout, stage.grid_rank(), &mut got)?;
                got
            }
        };
        let err = stage.max_error(&layout, &part, &reference[number - 1])?;
        ok &= stage.report(cycle, &format!("day {number} computed"), err);
        if number < 3 {
            stage.hand_off(number, Some(&part))?;
        }
    }
    let mut all_ok = 0i32;
    world.all_reduce_into(&i32::from(!ok), &mut all_ok, SystemOperation::sum());
    if world.rank() == stage.ranks[2][0] {
        if all_ok == 0 {
            println!(
                "PIPELINE verified: {cycles} cycles through 3 stages ({} -> {} -> {} ranks); every field equals the single-process model",
                stage.ranks[0].len(),
                stage.ranks[1].len(),
                stage.ranks[2].len()
            );
        } else {
            println!("PIPELINE FAILED: some field differs from the single-process model");
        }
    }
    if all_ok != 0 {
        return Err("a field differs from the single-process model".into());
    }
    Ok(())
}
