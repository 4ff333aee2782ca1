//! A model check (stateright) of federation-wide name uniqueness (`service::names`): two
//! creators of one name, at clusters A and B of a three-cluster federation, each claiming the
//! name at every cluster in the one order (A, B, C; at its own cluster the claim is its
//! creation in progress), placing its blocks while time passes, renewing its claims, and adding
//! its entry only while they are valid by its clock. Each cluster's answer to a claim is the
//! library's [`Claims::claim`] (expiry included) after the directory's own word (an entry, or
//! a creation in progress); the creator's deadline is the library's [`valid_until`].
//!
//! Time: a global clock of whole seconds that any step may advance (up to a bound); messages
//! are delivered in any order and any time later (or never). Clocks agree (the real margin of a
//! quarter lease covers their drift). Bounds: the clock, one renewal retry after a refusal and
//! one renewal round after the deadline passed.
//!
//! Properties: always at most one cluster holds an entry for the name; sometimes a creator
//! succeeds; sometimes one succeeds after a claim expired and was taken over (the case the
//! renewal exists for). `JUXMEM_NAMES_MUTATION=no-renewal` skips the renewal (the entry is
//! added once placed): the checker then finds two entries.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use juxmem::service::names::{claim_order, valid_until, ClaimAnswer, Claimant, Claims};
use stateright::{Checker, Expectation, HasDiscoveries, Model, Property};

const CLUSTERS: [&str; 3] = ["A", "B", "C"];
const NAME: &str = "x";
/// The claim lease, in clock seconds.
const LEASE: u64 = 4;
const MAX_CLOCK: u8 = 11;

fn at(now: u8) -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_secs(u64::from(now))
}

fn lease() -> Duration {
    Duration::from_secs(LEASE)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cluster {
    /// The creator whose entry this cluster's directory holds.
    entry: Option<usize>,
    /// The creator whose creation is in progress here.
    creating: Option<usize>,
    claims: Claims,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// Claiming at the `k`-th cluster of the order.
    Claim(usize),
    /// Placing the blocks (time passes).
    Place,
    /// Renewing the `k`-th remote claim; `sent`: when each granted renewal was asked.
    Renew {
        k: usize,
        sent: Vec<u8>,
        retries: u8,
        round: u8,
    },
    /// Every claim renewed: add the entry if they are still valid.
    Commit {
        sent: Vec<u8>,
        round: u8,
    },
    Done(bool),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Creator {
    home: usize,
    phase: Phase,
    /// A request is in flight (the next step is its answer).
    waiting: bool,
    /// Remote clusters where the name is claimed, in order.
    claimed: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Msg {
    Claim { to: usize, by: usize, sent: u8 },
    Answer { to: usize, granted: u8, sent: u8 },
    Drop { to: usize, by: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    now: u8,
    clusters: Vec<Cluster>,
    creators: Vec<Creator>,
    net: Vec<Msg>,
    /// A claim expired and another creator's claim took its place.
    taken_over: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Tick,
    Step(usize),
    Deliver(usize),
}

struct Names {
    renew: bool,
}

fn claimant(i: usize, home: usize) -> Claimant {
    Claimant {
        cluster: CLUSTERS[home].into(),
        token: i as u64,
    }
}

/// Answer codes on the wire of the model: 0 granted, 1 claimed elsewhere, 2 exists (an array
/// or a namespace: the model's creators make arrays, the same claims either way), 3 full.
fn code(a: &ClaimAnswer) -> u8 {
    match a {
        ClaimAnswer::Granted => 0,
        ClaimAnswer::Claimed { .. } => 1,
        ClaimAnswer::Exists { .. } | ClaimAnswer::NamespaceExists { .. } => 2,
        ClaimAnswer::Full => 3,
    }
}

impl State {
    fn fail(&mut self, i: usize) {
        let c = &mut self.creators[i];
        c.phase = Phase::Done(false);
        c.waiting = false;
        let home = c.home;
        for &to in &c.claimed.clone() {
            self.net.push(Msg::Drop { to, by: i });
        }
        if self.clusters[home].creating == Some(i) {
            self.clusters[home].creating = None;
        }
        self.net.sort();
    }

    fn send_claim(&mut self, i: usize, to: usize) {
        self.net.push(Msg::Claim {
            to,
            by: i,
            sent: self.now,
        });
        self.net.sort();
        self.creators[i].waiting = true;
    }
}

impl Model for Names {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let cluster = Cluster {
            entry: None,
            creating: None,
            claims: Claims::default(),
        };
        vec![State {
            now: 0,
            clusters: vec![cluster; CLUSTERS.len()],
            creators: [0, 1]
                .iter()
                .map(|&home| Creator {
                    home,
                    phase: Phase::Claim(0),
                    waiting: false,
                    claimed: vec![],
                })
                .collect(),
            net: vec![],
            taken_over: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if s.now < MAX_CLOCK {
            actions.push(Action::Tick);
        }
        for (i, c) in s.creators.iter().enumerate() {
            if !c.waiting && !matches!(c.phase, Phase::Done(_)) {
                actions.push(Action::Step(i));
            }
        }
        for k in 0..s.net.len() {
            if k == 0 || s.net[k] != s.net[k - 1] {
                actions.push(Action::Deliver(k));
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let order: Vec<usize> = {
            let names = claim_order(CLUSTERS.iter().map(|c| c.to_string()).collect());
            names
                .iter()
                .map(|n| CLUSTERS.iter().position(|c| c == n).unwrap())
                .collect()
        };
        match action {
            Action::Tick => s.now += 1,
            Action::Step(i) => {
                let home = s.creators[i].home;
                match s.creators[i].phase.clone() {
                    Phase::Claim(k) if k == order.len() => s.creators[i].phase = Phase::Place,
                    Phase::Claim(k) if order[k] == home => {
                        // `Directory::begin_create`: refused if the name is here, being created
                        // here, or claimed by a live claim.
                        let c = &mut s.clusters[home];
                        if c.entry.is_some()
                            || c.creating.is_some()
                            || c.claims.holder(NAME, at(s.now)).is_some()
                        {
                            s.fail(i);
                        } else {
                            c.creating = Some(i);
                            s.creators[i].phase = Phase::Claim(k + 1);
                        }
                    }
                    Phase::Claim(k) => s.send_claim(i, order[k]),
                    Phase::Place if self.renew => {
                        s.creators[i].phase = Phase::Renew {
                            k: 0,
                            sent: vec![],
                            retries: 0,
                            round: 0,
                        }
                    }
                    Phase::Place => {
                        s.creators[i].phase = Phase::Commit {
                            sent: vec![],
                            round: 0,
                        }
                    }
                    Phase::Renew { k, sent, round, .. } if k == s.creators[i].claimed.len() => {
                        s.creators[i].phase = Phase::Commit { sent, round }
                    }
                    Phase::Renew { k, .. } => {
                        let to = s.creators[i].claimed[k];
                        s.send_claim(i, to);
                    }
                    Phase::Commit { sent, round } => {
                        let sent: Vec<Instant> = sent.iter().map(|&t| at(t)).collect();
                        let valid =
                            valid_until(&sent, lease()).is_none_or(|until| at(s.now) < until);
                        if valid {
                            let c = &mut s.clusters[home];
                            c.creating = None;
                            c.entry = Some(i);
                            s.creators[i].phase = Phase::Done(true);
                            for to in s.creators[i].claimed.clone() {
                                s.net.push(Msg::Drop { to, by: i });
                            }
                            s.net.sort();
                        } else if round == 0 {
                            s.creators[i].phase = Phase::Renew {
                                k: 0,
                                sent: vec![],
                                retries: 0,
                                round: 1,
                            };
                        } else {
                            s.fail(i);
                        }
                    }
                    Phase::Done(_) => return None,
                }
            }
            Action::Deliver(k) => match s.net.remove(k) {
                Msg::Claim { to, by, sent } => {
                    let c = &mut s.clusters[to];
                    let local = if c.entry.is_some() {
                        Some(ClaimAnswer::Exists {
                            cluster: CLUSTERS[to].into(),
                        })
                    } else if c.creating.is_some() {
                        Some(ClaimAnswer::Claimed {
                            cluster: CLUSTERS[to].into(),
                        })
                    } else {
                        None
                    };
                    let before = c.claims.holder(NAME, at(s.now)).cloned();
                    let had = before.is_some();
                    let who = claimant(by, s.creators[by].home);
                    let answer = c.claims.claim(NAME, &who, at(s.now), lease(), local);
                    if answer == ClaimAnswer::Granted && !had {
                        // Granted where another creator had claimed before and let it expire.
                        s.taken_over |= s.creators.iter().enumerate().any(|(j, o)| {
                            j != by && o.claimed.contains(&to) && !matches!(o.phase, Phase::Done(_))
                        });
                    }
                    s.net.push(Msg::Answer {
                        to: by,
                        granted: code(&answer),
                        sent,
                    });
                    s.net.sort();
                }
                Msg::Drop { to, by } => {
                    let who = claimant(by, s.creators[by].home);
                    s.clusters[to].claims.drop_claim(NAME, &who);
                }
                Msg::Answer {
                    to: i,
                    granted,
                    sent,
                } => {
                    let c = &mut s.creators[i];
                    c.waiting = false;
                    match c.phase.clone() {
                        Phase::Claim(k) => {
                            if granted == 0 {
                                c.claimed.push(order[k]);
                                c.phase = Phase::Claim(k + 1);
                            } else {
                                s.fail(i);
                            }
                        }
                        Phase::Renew {
                            k,
                            sent: mut sent_at,
                            retries,
                            round,
                        } => match granted {
                            0 => {
                                sent_at.push(sent);
                                c.phase = Phase::Renew {
                                    k: k + 1,
                                    sent: sent_at,
                                    retries,
                                    round,
                                };
                            }
                            1 if retries < 1 => {
                                c.phase = Phase::Renew {
                                    k,
                                    sent: sent_at,
                                    retries: retries + 1,
                                    round,
                                }
                            }
                            _ => s.fail(i),
                        },
                        _ => {}
                    }
                }
            },
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one entry for the name", |_, s: &State| {
                s.clusters.iter().filter(|c| c.entry.is_some()).count() <= 1
            }),
            Property::sometimes("a creator succeeds", |_, s: &State| {
                s.clusters.iter().any(|c| c.entry.is_some())
            }),
            Property::sometimes(
                "a creator succeeds after a claim was taken over",
                |_, s: &State| s.taken_over && s.clusters.iter().any(|c| c.entry.is_some()),
            ),
        ]
    }
}

fn check(model: Names) -> bool {
    let t = Instant::now();
    let checker = model
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    println!(
        "names model: {} states ({} unique), max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        t.elapsed().as_secs_f64()
    );
    let mut ok = true;
    for p in checker.model().properties() {
        match (checker.discovery(p.name), p.expectation) {
            (Some(path), Expectation::Always) => {
                ok = false;
                println!(
                    "COUNTEREXAMPLE to \"{}\" ({} steps):\n{:?}",
                    p.name,
                    path.clone().into_actions().len(),
                    path.last_state()
                );
            }
            (Some(_), _) => println!("example of \"{}\" found", p.name),
            (None, Expectation::Sometimes) => {
                ok = false;
                println!("NO example of \"{}\"", p.name)
            }
            (None, _) => println!("holds: \"{}\"", p.name),
        }
    }
    ok
}

#[test]
fn one_name_one_array_whatever_the_timing() {
    let renew = std::env::var("JUXMEM_NAMES_MUTATION").as_deref() != Ok("no-renewal");
    assert!(check(Names { renew }), "see the output above");
}
