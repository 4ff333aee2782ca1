//! `juxmem launch`: a local federation (managers and provider daemons) started from a
//! pipeline file, the pipeline's stages run with `mpirun`, everything stopped by PID at the end.
//!
//! Output: every line of every process, prefixed with its cluster (`[A1] ...`), as it comes.
//! On a terminal (unless `--plain`), the stages' standard output instead updates one status
//! line per stage in place: its progress (`cycle k of n`, from the `cycle K` its lines mention
//! and the `--cycles N` among its arguments), the time it has run, and its latest line. Error
//! output and the daemons' lines still scroll above the status lines, and a stage that fails
//! has its last lines printed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use juxmem::config::{Config, Rendezvous};
use juxmem::error::{Error, Result};
use juxmem::pipeline;

use crate::status::{federation_status, print_status};
use crate::{install_signal_handlers, Args, STOP, USAGE};

/// A child process whose output lines go to the [`Board`].
struct Supervised {
    child: Child,
    echo: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `cmd`, its output lines going to `board`: as stage `stage`'s, or prefixed with
/// `[name]`.
fn spawn_echoed(
    name: &str,
    mut cmd: Command,
    board: &Arc<Board>,
    stage: Option<usize>,
) -> Result<Supervised> {
    // Never the launcher's own stdin: mpirun forwards a terminal's input to rank 0, and two
    // stages (or a stage started in the background) reading one terminal can stop on it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {name} ({cmd:?}): {e}")))?;
    let mut echo = vec![];
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("piped"));
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("piped"));
    for (stream, is_err) in [(out, false), (err, true)] {
        let prefix = format!("[{name}] ");
        let board = board.clone();
        echo.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                match stage {
                    Some(i) => board.stage_output(i, &line, is_err),
                    None if is_err => board.err(&format!("{prefix}{line}")),
                    None => board.say(&format!("{prefix}{line}")),
                }
            }
        }));
    }
    Ok(Supervised { child, echo })
}

/// Where the launcher's output goes: plain lines, or (on a terminal) a block of status lines,
/// one per stage, redrawn in place below the lines that scroll.
struct Board {
    state: Mutex<BoardState>,
}

struct BoardState {
    live: bool,
    stages: Vec<StageLine>,
    /// Status lines currently drawn below the cursor's line (0: none).
    drawn: usize,
}

struct StageLine {
    /// `stage 1 (A1)`.
    label: String,
    cluster: String,
    /// `--cycles N` among the stage's arguments.
    cycles: Option<u64>,
    /// Latest `cycle K` mentioned (0-based, as the stages print it).
    cycle: Option<u64>,
    started: Option<Instant>,
    finished: Option<(ExitStatus, Duration)>,
    last: String,
    /// Its last lines of standard output (only the latest is on screen), printed if it fails.
    tail: VecDeque<String>,
}

const TAIL: usize = 20;

impl StageLine {
    fn status(&self) -> String {
        let progress = match (self.cycle, self.cycles) {
            (Some(k), Some(n)) => Some(format!("cycle {} of {n}", k + 1)),
            (Some(k), None) => Some(format!("cycle {}", k + 1)),
            (None, _) => None,
        };
        let state = match (self.started, self.finished) {
            (_, Some((status, t))) => {
                let outcome = if status.success() {
                    "done".to_string()
                } else {
                    format!("FAILED ({status})")
                };
                let progress = progress.map_or(String::new(), |p| format!(", {p}"));
                format!("{outcome}{progress}, {:.1} s", t.as_secs_f64())
            }
            (Some(t0), None) => {
                let progress = progress.unwrap_or_else(|| match self.cycles {
                    Some(n) => format!("starting, {n} cycles"),
                    None => "starting".to_string(),
                });
                format!("{progress}, {:.0} s", t0.elapsed().as_secs_f64())
            }
            (None, None) => "waiting".to_string(),
        };
        format!("{}: {state} | {}", self.label, self.last)
    }
}

/// The cycle a stage's line mentions: the number after the word `cycle`.
fn cycle_of(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("cycle") {
            let n = words.next()?;
            return n.trim_end_matches([':', ',', '.', ';']).parse().ok();
        }
    }
    None
}

/// `--cycles N` (or `--cycles=N`) among a stage's arguments.
fn cycles_arg(argv: &[String]) -> Option<u64> {
    argv.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--cycles") {
            Some("") => argv.get(i + 1)?.parse().ok(),
            Some(v) => v.strip_prefix('=')?.parse().ok(),
            None => None,
        })
}

/// Columns of the terminal on standard output.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize we own; a failure leaves it zeroed.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
    }
}

/// `s` cut to `width` characters (a status line must never wrap, or redrawing goes wrong).
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(3)).collect();
        t.push_str("...");
        t
    }
}

impl Board {
    fn new(live: bool) -> Board {
        Board {
            state: Mutex::new(BoardState {
                live,
                stages: vec![],
                drawn: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_stage(&self, label: String, cluster: &str, argv: &[String]) -> usize {
        let mut s = self.lock();
        s.stages.push(StageLine {
            label,
            cluster: cluster.to_string(),
            cycles: cycles_arg(argv),
            cycle: None,
            started: None,
            finished: None,
            last: String::new(),
            tail: VecDeque::new(),
        });
        s.stages.len() - 1
    }

    /// A line of the launcher's own, or of a daemon (standard output).
    fn say(&self, line: &str) {
        self.lock().scroll(line, false);
    }

    /// A line for standard error.
    fn err(&self, line: &str) {
        self.lock().scroll(line, true);
    }

    fn started(&self, i: usize) {
        let mut s = self.lock();
        s.stages[i].started = Some(Instant::now());
        s.redraw();
    }

    fn stage_output(&self, i: usize, line: &str, is_err: bool) {
        let mut s = self.lock();
        if !s.live {
            let prefix = format!("[{}] ", s.stages[i].cluster);
            s.scroll(&format!("{prefix}{line}"), is_err);
            return;
        }
        if is_err {
            let prefix = format!("[{}] ", s.stages[i].cluster);
            s.scroll(&format!("{prefix}{line}"), true);
            return;
        }
        let st = &mut s.stages[i];
        if st.tail.len() == TAIL {
            st.tail.pop_front();
        }
        st.tail.push_back(line.to_string());
        if let Some(k) = cycle_of(line) {
            st.cycle = Some(st.cycle.map_or(k, |c| c.max(k)));
        }
        st.last = line.to_string();
        s.redraw();
    }

    /// Stage `i` ended; on a terminal a failed stage's last lines are printed.
    fn finished(&self, i: usize, status: ExitStatus, after: Duration) {
        let mut s = self.lock();
        s.stages[i].finished = Some((status, after));
        if !s.live {
            let line = format!(
                "launch: stage on {} finished ({status}) after {:.1} s",
                s.stages[i].cluster,
                after.as_secs_f64()
            );
            s.scroll(&line, false);
            return;
        }
        if !status.success() && !s.stages[i].tail.is_empty() {
            let tail: Vec<String> = s.stages[i].tail.iter().cloned().collect();
            let head = format!(
                "launch: {} failed ({status}); its last lines of output:",
                s.stages[i].label
            );
            s.scroll(&head, true);
            for l in tail {
                s.scroll(&format!("  {l}"), true);
            }
        }
        s.redraw();
    }

    /// Redraws the status lines (their clocks move).
    fn tick(&self) {
        let mut s = self.lock();
        if s.live && s.drawn > 0 {
            s.redraw();
        }
    }

    /// Leaves the status lines on screen as they are; what follows prints below them.
    fn freeze(&self) {
        let mut s = self.lock();
        s.redraw();
        s.drawn = 0;
        s.live = false;
    }
}

impl BoardState {
    fn clear(&mut self, out: &mut impl Write) {
        if self.drawn > 0 {
            // Up to the first status line, then erase to the end of the screen.
            let _ = write!(out, "\x1b[{}A\r\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self, out: &mut impl Write) {
        if !self.live || self.stages.iter().all(|s| s.started.is_none()) {
            return;
        }
        let width = terminal_width().saturating_sub(1).max(20);
        for st in &self.stages {
            let _ = writeln!(out, "{}", fit(&st.status(), width));
        }
        self.drawn = self.stages.len();
    }

    fn redraw(&mut self) {
        let mut out = std::io::stdout().lock();
        self.clear(&mut out);
        self.draw(&mut out);
        let _ = out.flush();
    }

    /// Prints a line above the status lines.
    fn scroll(&mut self, line: &str, is_err: bool) {
        let mut out = std::io::stdout().lock();
        self.clear(&mut out);
        if is_err {
            let _ = out.flush();
            eprintln!("{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        self.draw(&mut out);
        let _ = out.flush();
    }
}

fn terminate(p: &mut Supervised, grace: Duration) {
    if let Ok(Some(_)) = p.child.try_wait() {
        return;
    }
    // SAFETY: signalling a child we started, by its pid.
    unsafe {
        libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = p.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn run_launch(args: &Args) -> Result<()> {
    let file = args
        .positional
        .first()
        .ok_or_else(|| Error::InvalidArgument(format!("launch needs a pipeline file\n{USAGE}")))?;
    let spec = pipeline::read(Path::new(file))?;
    let timeout = Duration::from_secs_f64(args.options.get("timeout").map_or(Ok(600.0), |t| {
        t.parse::<f64>()
            .map_err(|_| Error::InvalidArgument(format!("bad --timeout {t}")))
    })?);
    let dir = args
        .options
        .get("dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("juxmem-{}-{}", spec.federation, std::process::id()))
        });
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::InvalidArgument(format!("cannot create {}: {e}", dir.display())))?;
    std::fs::write(dir.join("federation"), &spec.federation)
        .map_err(|e| Error::InvalidArgument(format!("cannot write in {}: {e}", dir.display())))?;
    // The local federation's own CA and credentials, found by its processes in the directory
    // (`Config::credentials_dir`): the main job stays one command.
    let insecure = Config::from_env()?.insecure;
    if !insecure {
        let clusters: Vec<&str> = spec.clusters.iter().map(|c| c.name.as_str()).collect();
        juxmem::credentials::local_federation(
            &juxmem::config::local_credentials(&dir),
            &spec.federation,
            &clusters,
        )?;
    }
    install_signal_handlers();
    let exe =
        std::env::current_exe().map_err(|e| Error::InvalidArgument(format!("own path: {e}")))?;
    let base_env = |cmd: &mut Command, cluster: &str| {
        cmd.env("JUXMEM_FEDERATION_DIR", &dir)
            .env("JUXMEM_FEDERATION_ID", &spec.federation)
            .env("JUXMEM_CLUSTER", cluster)
            .env_remove("JUXMEM_FEDERATION")
            .env_remove("JUXMEM_CREDENTIALS");
    };
    let plain =
        args.flags.iter().any(|f| f == "plain") || std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let board = Arc::new(Board::new(!plain && std::io::stdout().is_terminal()));
    let mut daemons: Vec<Supervised> = Vec::new();
    let result = (|| -> Result<bool> {
        let t0 = Instant::now();
        board.say(&format!(
            "launch: federation {:?} in {}",
            spec.federation,
            dir.display()
        ));
        for c in &spec.clusters {
            let mut cmd = Command::new(&exe);
            cmd.args(["manager", "--cluster", &c.name]);
            base_env(&mut cmd, &c.name);
            // A local federation stays on this host unless told otherwise (the manager would
            // otherwise advertise the default route's address; everyone else routes toward it).
            if std::env::var_os("JUXMEM_LISTEN").is_none()
                && std::env::var_os("JUXMEM_INTERFACE").is_none()
            {
                cmd.env("JUXMEM_LISTEN", "127.0.0.1:0");
            }
            daemons.push(spawn_echoed(
                &format!("{} manager", c.name),
                cmd,
                &board,
                None,
            )?);
            let contact_file = dir.join(format!("{}.manager", c.name));
            wait_until(
                &format!("manager of {} to start", c.name),
                Duration::from_secs(20),
                || contact_file.exists(),
            )?;
        }
        let mut cfg = Config::from_env()?;
        cfg.rendezvous = Some(Rendezvous::Dir(dir.clone()));
        cfg.federation = spec.federation.clone();
        // The launcher asks as a member of the first cluster, with its credentials.
        cfg.cluster = spec.clusters[0].name.clone();
        cfg.credentials = None;
        for c in &spec.clusters {
            for k in 0..c.providers {
                let mut cmd = Command::new(&exe);
                let label = format!("provider-{k}");
                let cap = c.capacity.to_string();
                cmd.args([
                    "provider",
                    "--cluster",
                    &c.name,
                    "--name",
                    &label,
                    "--capacity",
                    &cap,
                ]);
                base_env(&mut cmd, &c.name);
                daemons.push(spawn_echoed(
                    &format!("{} {label}", c.name),
                    cmd,
                    &board,
                    None,
                )?);
            }
        }
        let want: u32 = spec.clusters.iter().map(|c| c.providers).sum();
        wait_until(
            "provider daemons to register",
            Duration::from_secs(20),
            || {
                federation_status(&cfg)
                    .map(|s| s.iter().map(|c| c.members.len() as u32).sum::<u32>() >= want)
                    .unwrap_or(false)
            },
        )?;
        board.say(&format!(
            "launch: {} clusters ({}) with {want} provider daemon(s) up in {:.1} s",
            spec.clusters.len(),
            spec.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            t0.elapsed().as_secs_f64()
        ));
        let mut stages = Vec::new();
        for (i, s) in spec.stages.iter().enumerate() {
            let mut cmd = Command::new("mpirun");
            cmd.arg("-np").arg(s.np.to_string()).args(&s.argv);
            base_env(&mut cmd, &s.cluster);
            // Stages start together: each mpirun gets its own session directory (Open MPI's
            // shared one races: "File exists" in session_dir.c).
            let session = dir.join(format!("mpi-session-{i}"));
            std::fs::create_dir_all(&session).map_err(|e| {
                Error::InvalidArgument(format!("cannot create {}: {e}", session.display()))
            })?;
            cmd.env("OMPI_MCA_orte_tmpdir_base", &session);
            board.say(&format!(
                "launch: stage {} on cluster {} ({} ranks): {}",
                i + 1,
                s.cluster,
                s.np,
                s.argv.join(" ")
            ));
            let k = board.add_stage(
                format!("stage {} ({})", i + 1, s.cluster),
                &s.cluster,
                &s.argv,
            );
            stages.push(spawn_echoed(&s.cluster, cmd, &board, Some(k))?);
            board.started(k);
        }
        let start = Instant::now();
        let mut ticked = Instant::now();
        let mut ok = true;
        let mut pending: Vec<usize> = (0..stages.len()).collect();
        while !pending.is_empty() {
            if STOP.load(Ordering::SeqCst) || start.elapsed() > timeout {
                board.err(&format!(
                    "launch: stopping the stages ({})",
                    if STOP.load(Ordering::SeqCst) {
                        "interrupted"
                    } else {
                        "timed out"
                    }
                ));
                for &i in &pending {
                    terminate(&mut stages[i], Duration::from_secs(5));
                }
                board.freeze();
                return Ok(false);
            }
            pending.retain(|&i| match stages[i].child.try_wait() {
                Ok(Some(status)) => {
                    board.finished(i, status, start.elapsed());
                    ok &= status.success();
                    false
                }
                _ => true,
            });
            if ticked.elapsed() >= Duration::from_secs(1) {
                board.tick();
                ticked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in &mut stages {
            for h in s.echo.drain(..) {
                let _ = h.join();
            }
        }
        board.freeze();
        println!("launch: federation state at the end:");
        match federation_status(&cfg) {
            Ok(s) => print_status(&s),
            Err(e) => eprintln!("launch: status: {e}"),
        }
        Ok(ok)
    })();
    if !daemons.is_empty() {
        println!("launch: stopping the federation (its data lives in memory and ends with it)");
    }
    // Managers first: with the whole federation going, nothing is to be handed over (the
    // providers' goodbyes then find no manager, which they take quietly).
    for d in daemons.iter_mut() {
        terminate(d, Duration::from_secs(10));
    }
    if !args.flags.iter().any(|f| f == "keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(true) => {
            println!("launch: all stages succeeded");
            Ok(())
        }
        Ok(false) => Err(Error::InvalidArgument("a stage failed".into())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_read_from_lines_and_arguments() {
        assert_eq!(
            cycle_of("stage 1 cycle 0: day 1 released as version 1"),
            Some(0)
        );
        assert_eq!(cycle_of("stage 2 (C) cycle 12: day 1 version 13"), Some(12));
        assert_eq!(cycle_of("wrote out/weather/day1_cycle0.png"), None);
        assert_eq!(cycle_of("stage 1 on cluster A1: 2 ranks"), None);
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(cycles_arg(&argv("weather --stage 1 --cycles 4")), Some(4));
        assert_eq!(cycles_arg(&argv("weather --cycles=7 --stage 2")), Some(7));
        assert_eq!(cycles_arg(&argv("weather_stage2 3")), None);
        assert_eq!(fit("abcdef", 10), "abcdef");
        assert_eq!(fit("abcdefghijkl", 10), "abcdefg...");
    }
}
