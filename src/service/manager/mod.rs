//! The cluster manager: membership and leases of its cluster, the directory of the arrays
//! created here (their versions, write locks and data groups), and the reactions to failures.
//!
//! The protocol's decisions live in pure state machines ([`Directory`], which holds each
//! array's [`Versions`](crate::service::coherence::Versions) and
//! [`DataGroups`](crate::service::groups::DataGroups); [`Membership`] and [`Leases`]); this
//! module feeds them requests and time, waits where a request must wait (write locks, version
//! waits, each with a deadline), and carries out their effects: [`failures`] (declaring
//! processes dead, failover, probing suspects, learning of other clusters' losses) and
//! [`restore`] (bringing data groups back to the redundancy asked for).

mod book;
pub mod consensus;
mod failures;
mod restore;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::authz::{self, deny, require_manager, require_manager_of, Peer};
use crate::service::coherence::{Poll, Versions};
use crate::service::contact::{self, Contact};
use crate::service::directory::{name_taken, owner_of, Directory, Entry, Owner};
use crate::service::groups::DataGroups;
use crate::service::membership::{Leases, Membership};
use crate::service::names::{claim_order, valid_until, ClaimAnswer, Claimant};
use crate::service::node::{hello_of, new_incarnation};
use crate::service::pool::Pool;
use crate::service::protocol::*;
use crate::service::server::{Handler, Server};
use crate::transport::address;
use crate::transport::tcp::{self, Conn};
use book::{Key, Shadow};
use consensus::{Consensus, Pending, Settings};

struct State {
    membership: Membership,
    leases: Leases,
    directory: Directory,
    /// Each process's current control connection (session id).
    controls: HashMap<Owner, u64>,
    serial: u64,
    /// The consensus generation this replica serves in, once it took office as leader.
    ready: Option<u64>,
    /// What was last proposed of each record.
    shadow: Shadow,
    /// The latest proposal: an answer waits until it is committed.
    last: Option<Pending>,
    /// Other clusters' claims of names are refused until then (a new leader does not know
    /// the claims its predecessor granted: they may live that long).
    claims_from: Instant,
}

/// Which records of the book a request may change, to propose after it (and what its answer
/// waits for).
enum Scope {
    /// Nothing replicated (a heartbeat).
    Nothing,
    /// Nothing replicated, but the answer reads the state: it must be current.
    Read,
    /// These records.
    Keys(Vec<Key>),
    /// The record of an array.
    Array(ArrayId),
    /// The record of an array and the members (whose memory it may release).
    ArrayAndMembers(ArrayId),
    /// The array a creation answers with.
    Create,
    /// Anything (a failure's effects).
    All,
}

/// What one connection is: a process's control connection (its heartbeats) once it registered
/// or renewed on it. Its loss declares that process dead at once (a crashed process's sockets
/// close); a paused or cut-off one is caught by its lease running out.
pub struct Session {
    id: u64,
    control: Option<Owner>,
}

impl Default for Session {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Session {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            control: None,
        }
    }
}

/// A cluster manager.
pub struct Manager {
    me: NodeInfo,
    cfg: Config,
    pool: Arc<Pool>,
    state: Mutex<State>,
    changed: Condvar,
    /// Restores under way: (array, block, target).
    restoring: Mutex<HashSet<(ArrayId, u32, NodeId)>>,
    /// Wakes the maintenance thread early (after a failure or a commit that left a copy
    /// behind).
    kick: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    consensus: Arc<Consensus>,
    /// Started as one of several replicas (a claim grace period applies at takeover).
    replicated: bool,
    /// Requests received from processes of other clusters (`CacheStats`).
    from_other_clusters: AtomicU64,
}

/// Longest name pattern a listing accepts (bytes).
const MAX_PATTERN: usize = 1024;

/// Largest manager replica id.
const MAX_REPLICA_ID: u64 = 64;

/// Longest claim of a name another cluster may ask for.
const MAX_CLAIM_LEASE: Duration = Duration::from_secs(60);

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A running manager: its service, its maintenance thread, and its contact file while it runs.
pub struct RunningManager {
    /// The manager.
    pub manager: Arc<Manager>,
    server: Server,
    maintenance: Option<JoinHandle<()>>,
    driver: Option<JoinHandle<()>>,
    contact: Option<contact::Claim>,
}

impl RunningManager {
    /// Address the manager listens on.
    pub fn addr(&self) -> &str {
        self.server.addr()
    }
}

impl Drop for RunningManager {
    fn drop(&mut self) {
        self.server.stop();
        self.manager.stop.store(true, Ordering::SeqCst);
        self.manager.consensus.stop();
        self.manager.wake();
        if let Some(t) = self.maintenance.take() {
            let _ = t.join();
        }
        if let Some(t) = self.driver.take() {
            let _ = t.join();
        }
        if let Some(c) = &self.contact {
            let m = &self.manager;
            contact::remove(c.dir(), &m.me.cluster, m.me.incarnation);
            contact::remove_replica(c.dir(), &m.me.cluster, m.consensus.id(), m.me.incarnation);
        }
    }
}

impl Manager {
    /// Starts the manager of `cfg.cluster`, listening as `cfg.listen` and `cfg.interface` say
    /// (see [`crate::transport::address`]), and (with a federation directory) writes its contact
    /// file. Refuses to start if a live manager already answers
    /// for the cluster; replaces a stale contact file.
    pub fn start(cfg: Config) -> Result<RunningManager> {
        Manager::start_replica(cfg, &Settings::default())
    }

    /// Starts manager replica `settings.id` of `cfg.cluster` (see [`Manager::start`]); a
    /// single replica leads at once (this returns once it serves), several elect a leader
    /// once a majority of them runs.
    pub fn start_replica(mut cfg: Config, settings: &Settings) -> Result<RunningManager> {
        cfg.net = cfg.net()?.require_security()?;
        // Reachable from the other clusters' managers (the first one the rendezvous names).
        let toward = contact::managers(&cfg)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.cluster != cfg.cluster)
            .map(|c| c.addr);
        let endpoint = address::choose(
            cfg.listen.as_deref(),
            cfg.interface.as_deref(),
            toward.as_deref(),
        )?;
        let listener = tcp::bind(&endpoint.bind.to_string())?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Network(format!("listener address: {e}")))?;
        let addr = endpoint.bound(local).to_string();
        let me = NodeInfo {
            // Every replica speaks as the cluster's manager (its credential says so too).
            name: format!("{}/manager", cfg.cluster),
            cluster: cfg.cluster.clone(),
            addr: addr.clone(),
            kind: NodeKind::Manager,
            incarnation: new_incarnation(),
        };
        let hello = hello_of(&me, &cfg);
        let pool = Arc::new(
            Pool::new(hello.clone(), cfg.net.clone())
                .following(cfg.rendezvous.clone(), cfg.timeout() + cfg.failure_timeout),
        );
        let contact = contact::claim(&cfg, &me, &hello, settings.id)?;
        let dir = match &cfg.rendezvous {
            Some(crate::config::Rendezvous::Dir(d)) => Some(d.clone()),
            _ => None,
        };
        if settings.voters.len() != 1 && dir.is_none() {
            return Err(Error::InvalidArgument(
                "several manager replicas find each other in a federation directory: set \
                 JUXMEM_FEDERATION_DIR"
                    .into(),
            ));
        }
        let consensus = Consensus::start(settings, &cfg.cluster, pool.clone(), dir)?;
        let manager = Arc::new(Manager {
            me,
            cfg: cfg.clone(),
            pool,
            state: Mutex::new(State {
                membership: Membership::default(),
                leases: Leases::new(cfg.failure_timeout),
                directory: Directory::default(),
                controls: HashMap::new(),
                serial: 0,
                ready: None,
                shadow: Shadow::default(),
                last: None,
                claims_from: Instant::now(),
            }),
            changed: Condvar::new(),
            from_other_clusters: AtomicU64::new(0),
            restoring: Mutex::new(HashSet::new()),
            kick: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            consensus,
            replicated: settings.voters.len() != 1,
        });
        let server = Server::start(listener, hello, cfg.net.clone(), manager.clone())?;
        let m = manager.clone();
        let maintenance = std::thread::Builder::new()
            .name(format!("juxmem-maintain-{}", cfg.cluster))
            .spawn(move || m.maintain())
            .map_err(|e| Error::Network(format!("cannot start the maintenance thread: {e}")))?;
        let m = manager.clone();
        let driver = std::thread::Builder::new()
            .name(format!("juxmem-consensus-{}", cfg.cluster))
            .spawn(move || m.drive())
            .map_err(|e| Error::Network(format!("cannot start the consensus thread: {e}")))?;
        let running = RunningManager {
            manager,
            server,
            maintenance: Some(maintenance),
            driver: Some(driver),
            contact,
        };
        tracing::info!(
            "manager replica {} of cluster {} listening on {addr}",
            settings.id,
            cfg.cluster
        );
        if !running.manager.replicated {
            // Alone, it leads at once: serve before returning, as a single manager always did.
            let deadline = Instant::now() + cfg.timeout();
            while running.manager.lock().ready.is_none() {
                if Instant::now() > deadline {
                    return Err(Error::Timeout {
                        what: format!("the manager of {} to take office", cfg.cluster),
                        seconds: cfg.timeout().as_secs_f64(),
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(running)
    }

    /// The consensus thread: time for the replica, and the manager's gains and losses of
    /// office.
    fn drive(self: Arc<Self>) {
        let mut next = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= next {
                self.consensus.tick();
                next = now + consensus::TICK;
            }
            let (generation, leading) = self.consensus.office();
            let ready = self.lock().ready;
            if leading && ready != Some(generation) {
                if let Err(e) = self.take_office(generation) {
                    tracing::warn!("manager of {} could not take office: {e}", self.me.cluster);
                }
            } else if !leading && ready.is_some() {
                self.leave_office();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// This replica leads in `generation`: rebuild the live state from the book (once every
    /// earlier entry is applied), start a lease for every holder, and serve.
    fn take_office(&self, generation: u64) -> Result<()> {
        // An empty command of this term: once applied, everything committed before it is.
        let p = self.consensus.propose(Vec::new())?;
        self.consensus.wait(p, self.cfg.timeout())?;
        let (g, book) = self.consensus.book();
        if g != generation {
            return Err(Error::NotLeader("office lost while taking it".into()));
        }
        let live = book.state()?;
        let now = Instant::now();
        {
            let mut st = self.lock();
            st.directory = live.directory;
            st.membership = live.membership;
            st.serial = live.serial;
            st.leases = Leases::new(self.cfg.failure_timeout);
            st.controls.clear();
            let mut holders: Vec<Owner> = st.membership.nodes().iter().map(owner_of).collect();
            for e in st.directory.entries_mut() {
                e.forget_waiters();
                e.manager = self.me.clone();
                holders.extend(e.holders());
            }
            for o in &holders {
                st.leases.revive(o, now);
            }
            // Provider daemons get longer: after a whole cluster stopped, they start again
            // with their managers and resume from their data directories (a job process that
            // held something is given the failure timeout, so that its locks do not linger).
            let grace = self
                .cfg
                .resume_grace
                .saturating_sub(self.cfg.failure_timeout);
            let daemons: Vec<Owner> = st
                .membership
                .nodes()
                .iter()
                .filter(|n| n.kind == NodeKind::Daemon)
                .map(owner_of)
                .collect();
            for o in &daemons {
                st.leases.revive(o, now + grace);
            }
            st.shadow = Shadow::of(&book);
            st.last = None;
            // A predecessor (whose first act in office wrote the book) may have granted claims.
            st.claims_from = if self.replicated && !book.is_empty() {
                now + self.claim_lease()
            } else {
                now
            };
            st.ready = Some(generation);
            self.propose_all(&mut st)?;
            tracing::info!(
                "manager replica {} of {} took office: {} arrays, {} members",
                self.consensus.id(),
                self.me.cluster,
                st.directory.entries().count(),
                st.membership.nodes().len()
            );
        }
        if let Some(crate::config::Rendezvous::Dir(dir)) = &self.cfg.rendezvous {
            contact::write(dir, &contact::contact_of(&self.cfg, &self.me))?;
        }
        self.changed.notify_all();
        self.wake();
        Ok(())
    }

    /// This replica does not lead any more: it refuses every request until it leads again.
    fn leave_office(&self) {
        self.lock().ready = None;
        tracing::info!(
            "manager replica {} of {} left office",
            self.consensus.id(),
            self.me.cluster
        );
        self.changed.notify_all();
    }

    /// Proposes the records among `keys` that changed.
    fn propose_keys(&self, st: &mut State, keys: Vec<Key>) -> Result<()> {
        let State {
            shadow,
            directory,
            membership,
            serial,
            ..
        } = st;
        let changes = shadow.changes(keys, directory, membership, *serial)?;
        if !changes.is_empty() {
            match self.consensus.propose(changes) {
                Ok(p) => st.last = Some(p),
                Err(e) => {
                    // The shadow counts what was not proposed: rebuilt at the next office.
                    st.ready = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Proposes every record that changed.
    fn propose_all(&self, st: &mut State) -> Result<()> {
        let keys = st.shadow.all_keys(&st.directory);
        self.propose_keys(st, keys)
    }

    /// After a request: proposes what it changed, and waits until the state its answer
    /// reflects is committed (or, for a read, until this replica confirmed it still leads).
    fn settle(&self, scope: Scope, answer: &Result<Response>) -> Result<()> {
        let pending = {
            let mut st = self.lock();
            if st.ready.is_none() {
                return Err(self.consensus_refusal());
            }
            let keys = match scope {
                Scope::Nothing => return Ok(()),
                Scope::Read => vec![],
                Scope::Keys(k) => k,
                Scope::Array(a) => vec![Key::Entry(a)],
                Scope::ArrayAndMembers(a) => vec![Key::Entry(a), Key::Members],
                Scope::Create => {
                    let mut k = vec![Key::Members, Key::Serial];
                    if let Ok(Response::Meta(m)) = answer {
                        k.push(Key::Entry(m.id));
                    }
                    k
                }
                Scope::All => st.shadow.all_keys(&st.directory),
            };
            self.propose_keys(&mut st, keys)?;
            st.last
        };
        match pending {
            Some(p) if !self.consensus.done(p) => self.consensus.wait(p, self.cfg.timeout()),
            // Alone, this replica cannot have been deposed: what it holds is current.
            _ if self.consensus.alone() => Ok(()),
            _ => self.consensus.barrier(self.cfg.timeout()),
        }
    }

    /// The error for a request reaching a replica that does not serve.
    fn consensus_refusal(&self) -> Error {
        match self.consensus.office() {
            (_, true) => Error::NotLeader(format!(
                "manager replica {} of {} is taking office: ask again",
                self.consensus.id(),
                self.me.cluster
            )),
            _ => self.consensus.refusal(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the maintenance thread.
    fn wake(&self) {
        let (flag, cv) = &self.kick;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    /// Every heartbeat interval (or when woken): declare dead the processes whose lease ran
    /// out, learn of other clusters' losses, and heal data groups.
    fn maintain(self: Arc<Self>) {
        let interval = self.cfg.heartbeat();
        let mut tick = 0u64;
        let mut last = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            {
                let (flag, cv) = &self.kick;
                let mut woken = flag.lock().unwrap_or_else(|e| e.into_inner());
                if !*woken {
                    woken = cv
                        .wait_timeout(woken, interval)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                *woken = false;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if self.lock().ready.is_none() {
                last = Instant::now();
                continue; // a follower: the leader maintains
            }
            // A gap much longer than the interval means this manager was stalled itself: the
            // heartbeats sent meanwhile wait unread in its sockets, so leases are extended by
            // the gap before any is judged (and the handlers get a moment to read them).
            let gap = last.elapsed();
            last = Instant::now();
            if gap > interval * 3 {
                tracing::warn!(
                    "manager of {} stalled for {:.1} s: extending every lease by that much",
                    self.me.cluster,
                    gap.as_secs_f64()
                );
                self.lock().leases.extend(gap);
                continue;
            }
            let expired = {
                let mut st = self.lock();
                st.directory.prune_claims(Instant::now());
                st.leases.expired(Instant::now())
            };
            for owner in expired {
                let secs = self.cfg.failure_timeout.as_secs_f64();
                self.owner_gone(&owner, &format!("no heartbeat for {secs:.1} s"));
            }
            tick += 1;
            if tick % 4 == 0 {
                self.check_peers();
            }
            self.heal();
            // What failures and restores changed (their effects are not answers: nobody
            // waits for them).
            let mut st = self.lock();
            if st.ready.is_some() {
                if let Err(e) = self.propose_all(&mut st) {
                    tracing::debug!("proposing the maintenance's changes: {e}");
                }
            }
        }
    }

    /// The other clusters' managers (none without a rendezvous).
    fn peers(&self) -> Vec<Contact> {
        contact::managers(&self.cfg)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.cluster != self.me.cluster)
            .collect()
    }

    fn lookup(&self, name: &str, forwarded: bool) -> Result<ArrayMeta> {
        if let Some(e) = self.lock().directory.by_name(name) {
            return Ok(e.meta());
        }
        let mut asked = vec![self.me.cluster.clone()];
        let mut unreachable = None;
        if !forwarded {
            for peer in self.peers() {
                asked.push(peer.cluster.clone());
                match self.pool.call_manager(
                    &peer,
                    &Request::Lookup {
                        name: name.into(),
                        forwarded: true,
                    },
                ) {
                    Ok(Response::Meta(m)) => return Ok(m),
                    Ok(_) | Err(Error::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!("lookup of {name} at cluster {}: {e}", peer.cluster);
                        unreachable.get_or_insert(e);
                    }
                }
            }
        }
        // Not found, but a cluster could not be asked: say that, rather than "not found" (a
        // stage waiting for the array would wait in vain).
        if let Some(e) = unreachable {
            return Err(e);
        }
        Err(Error::NotFound(format!(
            "no array named {name:?} in the federation (clusters asked: {})",
            asked.join(", ")
        )))
    }

    /// Creates an array for `owner`; it stays invisible until `owner` confirms it (`Created`),
    /// and is undone if `owner` dies first.
    fn create(&self, owner: Owner, spec: ArraySpec, homes: Vec<NodeInfo>) -> Result<ArrayMeta> {
        check_name(&spec.name)?;
        check_attributes(&spec.attributes)?;
        let versions = Versions::new(spec.retention)?;
        let nblocks = spec.layout.nprocs();
        if spec.redundancy.clusters == 0 || spec.redundancy.providers_per_cluster == 0 {
            return Err(Error::InvalidArgument(format!(
                "redundancy {}x{} of {}: both counts must be at least 1",
                spec.redundancy.clusters, spec.redundancy.providers_per_cluster, spec.name
            )));
        }
        // Copies are counted in u32 (`Redundancy::copies`).
        if spec
            .redundancy
            .clusters
            .checked_mul(spec.redundancy.providers_per_cluster)
            .is_none()
        {
            return Err(Error::InvalidArgument(format!(
                "redundancy {}x{} of {}: too many copies",
                spec.redundancy.clusters, spec.redundancy.providers_per_cluster, spec.name
            )));
        }
        if spec.homes == HomePlacement::Creator && homes.len() as u64 != nblocks {
            return Err(Error::InvalidArgument(format!(
                "{} has {nblocks} blocks but {} homes were given",
                spec.name,
                homes.len()
            )));
        }
        let name = spec.name.clone();
        let created = self.claiming(&name, |claimed, by| {
            let entry = self.place(owner, &spec, homes, versions)?;
            self.add_entry(entry, claimed, &name, by)
        });
        if let Ok(meta) = &created {
            tracing::info!("created {name} ({} blocks)", meta.blocks.len());
        }
        created
    }

    /// Creates the namespace `name` in this cluster, its name claimed as an array's is.
    fn create_namespace(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.claiming(name, |claimed, by| {
            let lease = self.claim_lease();
            for _attempt in 0..3 {
                let sent = self.renew_claims(claimed, name, by)?;
                let mut st = self.lock();
                if valid_until(&sent, lease).is_none_or(|until| Instant::now() < until) {
                    st.directory.finish_namespace(name, true);
                    return Ok(());
                }
            }
            Err(renewal_timeout(name, lease))
        })?;
        tracing::info!("created the namespace {name}");
        Ok(())
    }

    /// Runs `make` with `name` claimed at every cluster of the federation, in the one order
    /// (see `service::names`); at this cluster the claim is the directory's creation in
    /// progress, which `make` ends on success. `make` gets the other clusters' claims (to
    /// renew them before it adds its record) and their claimant. The claims are dropped
    /// after, and the creation in progress here ended if `make` failed.
    fn claiming<T>(
        &self,
        name: &str,
        make: impl FnOnce(&[&Contact], &Claimant) -> Result<T>,
    ) -> Result<T> {
        let by = Claimant {
            cluster: self.me.cluster.clone(),
            token: {
                let mut st = self.lock();
                st.serial += 1;
                fnv(&[
                    self.me.cluster.as_bytes(),
                    &self.me.incarnation.to_le_bytes(),
                    &st.serial.to_le_bytes(),
                ])
            },
        };
        let peers = self.peers();
        let mut clusters: Vec<String> = peers.iter().map(|c| c.cluster.clone()).collect();
        clusters.push(self.me.cluster.clone());
        let mut claimed: Vec<&Contact> = Vec::new();
        let mut creating = false;
        let mut outcome = Ok(());
        for k in claim_order(clusters) {
            let step = if k == self.me.cluster {
                let now = Instant::now();
                let r = self
                    .lock()
                    .directory
                    .begin_create(name, &self.me.cluster, now);
                creating = r.is_ok();
                r
            } else {
                let c = peers.iter().find(|c| c.cluster == k).expect("a peer");
                let r = self.claim_at(c, name, &by);
                if r.is_ok() {
                    claimed.push(c);
                }
                r
            };
            if let Err(e) = step {
                outcome = Err(e);
                break;
            }
        }
        let made = outcome.and_then(|()| make(&claimed, &by));
        if creating && made.is_err() {
            self.lock().directory.finish_create(name, None);
        }
        // The record (or the failure) stands; the claims are not needed any more (they would
        // expire anyway).
        for c in claimed {
            let req = Request::DropClaim {
                name: name.to_string(),
                by: by.clone(),
            };
            if let Err(e) = self.pool.call_manager(c, &req) {
                tracing::debug!("dropping the claim of {name} at cluster {}: {e}", c.cluster);
            }
        }
        made
    }

    /// How long a claim of a name lasts unless renewed.
    fn claim_lease(&self) -> Duration {
        self.cfg.failure_timeout.max(Duration::from_secs(1))
    }

    /// Claims `name` for `by` at the cluster `c`: `AlreadyExists` if it is taken there. A
    /// cluster whose manager just failed over takes claims again after a lease: asked again
    /// until then.
    fn claim_at(&self, c: &Contact, name: &str, by: &Claimant) -> Result<()> {
        let deadline = Instant::now() + self.claim_lease() * 2;
        loop {
            match self.ask_claim(c, name, by) {
                Ok(ClaimAnswer::Granted) => return Ok(()),
                Ok(answer) => return Err(name_taken(name, &answer)),
                Err(Error::Busy(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the cluster `c` to claim (or renew the claim of) `name` for `by`.
    fn ask_claim(&self, c: &Contact, name: &str, by: &Claimant) -> Result<ClaimAnswer> {
        let req = Request::ClaimName {
            name: name.to_string(),
            by: by.clone(),
            lease_ms: self.claim_lease().as_millis() as u64,
        };
        let unsure = |e: Error| {
            Error::from_wire(
                e.code().as_u32(),
                format!(
                    "cannot make sure that the name {name:?} is free in cluster {}: {}",
                    c.cluster,
                    e.detail()
                ),
            )
        };
        match self.pool.call_manager(c, &req).map_err(unsure)? {
            Response::NameClaim(answer) => Ok(answer),
            other => Err(unsure(Error::Protocol(format!(
                "unexpected answer to ClaimName: {other:?}"
            )))),
        }
    }

    /// Adds the created `entry` to the directory once every claim of its name is renewed and
    /// still valid; discards it if that cannot be done.
    fn add_entry(
        &self,
        entry: Entry,
        claimed: &[&Contact],
        name: &str,
        by: &Claimant,
    ) -> Result<ArrayMeta> {
        let lease = self.claim_lease();
        for _attempt in 0..3 {
            let sent = match self.renew_claims(claimed, name, by) {
                Ok(sent) => sent,
                Err(e) => {
                    self.discard(&entry);
                    return Err(e);
                }
            };
            let mut st = self.lock();
            if valid_until(&sent, lease).is_none_or(|until| Instant::now() < until) {
                let meta = entry.meta();
                st.directory.finish_create(name, Some(entry));
                return Ok(meta);
            }
        }
        self.discard(&entry);
        Err(renewal_timeout(name, lease))
    }

    /// Renews every claim of `name` for `by`: when each renewal that was granted was sent.
    fn renew_claims(
        &self,
        claimed: &[&Contact],
        name: &str,
        by: &Claimant,
    ) -> Result<Vec<Instant>> {
        let lease = self.claim_lease();
        let mut sent = Vec::new();
        for c in claimed {
            // A competitor's claim (ours ran out meanwhile) lasts until it fails at our
            // cluster, where our creation is in progress: wait for that, within a lease.
            let deadline = Instant::now() + lease * 2;
            loop {
                let t = Instant::now();
                match self.ask_claim(c, name, by)? {
                    ClaimAnswer::Granted => {
                        sent.push(t);
                        break;
                    }
                    ClaimAnswer::Claimed { .. } if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    answer => return Err(name_taken(name, &answer)),
                }
            }
        }
        Ok(sent)
    }

    /// Undoes a creation that never entered the directory: its copies and memory are dropped.
    fn discard(&self, entry: &Entry) {
        self.drop_copies(entry);
    }

    /// Bytes a copy of block `b` may need: every retained version.
    fn copy_bytes(spec: &ArraySpec, b: u64) -> Result<u64> {
        let bytes = spec.layout.local_len(b)? * spec.elem.size() as u64;
        bytes
            .checked_mul(u64::from(spec.retention.max_versions))
            .ok_or_else(|| Error::Overflow(format!("the copies of block {b} of {}", spec.name)))
    }

    /// Places every block's copies over `clusters x providers_per_cluster` and hosts them.
    fn place(
        &self,
        owner: Owner,
        spec: &ArraySpec,
        homes: Vec<NodeInfo>,
        versions: Versions,
    ) -> Result<Entry> {
        let peers = self.peers();
        // Clusters for the copies outside ours: preferred ones first, then the others by name.
        let mut others: Vec<&Contact> = Vec::new();
        for want in &spec.replicate_to {
            if let Some(c) = peers.iter().find(|c| &c.cluster == want) {
                if !others.iter().any(|o| o.cluster == c.cluster) {
                    others.push(c);
                }
            } else if want != &self.me.cluster {
                return Err(Error::NotFound(format!(
                    "{} asks for copies in cluster {want}, which is not in the federation",
                    spec.name
                )));
            }
        }
        for c in &peers {
            if !others.iter().any(|o| o.cluster == c.cluster) {
                others.push(c);
            }
        }
        let extra_clusters = spec.redundancy.clusters as usize - 1;
        if others.len() < extra_clusters {
            let mut known: Vec<String> = peers.iter().map(|c| c.cluster.clone()).collect();
            known.push(self.me.cluster.clone());
            known.sort();
            return Err(Error::Capacity(format!(
                "redundancy of {} asks for {} clusters; the federation has {} ({})",
                spec.name,
                spec.redundancy.clusters,
                known.len(),
                known.join(", ")
            )));
        }
        let others = &others[..extra_clusters];
        let ppc = spec.redundancy.providers_per_cluster;
        let mut placements = Vec::new();
        // Every daemon reserved so far, with its bytes: freed again if a later block finds no
        // room (else a failed creation would keep memory nothing uses).
        let mut reserved: Vec<(NodeInfo, u64)> = Vec::new();
        for b in 0..spec.layout.nprocs() {
            let placed = (|| -> Result<(NodeInfo, Vec<NodeInfo>)> {
                let bytes = Self::copy_bytes(spec, b)?;
                let home = match spec.homes {
                    HomePlacement::Creator => homes[b as usize].clone(),
                    HomePlacement::Daemons => {
                        let h = self
                            .lock()
                            .membership
                            .reserve(&self.me.cluster, bytes, 1, &[])?[0]
                            .clone();
                        reserved.push((h.clone(), bytes));
                        h
                    }
                };
                let mut replicas = if ppc > 1 {
                    self.lock().membership.reserve(
                        &self.me.cluster,
                        bytes,
                        ppc - 1,
                        std::slice::from_ref(&home.name),
                    )?
                } else {
                    vec![]
                };
                reserved.extend(replicas.iter().map(|n| (n.clone(), bytes)));
                for c in others {
                    let got = self.reserve_at(c, bytes, ppc, vec![])?;
                    reserved.extend(got.iter().map(|n| (n.clone(), bytes)));
                    replicas.extend(got);
                }
                Ok((home, replicas))
            })();
            match placed {
                Ok(p) => placements.push(p),
                Err(e) => {
                    self.release_reserved(&reserved, &peers);
                    return Err(e);
                }
            }
        }
        let serial = {
            let mut st = self.lock();
            st.serial += 1;
            st.serial
        };
        let id = fnv(&[
            self.me.cluster.as_bytes(),
            &self.me.incarnation.to_le_bytes(),
            &serial.to_le_bytes(),
        ]);
        let mut clusters = vec![self.me.cluster.clone()];
        clusters.extend(others.iter().map(|c| c.cluster.clone()));
        let groups = DataGroups::new(spec.redundancy, clusters, placements);
        let entry = Entry::new(id, spec.clone(), self.me.clone(), versions, groups, owner);
        let meta = entry.meta();
        // Daemon homes and every replica start holding their block now.
        for (b, placement) in meta.blocks.iter().enumerate() {
            for n in placement.copies().filter(|n| n.kind == NodeKind::Daemon) {
                let hosted = self.pool.call(
                    &n.addr,
                    &Request::Host {
                        meta: meta.clone(),
                        block: b as u32,
                    },
                );
                if let Err(e) = hosted {
                    // Nothing of it stays: the copies hosted so far and every reservation.
                    self.drop_copies(&entry);
                    let why = format!("asking {n} to host block {b} of {}: {e}", spec.name);
                    // A provider out of memory (or shared memory) is the creator's
                    // `Capacity`, as when no provider has room; anything else is the network's.
                    return Err(match e {
                        Error::Capacity(_) => Error::Capacity(why),
                        _ => Error::Network(why),
                    });
                }
            }
        }
        Ok(entry)
    }

    /// Reserves `count` providers with room for `bytes` in the cluster of `c`.
    fn reserve_at(
        &self,
        c: &Contact,
        bytes: u64,
        count: u32,
        exclude: Vec<String>,
    ) -> Result<Vec<NodeInfo>> {
        if c.cluster == self.me.cluster {
            return self
                .lock()
                .membership
                .reserve(&self.me.cluster, bytes, count, &exclude);
        }
        match self.pool.call_manager(
            c,
            &Request::Reserve {
                bytes,
                count,
                exclude,
            },
        )? {
            Response::Reserved(nodes) => Ok(nodes),
            other => Err(Error::Protocol(format!(
                "unexpected answer to Reserve: {other:?}"
            ))),
        }
    }

    fn wait<T>(
        &self,
        timeout: Duration,
        what: impl FnOnce(&State) -> String,
        mut poll: impl FnMut(&mut State) -> Result<Poll<T>>,
        on_timeout: impl FnOnce(&mut State),
    ) -> Result<T> {
        // A timeout from the wire may be anything: a year is as good as forever, and adding it
        // to now cannot overflow.
        let timeout = timeout.min(Duration::from_secs(365 * 24 * 3600));
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let office = st.ready;
        loop {
            if st.ready != office {
                on_timeout(&mut st);
                return Err(self.consensus_refusal());
            }
            if let Poll::Ready(v) = poll(&mut st)? {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline {
                let what = what(&st);
                on_timeout(&mut st);
                self.changed.notify_all();
                return Err(Error::Timeout {
                    what,
                    seconds: timeout.as_secs_f64(),
                });
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn status(&self, forwarded: bool) -> Vec<ClusterStatus> {
        let mut out = vec![{
            let st = self.lock();
            let mut arrays: Vec<ArrayStatus> = st
                .directory
                .entries()
                .filter(|e| e.confirmed)
                .map(Entry::status)
                .collect();
            arrays.sort_by(|a, b| a.meta.spec.name.cmp(&b.meta.spec.name));
            ClusterStatus {
                cluster: self.me.cluster.clone(),
                manager: self.me.clone(),
                members: st.membership.status(),
                dead: st.membership.dead(Instant::now()),
                arrays,
                replicas: self.consensus.status(),
            }
        }];
        if !forwarded {
            for peer in self.peers() {
                match self
                    .pool
                    .call_manager(&peer, &Request::Status { forwarded: true })
                {
                    Ok(Response::Status(s)) => out.extend(s),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("status of cluster {}: {e}", peer.cluster),
                }
            }
        }
        out.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        out
    }

    /// The arrays matching `query`, here and (unless `forwarded`) in the other clusters.
    fn search(&self, query: &Query, forwarded: bool) -> Vec<NameEntry> {
        let shape_ok = |e: &Entry| {
            query
                .shape
                .as_ref()
                .is_none_or(|s| *s == e.spec.layout.shape())
        };
        let mut names: Vec<NameEntry> = self
            .lock()
            .directory
            .entries()
            .filter(|e| e.confirmed && name_matches(&query.pattern, &e.spec.name))
            .filter(|e| query.elem.is_none_or(|t| t == e.spec.elem) && shape_ok(e))
            .filter(|e| {
                query
                    .attributes
                    .iter()
                    .all(|(k, v)| e.spec.attributes.get(k) == Some(v))
            })
            .map(|e| NameEntry {
                name: e.spec.name.clone(),
                cluster: self.me.cluster.clone(),
                elem: e.spec.elem,
                shape: e.spec.layout.shape(),
                committed: e.versions.committed(),
                attributes: e.spec.attributes.clone(),
            })
            .collect();
        if !forwarded {
            for peer in self.peers() {
                let req = Request::Search {
                    query: query.clone(),
                    forwarded: true,
                };
                match self.pool.call_manager(&peer, &req) {
                    Ok(Response::Names(n)) => names.extend(n),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("searching at cluster {}: {e}", peer.cluster),
                }
            }
        }
        names.sort_by(|a, b| a.name.cmp(&b.name));
        names
    }

    /// The namespaces matching `pattern`, here and (unless `forwarded`) in the other
    /// clusters. Unlike a search, a cluster that cannot be asked is an error: a listing that
    /// silently misses a namespace would let a name be taken twice by a user checking first.
    fn namespaces(&self, pattern: &str, forwarded: bool) -> Result<Vec<NamespaceEntry>> {
        let mut out: Vec<NamespaceEntry> = self
            .lock()
            .directory
            .namespaces()
            .iter()
            .filter(|n| name_matches(pattern, n))
            .map(|n| NamespaceEntry {
                name: n.clone(),
                cluster: self.me.cluster.clone(),
            })
            .collect();
        if !forwarded {
            for peer in self.peers() {
                let req = Request::Namespaces {
                    pattern: pattern.to_string(),
                    forwarded: true,
                };
                match self.pool.call_manager(&peer, &req)? {
                    Response::Namespaces(n) => out.extend(n),
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected answer to Namespaces from cluster {}: {other:?}",
                            peer.cluster
                        )))
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Registers `node`; with `resume`, only if it is a live member already (the same name,
    /// incarnation and address), checked under the same lock.
    fn register(
        &self,
        session: &mut Session,
        owner: Owner,
        node: NodeInfo,
        capacity: u64,
        resume: bool,
    ) -> Result<()> {
        let previous = {
            let mut st = self.lock();
            if resume {
                let same = st
                    .membership
                    .named(&node.name)
                    .is_some_and(|m| m.same(&node) && m.addr == node.addr);
                if !same || st.leases.is_dead(&owner) {
                    return Err(Error::Fenced(format!(
                        "{} (incarnation {}, {}) is not a member of cluster {} any more: it was \
                         declared dead or replaced while it was stopped, and its copies were \
                         handed over; start it again as a new incarnation, empty",
                        node.name, node.incarnation, node.addr, self.me.cluster
                    )));
                }
            }
            st.leases.revive(&owner, Instant::now());
            st.controls.insert(owner.clone(), session.id);
            st.membership.register(node.clone(), capacity)
        };
        session.control = Some(owner);
        tracing::info!(
            "{} {} ({capacity} bytes)",
            node.name,
            if resume { "resumed" } else { "joined" }
        );
        if let Some(old) = previous {
            self.owner_gone(&owner_of(&old), "restarted under the same name");
        }
        Ok(())
    }

    /// Who may register (or resume) `node`: a process of this cluster, itself.
    fn check_registration(
        &self,
        peer: &Peer,
        owner: &Owner,
        node: &NodeInfo,
        what: &str,
    ) -> Result<()> {
        if node.cluster != self.me.cluster {
            return Err(Error::InvalidArgument(format!(
                "{} belongs to cluster {}, this is the manager of {}",
                node.name, node.cluster, self.me.cluster
            )));
        }
        // Only a credential of this cluster registers a provider of it.
        if peer.identity.cluster != self.me.cluster {
            return Err(deny(
                peer,
                what,
                format!(
                    "only a member of cluster {} registers with its manager",
                    self.me.cluster
                ),
            ));
        }
        if *owner != owner_of(node) {
            return Err(deny(
                peer,
                what,
                format!("it registers {}: a process registers itself", node.name),
            ));
        }
        Ok(())
    }

    /// Destroys an array for `owner`: the name is free, every copy dropped, the memory placed
    /// for it released (`Busy` while others use it, unless `force`).
    fn destroy(&self, owner: &Owner, array: ArrayId, force: bool) -> Result<()> {
        let entry = {
            let mut st = self.lock();
            let e = st.directory.get(array)?;
            if let (false, Some(who)) = (force, e.used_by_others(owner)) {
                return Err(Error::Busy(format!(
                    "{} is in use: {who}; destroy it when they are done, or force it",
                    e.spec.name
                )));
            }
            let mut e = st.directory.remove(array).expect("present");
            self.changed.notify_all();
            self.invalidate(array, e.take_caches());
            e
        };
        tracing::info!("destroyed {}", entry.spec.name);
        self.drop_copies(&entry);
        Ok(())
    }

    /// Frees memory reserved on daemons (here or, through their managers, elsewhere) for a
    /// creation that failed before any copy was hosted.
    fn release_reserved(&self, reserved: &[(NodeInfo, u64)], peers: &[Contact]) {
        for (n, bytes) in reserved {
            if n.kind != NodeKind::Daemon {
                continue;
            }
            if n.cluster == self.me.cluster {
                self.lock().membership.release(n, *bytes);
            } else if let Some(c) = peers.iter().find(|c| c.cluster == n.cluster) {
                let req = Request::Release {
                    node: n.clone(),
                    bytes: *bytes,
                };
                if let Err(e) = self.pool.call_manager(c, &req) {
                    tracing::debug!("releasing memory on {}: {e}", n.name);
                }
            }
        }
    }

    /// Tells every copy of `entry` to drop it, and frees the memory placed for them.
    fn drop_copies(&self, entry: &Entry) {
        let array = entry.id;
        let peers = self.peers();
        for b in 0..entry.groups.len() {
            let p = entry.groups.placement(b);
            let bytes = Self::copy_bytes(&entry.spec, b as u64).unwrap_or(0);
            for n in p.copies().chain(&p.restoring) {
                // Best effort: a copy that cannot be told is gone anyway, or drops the block
                // when it restarts.
                if let Err(e) = self.pool.call(&n.addr, &Request::Drop { array }) {
                    tracing::debug!("dropping {} on {}: {e}", entry.spec.name, n.name);
                }
                if n.kind != NodeKind::Daemon {
                    continue; // only daemons' memory is placed by managers
                }
                if n.cluster == self.me.cluster {
                    self.lock().membership.release(n, bytes);
                } else if let Some(c) = peers.iter().find(|c| c.cluster == n.cluster) {
                    let req = Request::Release {
                        node: n.clone(),
                        bytes,
                    };
                    if let Err(e) = self.pool.call_manager(c, &req) {
                        tracing::debug!("releasing memory on {}: {e}", n.name);
                    }
                }
            }
        }
    }

    fn acquire_write(
        &self,
        owner: Owner,
        array: ArrayId,
        timeout_ms: u64,
        reader: Option<u64>,
    ) -> Result<Response> {
        let ticket = {
            let mut st = self.lock();
            st.leases.touch(&owner, Instant::now())?;
            let e = st.directory.get_mut(array)?;
            if let Some(r) = reader {
                e.pass_own_reader(&owner, r)?;
            }
            // Asked again by its holder: the first answer was lost (a failover).
            if let Some(g) = e.grant_of(&owner) {
                return Ok(Response::WriteGranted {
                    epoch: g.epoch,
                    base: g.base,
                    floor: g.floor,
                    blocks: e.placements(),
                });
            }
            e.enqueue_writer(owner)
        };
        let timeout = Duration::from_millis(timeout_ms);
        let (grant, blocks) = self.wait(
            timeout,
            |st| match st.directory.get(array) {
                Ok(e) => {
                    let why = match (e.writer(), e.retention_wait()) {
                        (Some(w), _) => format!("held by {}", w.0),
                        (None, Some(r)) => r,
                        (None, None) => "other writers are queued first".into(),
                    };
                    format!("write lock of {}: {why}", e.spec.name)
                }
                Err(e) => e.to_string(),
            },
            |st| {
                let e = st.directory.get_mut(array)?;
                Ok(match e.try_grant(ticket) {
                    Poll::Ready(g) => Poll::Ready((g, e.placements())),
                    Poll::Pending => Poll::Pending,
                })
            },
            |st| {
                if let Ok(e) = st.directory.get_mut(array) {
                    e.cancel(ticket);
                }
            },
        )?;
        Ok(Response::WriteGranted {
            epoch: grant.epoch,
            base: grant.base,
            floor: grant.floor,
            blocks,
        })
    }

    fn wait_version(
        &self,
        owner: Owner,
        array: ArrayId,
        req: VersionReq,
        timeout_ms: u64,
        pin: bool,
        reader: Option<u64>,
    ) -> Result<Response> {
        if pin {
            self.lock().leases.touch(&owner, Instant::now())?;
        }
        let timeout = Duration::from_millis(timeout_ms);
        let ((version, pin), blocks) = self.wait(
            timeout,
            |st| match st.directory.get(array) {
                Ok(e) => format!(
                    "version {req:?} of {} (latest committed: {})",
                    e.spec.name,
                    e.versions.committed()
                ),
                Err(e) => e.to_string(),
            },
            |st| {
                let State {
                    directory, leases, ..
                } = st;
                let e = directory.get_mut(array)?;
                Ok(match e.try_read(&owner, req, pin, reader)? {
                    Poll::Ready(v) => Poll::Ready((v, e.placements())),
                    Poll::Pending => {
                        if let Some(p) = e.producer_gone(|o| leases.crashed(o)) {
                            return Err(Error::ProducerGone(format!(
                                "version {req:?} of {} will not come: {}, which produced it, \
                                 died (latest committed: {})",
                                e.spec.name,
                                p.0,
                                e.versions.committed()
                            )));
                        }
                        Poll::Pending
                    }
                })
            },
            |_| {},
        )?;
        // A reader that passed a version may unblock a writer.
        self.changed.notify_all();
        Ok(Response::Version {
            version,
            pin,
            blocks,
        })
    }

    fn commit(
        &self,
        owner: &Owner,
        array: ArrayId,
        epoch: u64,
        version: u64,
        touched: &[Touched],
    ) -> Result<Response> {
        let behind = {
            let mut st = self.lock();
            let e = st.directory.get_mut(array)?;
            let r = e.commit(owner, epoch, version, touched);
            if let Err(Error::Fenced(_)) = &r {
                tracing::info!("commit of {} v{version} refused: {r:?}", e.spec.name);
            }
            r?;
            self.invalidate(array, e.stale_caches());
            let behind = e.groups.restore_tasks().len();
            self.changed.notify_all();
            behind
        };
        if behind > 0 {
            self.wake();
        }
        Ok(Response::Ok)
    }

    /// Tells each holder of cache copies of `array` that `stale` lists to drop them, on a
    /// thread of its own (the release that made them stale does not wait for it). Only
    /// holders hear about it: a cluster without a copy receives nothing (CANTO's confined
    /// invalidation). A holder that cannot be told keeps an untracked copy of an old stamp,
    /// which no reader asks for, until it needs the room.
    fn invalidate(&self, array: ArrayId, stale: Vec<(NodeInfo, Vec<(u32, Stamp)>)>) {
        if stale.is_empty() {
            return;
        }
        let pool = self.pool.clone();
        let send = move || {
            for (node, copies) in stale {
                if let Err(e) = pool.call(&node.addr, &Request::Invalidate { array, copies }) {
                    tracing::debug!("invalidating cache copies on {}: {e}", node.name);
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("juxmem-invalidate".into())
            .spawn(send)
        {
            tracing::warn!("cannot start a thread to invalidate cache copies: {e}");
        }
    }

    /// Raft messages from replica `from` of this cluster's manager.
    fn raft(
        &self,
        peer: &Peer,
        cluster: &str,
        from: u64,
        messages: &[Vec<u8>],
    ) -> Result<Response> {
        require_manager_of(peer, &self.me.cluster, "Raft")?;
        if cluster != self.me.cluster {
            return Err(deny(
                peer,
                "Raft",
                format!(
                    "it is for cluster {cluster}; this is a replica of {}",
                    self.me.cluster
                ),
            ));
        }
        Ok(Response::Raft(self.consensus.step(from, messages)?))
    }

    /// Answers `req` from `peer` (its session `session`; `owner` is the key of what it holds).
    /// Each request is authorized first (see [`authz`]); a refused one changes nothing.
    fn respond(
        &self,
        session: &mut Session,
        peer: &Peer,
        owner: Owner,
        req: Request,
    ) -> Result<Response> {
        match req {
            Request::Register {
                node,
                capacity,
                rejoin,
            } => {
                self.check_registration(peer, &owner, &node, "Register")?;
                if !rejoin && self.lock().leases.is_dead(&owner) {
                    return Err(Error::Fenced(format!(
                        "{} (incarnation {}) was declared dead: start again as a new incarnation",
                        node.name, node.incarnation
                    )));
                }
                self.register(session, owner, node, capacity, false)?;
                Ok(Response::Ok)
            }
            Request::Resume { node, capacity } => {
                self.check_registration(peer, &owner, &node, "Resume")?;
                self.register(session, owner, node, capacity, true)?;
                Ok(Response::Ok)
            }
            Request::Renew { rejoin } => {
                let mut st = self.lock();
                // A member's lease (and its control connection, whose loss declares it dead)
                // is renewed only with a credential of its cluster.
                if let Some(n) = st.membership.named(&owner.0) {
                    if n.cluster != peer.identity.cluster {
                        return Err(deny(
                            peer,
                            "Renew",
                            format!("{} is a member of cluster {}", n.name, n.cluster),
                        ));
                    }
                }
                if rejoin {
                    st.leases.revive(&owner, Instant::now());
                } else {
                    st.leases.renew(&owner, Instant::now())?;
                }
                st.controls.insert(owner.clone(), session.id);
                session.control = Some(owner);
                Ok(Response::Ok)
            }
            Request::Leave { node } => {
                if owner != owner_of(&node) || node.cluster != peer.identity.cluster {
                    return Err(deny(
                        peer,
                        "Leave",
                        format!("it asks {} to leave: a process leaves by itself", node.name),
                    ));
                }
                self.owner_gone(&owner, "left");
                Ok(Response::Ok)
            }
            Request::Gone { node } => {
                // Only the gone node's own manager says so, and about another cluster (this
                // manager judges its own members itself).
                require_manager_of(peer, &node.cluster, "Gone")?;
                if node.cluster == self.me.cluster {
                    return Err(deny(
                        peer,
                        "Gone",
                        format!("{} is a member of this manager's cluster", node.name),
                    ));
                }
                self.evict(&node, &format!("gone from cluster {}", node.cluster));
                Ok(Response::Ok)
            }
            Request::Members => {
                let st = self.lock();
                // Tests of the panic boundary panic here, holding the state's lock: the lock
                // is poisoned, and every later request must still be served.
                let _ = crate::service::failpoint::hit("manager.members");
                Ok(Response::Members(st.membership.nodes()))
            }
            Request::Reserve {
                bytes,
                count,
                exclude,
            } => {
                require_manager(peer, "Reserve")?;
                let nodes =
                    self.lock()
                        .membership
                        .reserve(&self.me.cluster, bytes, count, &exclude)?;
                Ok(Response::Reserved(nodes))
            }
            Request::Create { spec, homes } => Ok(Response::Meta(self.create(owner, spec, homes)?)),
            Request::Created { array } => {
                let mut st = self.lock();
                let e = st.directory.get_mut(array)?;
                if e.creator != owner {
                    return Err(deny(
                        peer,
                        "Created",
                        format!("{} is being created by {}", e.spec.name, e.creator.0),
                    ));
                }
                e.confirmed = true;
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            Request::Destroy { array, force } => {
                self.destroy(&owner, array, force)?;
                Ok(Response::Ok)
            }
            Request::Release { node, bytes } => {
                require_manager(peer, "Release")?;
                if node.cluster != self.me.cluster {
                    return Err(deny(
                        peer,
                        "Release",
                        format!(
                            "{} is not a member of cluster {}",
                            node.name, self.me.cluster
                        ),
                    ));
                }
                self.lock().membership.release(&node, bytes);
                Ok(Response::Ok)
            }
            Request::Lookup { name, forwarded } => {
                Ok(Response::Meta(self.lookup(&name, forwarded)?))
            }
            Request::ClaimName { name, by, lease_ms } => {
                require_manager_of(peer, &by.cluster, "ClaimName")?;
                check_name(&name)?;
                let wait = self
                    .lock()
                    .claims_from
                    .saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    return Err(Error::Busy(format!(
                        "the manager of {} took office lately and does not know the claims of \
                         names its predecessor granted: claims are taken again in {:.1} s",
                        self.me.cluster,
                        wait.as_secs_f64()
                    )));
                }
                let lease = Duration::from_millis(lease_ms).min(MAX_CLAIM_LEASE);
                let answer = self.lock().directory.claim_name(
                    &name,
                    &by,
                    &self.me.cluster,
                    Instant::now(),
                    lease,
                );
                Ok(Response::NameClaim(answer))
            }
            Request::DropClaim { name, by } => {
                require_manager_of(peer, &by.cluster, "DropClaim")?;
                self.lock().directory.drop_claim(&name, &by);
                Ok(Response::Ok)
            }
            Request::List { pattern, forwarded } => {
                // Matching is quadratic in the worst case: a pattern longer than any name
                // (255 bytes) plus its stars is refused rather than matched.
                if pattern.len() > MAX_PATTERN {
                    return Err(Error::InvalidArgument(format!(
                        "a name pattern of {} bytes; at most {MAX_PATTERN} are accepted",
                        pattern.len()
                    )));
                }
                let query = Query {
                    pattern,
                    ..Query::default()
                };
                Ok(Response::Names(self.search(&query, forwarded)))
            }
            Request::Search { query, forwarded } => {
                if query.pattern.len() > MAX_PATTERN {
                    return Err(Error::InvalidArgument(format!(
                        "a name pattern of {} bytes; at most {MAX_PATTERN} are accepted",
                        query.pattern.len()
                    )));
                }
                check_attributes(&query.attributes)?;
                Ok(Response::Names(self.search(&query, forwarded)))
            }
            Request::CacheAdd {
                array,
                block,
                stamp,
                node,
            } => {
                // A provider daemon reports its own copies, as a member of its own cluster
                // (the readers of that cluster are sent to it).
                if owner != owner_of(&node)
                    || node.cluster != peer.identity.cluster
                    || node.kind != NodeKind::Daemon
                {
                    return Err(deny(
                        peer,
                        "CacheAdd",
                        format!(
                            "it reports a cache copy on {} ({:?} of cluster {}): a provider \
                             daemon reports its own, in its own cluster",
                            node.name, node.kind, node.cluster
                        ),
                    ));
                }
                self.lock()
                    .directory
                    .get_mut(array)?
                    .add_cache(block, stamp, node)?;
                Ok(Response::Ok)
            }
            Request::CacheStats => Ok(Response::CacheStats(CacheStats {
                from_other_clusters: self.from_other_clusters.load(Ordering::Relaxed),
                ..CacheStats::default()
            })),
            Request::CreateNamespace { name } => {
                self.create_namespace(&name)?;
                Ok(Response::Ok)
            }
            Request::DestroyNamespace { name } => {
                if !self.lock().directory.remove_namespace(&name) {
                    return Err(Error::NotFound(format!(
                        "no namespace named {name:?} in cluster {}",
                        self.me.cluster
                    )));
                }
                tracing::info!("destroyed the namespace {name}");
                Ok(Response::Ok)
            }
            Request::Namespaces { pattern, forwarded } => {
                if pattern.len() > MAX_PATTERN {
                    return Err(Error::InvalidArgument(format!(
                        "a name pattern of {} bytes; at most {MAX_PATTERN} are accepted",
                        pattern.len()
                    )));
                }
                Ok(Response::Namespaces(self.namespaces(&pattern, forwarded)?))
            }
            Request::SetAttributes {
                array,
                epoch,
                set,
                remove,
            } => {
                if set.len() + remove.len() > 2 * MAX_ATTRIBUTES {
                    return Err(Error::InvalidArgument("too many attribute changes".into()));
                }
                self.lock()
                    .directory
                    .get_mut(array)?
                    .set_attributes(&owner, epoch, &set, &remove)?;
                Ok(Response::Ok)
            }
            Request::Status { forwarded } => Ok(Response::Status(self.status(forwarded))),
            Request::ChangeReplicas { add, id } => {
                require_manager_of(peer, &self.me.cluster, "ChangeReplicas")?;
                if id == 0 || id > MAX_REPLICA_ID {
                    return Err(Error::InvalidArgument(format!(
                        "replica {id}: replica ids go from 1 to {MAX_REPLICA_ID}"
                    )));
                }
                // A voter that is not running would count in every majority and could stall
                // the cluster (two voters of which one is missing make no majority): only a
                // replica that started (and wrote its file) is added.
                let started = match &self.cfg.rendezvous {
                    Some(crate::config::Rendezvous::Dir(d)) => {
                        contact::replicas(d, &self.me.cluster)
                            .iter()
                            .any(|(k, _)| *k == id)
                    }
                    _ => false,
                };
                if add && !started {
                    return Err(Error::NotFound(format!(
                        "manager replica {id} of {} has not started (no {}.r{id}.replica in the \
                         federation directory): start it with --replica {id} --join first",
                        self.me.cluster, self.me.cluster
                    )));
                }
                self.consensus.change_voters(add, id, self.cfg.timeout())?;
                tracing::info!(
                    "manager replica {id} of {} {}",
                    self.me.cluster,
                    if add { "added" } else { "removed" }
                );
                Ok(Response::Ok)
            }
            Request::Placement { array, suspects } => {
                self.check_suspects(&suspects);
                Ok(Response::Placement(
                    self.lock().directory.get(array)?.placements(),
                ))
            }
            Request::AcquireWrite { array, timeout_ms } => {
                self.acquire_write(owner, array, timeout_ms, None)
            }
            Request::AcquireWriteAsReader {
                array,
                timeout_ms,
                reader,
            } => self.acquire_write(owner, array, timeout_ms, Some(reader)),
            Request::Commit {
                array,
                epoch,
                version,
                touched,
            } => self.commit(&owner, array, epoch, version, &touched),
            Request::Abort { array, epoch } => {
                self.lock().directory.get_mut(array)?.abort(&owner, epoch)?;
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            Request::WaitVersion {
                array,
                req,
                timeout_ms,
                pin,
                reader,
            } => self.wait_version(owner, array, req, timeout_ms, pin, reader),
            Request::Unpin { array, pin } => {
                self.lock().directory.get_mut(array)?.unpin(&owner, pin)?;
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            Request::AddReader { array } => {
                let mut st = self.lock();
                st.leases.touch(&owner, Instant::now())?;
                Ok(Response::Reader(
                    st.directory.get_mut(array)?.add_reader(owner),
                ))
            }
            Request::RemoveReader { array, reader } => {
                self.lock()
                    .directory
                    .get_mut(array)?
                    .remove_reader(&owner, reader)?;
                self.changed.notify_all();
                Ok(Response::Ok)
            }
            other => Err(Error::Protocol(format!(
                "a manager does not answer {}",
                crate::service::provider::request_name(&other)
            ))),
        }
    }
}

impl Handler for Manager {
    type Session = Session;

    fn handle(&self, session: &mut Session, conn: &mut Conn, req: Request) -> Result<()> {
        let peer = Peer::of(conn);
        if peer.identity.cluster != self.me.cluster && !matches!(req, Request::CacheStats) {
            self.from_other_clusters.fetch_add(1, Ordering::Relaxed);
        }
        let owner = (peer.id.name.clone(), peer.id.incarnation);
        let what = crate::service::provider::request_name(&req);
        let answer = if let Request::Raft {
            cluster,
            from,
            messages,
        } = &req
        {
            self.raft(&peer, cluster, *from, messages)
        } else if self.lock().ready.is_none() {
            Err(self.consensus_refusal())
        } else {
            let scope = scope_of(&req);
            let answer = self.respond(session, &peer, owner, req);
            // The answer goes out once what it says is committed.
            match self.settle(scope, &answer) {
                Ok(()) => answer,
                Err(e) => Err(e),
            }
        };
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                // The state machines' refusals (who owns an epoch, a pin, a reader) name the
                // peer; the request is named here.
                let e = match e {
                    Error::Refused(m)
                        if m.contains(authz::NOT_AUTHORIZED) && !m.starts_with(what) =>
                    {
                        Error::Refused(format!("{what}: {m}"))
                    }
                    e => e,
                };
                authz::log_refusal(conn, &e);
                Response::error(&e)
            }
        };
        conn.send(&resp)
    }

    fn holds_state(&self, session: &Session) -> bool {
        session.control.is_some()
    }

    fn closed(&self, session: Session) {
        let Some(owner) = session.control else {
            return;
        };
        // Only the owner's current control connection speaks for it.
        let current = {
            let mut st = self.lock();
            let current = st.controls.get(&owner) == Some(&session.id);
            if current {
                st.controls.remove(&owner);
            }
            current
        };
        if current && !self.stop.load(Ordering::SeqCst) {
            self.owner_gone(&owner, "its control connection closed");
            let mut st = self.lock();
            if st.ready.is_some() {
                if let Err(e) = self.propose_all(&mut st) {
                    tracing::debug!("proposing a closed connection's effects: {e}");
                }
            }
        }
    }
}

/// What `req` may change of the book.
/// The error of a creation whose claims could not be renewed in time.
fn renewal_timeout(name: &str, lease: Duration) -> Error {
    Error::Timeout {
        what: format!("renewing the claims of the name {name:?} at the other clusters"),
        seconds: lease.as_secs_f64() * 3.0,
    }
}

fn scope_of(req: &Request) -> Scope {
    match req {
        Request::Renew { .. } | Request::ChangeReplicas { .. } => Scope::Nothing,
        Request::Lookup { .. }
        | Request::List { .. }
        | Request::Search { .. }
        | Request::Status { .. }
        | Request::Members
        | Request::ClaimName { .. }
        | Request::DropClaim { .. } => Scope::Read,
        Request::Reserve { .. } | Request::Release { .. } => Scope::Keys(vec![Key::Members]),
        Request::Create { .. } => Scope::Create,
        Request::CreateNamespace { .. } => Scope::Keys(vec![Key::Namespaces, Key::Serial]),
        Request::CacheAdd { array, .. } => Scope::Array(*array),
        Request::CacheStats => Scope::Read,
        Request::DestroyNamespace { .. } => Scope::Keys(vec![Key::Namespaces]),
        Request::Namespaces { .. } => Scope::Read,
        Request::Destroy { array, .. } => Scope::ArrayAndMembers(*array),
        Request::Created { array }
        | Request::SetAttributes { array, .. }
        | Request::AcquireWrite { array, .. }
        | Request::AcquireWriteAsReader { array, .. }
        | Request::Commit { array, .. }
        | Request::Abort { array, .. }
        | Request::WaitVersion { array, .. }
        | Request::Unpin { array, .. }
        | Request::AddReader { array }
        | Request::RemoveReader { array, .. } => Scope::Array(*array),
        // Registrations, departures and suspects may change any entry (failovers).
        _ => Scope::All,
    }
}
