//! Whole groups of replicas in one thread: a simulated network that can lose replicas and cut
//! links, time in ticks, and the invariants raft promises checked after each step.

use super::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The replicated state of the tests: the numbers proposed, in log order.
#[derive(Default)]
struct Numbers(Vec<u64>);

impl Machine for Numbers {
    type Command = u64;
    type Outcome = usize;
    fn apply(&mut self, cmd: u64) -> usize {
        self.0.push(cmd);
        self.0.len()
    }
    fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&self.0).unwrap()
    }
    fn restore(&mut self, s: &[u8]) -> Result<()> {
        self.0 = postcard::from_bytes(s).map_err(|e| Error::Protocol(e.to_string()))?;
        Ok(())
    }
}

/// Pinned, distinct election timeouts: reproducible runs without split votes.
fn timing(id: u64) -> Timing {
    let election = 10 + 3 * (id as usize - 1);
    Timing {
        heartbeat: 2,
        election,
        election_max: election + 1,
        compact_after: 20,
    }
}

struct Sim {
    replicas: BTreeMap<u64, Replica<Numbers>>,
    down: BTreeSet<u64>,
    /// Links cut, both ways: (low id, high id).
    cut: BTreeSet<(u64, u64)>,
    net: VecDeque<(u64, u64, Vec<u8>)>,
    /// Commands whose outcome reached their proposer (acknowledged).
    acked: Vec<u64>,
    pending: BTreeMap<(u64, Proposal), u64>,
    reads: Vec<(u64, ReadTicket)>,
    /// Every leader seen, by term.
    leaders: BTreeMap<u64, u64>,
    /// Where replicas keep their state (none: memory only).
    base: Option<std::path::PathBuf>,
}

impl Sim {
    fn new(n: u64) -> Sim {
        let voters: Vec<u64> = (1..=n).collect();
        let replicas = voters
            .iter()
            .map(|&i| {
                (
                    i,
                    Replica::new(i, &voters, Numbers::default(), timing(i)).unwrap(),
                )
            })
            .collect();
        Sim {
            replicas,
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            net: VecDeque::new(),
            acked: vec![],
            pending: BTreeMap::new(),
            reads: vec![],
            leaders: BTreeMap::new(),
            base: None,
        }
    }

    /// Replicas keeping their state under `base` (one directory each).
    fn on_disk(n: u64, base: &std::path::Path) -> Sim {
        let _ = std::fs::remove_dir_all(base);
        let voters: Vec<u64> = (1..=n).collect();
        let mut s = Sim::new(n);
        for &i in &voters {
            let r = Replica::open(
                &base.join(i.to_string()),
                i,
                Some(&voters),
                Numbers::default(),
                timing(i),
            )
            .unwrap();
            s.replicas.insert(i, r);
        }
        s.base = Some(base.to_path_buf());
        s
    }

    /// Replica `id` crashes (everything in memory lost) and starts again from its directory.
    fn restart(&mut self, id: u64) {
        let dir = self.base.as_ref().expect("on disk").join(id.to_string());
        self.replicas.remove(&id);
        self.pending.retain(|(at, _), _| *at != id);
        self.net.retain(|(from, to, _)| *from != id && *to != id);
        let r = Replica::open(&dir, id, None, Numbers::default(), timing(id)).unwrap();
        self.replicas.insert(id, r);
    }

    fn linked(&self, a: u64, b: u64) -> bool {
        !self.down.contains(&a)
            && !self.down.contains(&b)
            && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Drives every live replica and delivers messages until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            for (&id, r) in self.replicas.iter_mut() {
                if self.down.contains(&id) {
                    continue;
                }
                let out = r.drive().unwrap();
                for (p, _) in out.applied {
                    if let Some(cmd) = self.pending.remove(&(id, p)) {
                        self.acked.push(cmd);
                    }
                }
                self.reads.extend(out.reads.into_iter().map(|t| (id, t)));
                self.net
                    .extend(out.messages.into_iter().map(|(to, m)| (id, to, m)));
            }
            self.check();
            if self.net.is_empty() {
                return;
            }
            while let Some((from, to, m)) = self.net.pop_front() {
                if self.linked(from, to) {
                    if let Some(r) = self.replicas.get_mut(&to) {
                        r.step(&m).unwrap();
                    }
                }
            }
        }
        panic!("the network never quiesced");
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for (id, r) in self.replicas.iter_mut() {
                if !self.down.contains(id) {
                    r.tick();
                }
            }
            self.pump();
        }
    }

    /// raft's promises, checked after every round: one leader per term, and every replica's
    /// applied state a prefix of every other's.
    fn check(&mut self) {
        for (id, r) in &self.replicas {
            if r.is_leader() {
                let prev = self.leaders.insert(r.term(), *id);
                assert!(
                    prev.is_none_or(|p| p == *id),
                    "two leaders in term {}: {prev:?} and {id}",
                    r.term()
                );
            }
        }
        let states: Vec<&Vec<u64>> = self.replicas.values().map(|r| &r.machine().0).collect();
        for a in &states {
            for b in &states {
                let n = a.len().min(b.len());
                assert_eq!(a[..n], b[..n], "replicas applied different orders");
            }
        }
    }

    /// The live leader, if one (and only one) replica that can reach a majority leads.
    fn leader(&self) -> Option<u64> {
        let live: Vec<u64> = self
            .replicas
            .iter()
            .filter(|(id, r)| !self.down.contains(id) && r.is_leader())
            .map(|(id, _)| *id)
            .collect();
        live.into_iter().max_by_key(|id| self.replicas[id].term())
    }

    fn tick_until_leader(&mut self, limit: usize) -> (u64, usize) {
        for t in 1..=limit {
            self.tick(1);
            if let Some(l) = self.leader() {
                return (l, t);
            }
        }
        panic!("no leader within {limit} ticks");
    }

    fn propose(&mut self, at: u64, cmd: u64) -> std::result::Result<(), Refusal> {
        let p = self.replicas.get_mut(&at).unwrap().propose(&cmd)?;
        self.pending.insert((at, p), cmd);
        self.pump();
        Ok(())
    }

    fn state(&self, id: u64) -> &Vec<u64> {
        &self.replicas[&id].machine().0
    }
}

#[test]
fn three_replicas_elect_one_leader_and_apply_one_order() {
    let mut s = Sim::new(3);
    let (l, ticks) = s.tick_until_leader(100);
    assert!(ticks <= 2 * 10 + 2, "{ticks} ticks");
    for c in 0..100 {
        s.propose(l, c).unwrap();
    }
    s.tick(5);
    let want: Vec<u64> = (0..100).collect();
    for id in 1..=3 {
        assert_eq!(s.state(id), &want, "replica {id}");
    }
    assert_eq!(s.acked, want);
    // A follower refuses proposals and names the leader.
    let f = if l == 1 { 2 } else { 1 };
    assert_eq!(
        s.replicas.get_mut(&f).unwrap().propose(&7),
        Err(Refusal::NotLeader { leader: Some(l) })
    );
    // The log was compacted (100 entries, compaction after 20).
    let first = s.replicas[&l].raw.store().first_index().unwrap();
    assert!(first > 50, "first index {first}");
    assert!(s.replicas[&l].lags().iter().all(|&(_, lag)| lag == 0));
}

#[test]
fn a_crashed_leader_is_replaced_and_catches_up_from_a_snapshot() {
    let mut s = Sim::new(3);
    let (l1, _) = s.tick_until_leader(100);
    for c in 0..10 {
        s.propose(l1, c).unwrap();
    }
    s.down.insert(l1);
    let (l2, ticks) = s.tick_until_leader(100);
    assert_ne!(l1, l2);
    // Within an election timeout and the candidates' spread (pre-vote included).
    assert!(ticks <= 2 * (10 + 3 * 2) + 2, "{ticks} ticks");
    for c in 10..60 {
        s.propose(l2, c).unwrap();
    }
    s.down.clear();
    s.tick(30);
    let want: Vec<u64> = (0..60).collect();
    for id in 1..=3 {
        assert_eq!(s.state(id), &want, "replica {id}");
    }
    assert_eq!(s.acked, want);
    assert_eq!(
        s.leader(),
        Some(l2),
        "the old leader does not disturb the new one"
    );
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down_and_nothing_acknowledged_is_lost() {
    let mut s = Sim::new(3);
    let (old, _) = s.tick_until_leader(100);
    for c in 0..5 {
        s.propose(old, c).unwrap();
    }
    for other in 1..=3 {
        if other != old {
            s.cut.insert((old.min(other), old.max(other)));
        }
    }
    // Taken by the old leader, never acknowledged: a minority cannot commit.
    s.propose(old, 100).unwrap();
    let asked = s.replicas.get_mut(&old).unwrap().read_index().unwrap();
    // It steps down within an election timeout (check-quorum); then refuses.
    let mut stepped = None;
    for t in 1..=40 {
        s.tick(1);
        if !s.replicas[&old].is_leader() {
            stepped = Some(t);
            break;
        }
    }
    let stepped = stepped.expect("the cut-off leader never stepped down");
    assert!(stepped <= 2 * (10 + 3 * 2), "{stepped} ticks");
    assert!(matches!(
        s.replicas.get_mut(&old).unwrap().propose(&101),
        Err(Refusal::NotLeader { .. })
    ));
    assert!(
        !s.reads.iter().any(|&(id, t)| id == old && t == asked),
        "a cut-off leader served a read"
    );
    // The majority elects a leader and goes on.
    let (new, _) = s.tick_until_leader(100);
    assert_ne!(new, old);
    for c in 5..20 {
        s.propose(new, c).unwrap();
    }
    // Healed: everyone converges on the majority's log; nothing acknowledged is lost, and the
    // minority's proposal never appears.
    s.cut.clear();
    s.tick(30);
    let want: Vec<u64> = (0..20).collect();
    for id in 1..=3 {
        assert_eq!(s.state(id), &want, "replica {id}");
    }
    assert_eq!(s.acked, want);
}

#[test]
fn reads_are_served_once_the_leader_confirmed_its_office() {
    let mut s = Sim::new(3);
    let (l, _) = s.tick_until_leader(100);
    s.propose(l, 1).unwrap();
    let t = s.replicas.get_mut(&l).unwrap().read_index().unwrap();
    s.pump();
    s.tick(3);
    assert!(s.reads.contains(&(l, t)), "{:?}", s.reads);
    let f = if l == 1 { 2 } else { 1 };
    assert!(matches!(
        s.replicas.get_mut(&f).unwrap().read_index(),
        Err(Refusal::NotLeader { leader: Some(x) }) if x == l
    ));
}

#[test]
fn voters_are_added_and_removed() {
    let mut s = Sim::new(3);
    let (l, _) = s.tick_until_leader(100);
    for c in 0..30 {
        s.propose(l, c).unwrap();
    }
    s.replicas.insert(
        4,
        Replica::joining(4, Numbers::default(), timing(4)).unwrap(),
    );
    s.replicas.get_mut(&l).unwrap().add_voter(4).unwrap();
    s.pump();
    s.tick(10);
    assert_eq!(s.replicas[&l].voters(), vec![1, 2, 3, 4]);
    let want: Vec<u64> = (0..30).collect();
    assert_eq!(s.state(4), &want, "the new voter caught up");
    let gone = if l == 1 { 2 } else { 1 };
    s.replicas.get_mut(&l).unwrap().remove_voter(gone).unwrap();
    s.pump();
    s.tick(5);
    let mut expect = vec![1, 2, 3, 4];
    expect.retain(|&v| v != gone);
    assert_eq!(s.replicas[&l].voters(), expect);
    // The removed one stops; the rest still form a majority of three.
    s.down.insert(gone);
    for c in 30..40 {
        s.propose(l, c).unwrap();
    }
    s.tick(5);
    let want: Vec<u64> = (0..40).collect();
    for id in expect {
        assert_eq!(s.state(id), &want, "replica {id}");
    }
}

#[test]
fn malformed_messages_are_typed_errors() {
    let mut r = Replica::new(1, &[1, 2, 3], Numbers::default(), timing(1)).unwrap();
    let e = r.step(b"\xff\xff\xff\xff not protobuf").unwrap_err();
    assert_eq!(e.code(), crate::ErrorCode::Protocol, "{e}");
    let m = Message {
        to: 9,
        ..Default::default()
    };
    let e = r.step(&m.write_to_bytes().unwrap()).unwrap_err();
    assert!(e.to_string().contains("replica 9"), "{e}");
    assert!(Replica::new(4, &[1, 2, 3], Numbers::default(), timing(1)).is_err());
}

#[test]
fn a_whole_group_restarts_from_its_data_directories() {
    let base = std::env::temp_dir().join(format!("juxmem-raft-restart-{}", std::process::id()));
    let mut s = Sim::on_disk(3, &base);
    let (l, _) = s.tick_until_leader(100);
    for c in 0..50 {
        s.propose(l, c).unwrap();
    }
    s.tick(5);
    // Every replica crashes at once (compactions happened: 50 entries, after 20).
    for id in 1..=3 {
        s.restart(id);
    }
    let (l, _) = s.tick_until_leader(100);
    s.propose(l, 50).unwrap();
    s.tick(5);
    let want: Vec<u64> = (0..51).collect();
    for id in 1..=3 {
        assert_eq!(s.state(id), &want, "replica {id}");
    }
    // And one crashing alone while the others go on catches up.
    let f = if l == 1 { 2 } else { 1 };
    s.down.insert(f);
    for c in 51..80 {
        s.propose(l, c).unwrap();
    }
    s.restart(f);
    s.down.remove(&f);
    s.tick(20);
    assert_eq!(s.state(f), &(0..80).collect::<Vec<u64>>());
    let _ = std::fs::remove_dir_all(&base);
}

mod random {
    //! Random schedules of crashes, revivals, cut links and proposals: raft's promises hold
    //! throughout, and once healed the group converges with everything acknowledged.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Event {
        Tick(u8),
        Crash(u64),
        Revive(u64),
        Cut(u64, u64),
        Heal,
        Propose(u64),
        Restart(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => (1u8..8).prop_map(Event::Tick),
            1 => (1u64..=5).prop_map(Event::Crash),
            1 => (1u64..=5).prop_map(Event::Revive),
            1 => ((1u64..=5), (1u64..=5)).prop_map(|(a, b)| Event::Cut(a, b)),
            1 => Just(Event::Heal),
            4 => (1u64..=5).prop_map(Event::Propose),
        ]
    }

    fn run(s: &mut Sim, events: Vec<Event>) -> std::result::Result<(), TestCaseError> {
        let mut next = 0u64;
        for e in events {
            match e {
                Event::Tick(n) => s.tick(n as usize),
                Event::Crash(i) => {
                    s.down.insert(i);
                }
                Event::Revive(i) => {
                    s.down.remove(&i);
                }
                Event::Cut(a, b) if a != b => {
                    s.cut.insert((a.min(b), a.max(b)));
                }
                Event::Cut(..) => {}
                Event::Heal => s.cut.clear(),
                Event::Propose(i) => {
                    if !s.down.contains(&i) && s.propose(i, next).is_ok() {
                        next += 1;
                    }
                }
                Event::Restart(i) if s.base.is_some() => s.restart(i),
                Event::Restart(_) => {}
            }
        }
        s.down.clear();
        s.cut.clear();
        let (l, _) = s.tick_until_leader(200);
        // A command in the new term makes every earlier entry committed.
        s.propose(l, u64::MAX).unwrap();
        s.tick(40);
        let final_state = s.state(1).clone();
        for id in 2..=5 {
            prop_assert_eq!(s.state(id), &final_state, "replica {} diverged", id);
        }
        for c in &s.acked {
            prop_assert!(final_state.contains(c), "acknowledged {} lost", c);
        }
        // Each command at most once.
        let distinct: BTreeSet<&u64> = final_state.iter().collect();
        prop_assert_eq!(distinct.len(), final_state.len());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn schedules_keep_one_order_and_every_acknowledged_command(
            events in proptest::collection::vec(event(), 1..120)
        ) {
            run(&mut Sim::new(5), events)?;
        }

        #[test]
        fn schedules_with_crashes_that_lose_memory_lose_nothing_acknowledged(
            events in proptest::collection::vec(
                prop_oneof![4 => event(), 1 => (1u64..=5).prop_map(Event::Restart)],
                1..100,
            )
        ) {
            use std::sync::atomic::{AtomicU64, Ordering};
            static CASE: AtomicU64 = AtomicU64::new(0);
            let base = std::env::temp_dir().join(format!(
                "juxmem-raft-random-{}-{}",
                std::process::id(),
                CASE.fetch_add(1, Ordering::Relaxed)
            ));
            let mut s = Sim::on_disk(5, &base);
            let r = run(&mut s, events);
            let _ = std::fs::remove_dir_all(&base);
            r?;
        }
    }
}
