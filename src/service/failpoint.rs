//! Fault injection for fault tests: named points where a process can be made to pause or die at
//! a precise moment (a home between publishing and answering, a provider in the middle of a
//! read, a client between publishing and committing), so that a test kills it exactly there
//! instead of hoping for a lucky race.
//!
//! `JUXMEM_FAILPOINTS=NAME=ACTION[@FILE][,...]`, where ACTION is `sleep:MILLISECONDS` (the
//! process says so on stderr, then sleeps: the test kills it meanwhile), `kill` (the process
//! SIGKILLs itself), `fail` (the operation fails there as if the network had failed) or
//! `panic` (the thread panics there: tests of the servers' panic boundary). With
//! `@FILE`, the point is armed by creating FILE and fires once, in the first process that
//! removes it: several daemons can share one setting and exactly one acts, at the moment the
//! test chose. A test can also [`arm`] a point in its own process. Unset, a point costs one
//! check of an initialised `OnceLock` and of an empty list.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// What a failpoint does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Pause the thread.
    Sleep(Duration),
    /// SIGKILL the process.
    Kill,
    /// Make the operation fail there (the caller turns it into a network error).
    Fail,
    /// Panic there.
    Panic,
}

/// Points armed in this process by [`arm`], each firing once.
static ARMED: Mutex<Vec<(String, Action)>> = Mutex::new(Vec::new());

/// Arms point `name` in this process: the next pass through it does `action` (once).
pub fn arm(name: &str, action: Action) {
    ARMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), action));
}

struct Point {
    name: String,
    action: Action,
    armed_by: Option<std::path::PathBuf>,
}

fn points() -> &'static [Point] {
    static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let Ok(spec) = std::env::var("JUXMEM_FAILPOINTS") else {
            return Vec::new();
        };
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|item| {
                let (name, rest) = item.split_once('=')?;
                let (action, armed_by) = match rest.split_once('@') {
                    Some((a, f)) => (a, Some(std::path::PathBuf::from(f.trim()))),
                    None => (rest, None),
                };
                let action = match action.trim() {
                    "kill" => Action::Kill,
                    "fail" => Action::Fail,
                    "panic" => Action::Panic,
                    a => Action::Sleep(Duration::from_millis(
                        a.strip_prefix("sleep:")?.parse().ok()?,
                    )),
                };
                Some(Point {
                    name: name.trim().to_string(),
                    action,
                    armed_by,
                })
            })
            .collect()
    })
}

/// Passes the point `name`: pauses or dies if asked to; true if the operation must fail here.
pub fn hit(name: &str) -> bool {
    let armed = {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| armed.remove(i).1)
    };
    let from_env = points().iter().filter(|p| p.name == name).find_map(|p| {
        match &p.armed_by {
            // Not armed, or another process took it.
            Some(f) if std::fs::remove_file(f).is_err() => None,
            _ => Some(p.action.clone()),
        }
    });
    let mut fail = false;
    for action in armed.into_iter().chain(from_env) {
        eprintln!("juxmem failpoint {name} reached: {action:?}");
        match action {
            Action::Sleep(d) => std::thread::sleep(d),
            Action::Kill => {
                // SAFETY: signalling ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            Action::Fail => fail = true,
            Action::Panic => panic!("failpoint {name}"),
        }
    }
    fail
}
