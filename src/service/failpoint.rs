//! Fault injection for fault tests: named points where a process can be made to pause or die at
//! a precise moment (a home between publishing and answering, a provider in the middle of a
//! read, a client between publishing and committing), so that a test kills it exactly there
//! instead of hoping for a lucky race.
//!
//! `JUXMEM_FAILPOINTS=NAME=ACTION[@FILE][,...]`, where ACTION is `sleep:MILLISECONDS` (the
//! process says so on stderr, then sleeps: the test kills it meanwhile) or `kill` (the process
//! SIGKILLs itself). With `@FILE`, the point is armed by creating FILE and fires once, in the
//! first process that removes it: several daemons can share one setting and exactly one acts,
//! at the moment the test chose. Unset, a point costs one check of an initialised `OnceLock`.

use std::sync::OnceLock;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
enum Action {
    Sleep(Duration),
    Kill,
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

/// Passes the point `name`: pauses or dies if the environment asks for it.
pub fn hit(name: &str) {
    for p in points() {
        if p.name != name {
            continue;
        }
        if let Some(f) = &p.armed_by {
            if std::fs::remove_file(f).is_err() {
                continue; // not armed, or another process took it
            }
        }
        eprintln!("juxmem failpoint {name} reached: {:?}", p.action);
        match &p.action {
            Action::Sleep(d) => std::thread::sleep(*d),
            Action::Kill => {
                // SAFETY: signalling ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}
