//! Transaction-coordinator tests with a fake clock: requests are numbered, replies are
//! collected by number, writes wait in `pending` until the harness completes (or fails)
//! them, and requested markers wait in `markers` until it delivers them.

use super::api::*;
use super::metadata::TxnState;
use super::records::{decode_key, decode_value, encode_key, encode_value, TxnLogValue};
use super::{TxnConfig, TxnShard};
use bytes::Bytes;
use moldau_protocol::error::ResponseError;
use std::collections::{BTreeSet, HashMap};

const TIMEOUT: i32 = 60_000;
const COORDINATOR_EPOCH: i32 = 5;
const FIRST_PID: i64 = 1000;

/// A `WriteMarkers` effect, as the harness keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Markers {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
}

struct Harness {
    shard: TxnShard<u32>,
    now: i64,
    next_req: u32,
    next_pid: i64,
    replies: HashMap<u32, TxnReply>,
    /// Writes emitted but not yet completed, in order.
    pending: Vec<(WriteToken, Bytes, Option<Bytes>)>,
    /// Durable records, in append order.
    log: Vec<(Bytes, Option<Bytes>)>,
    /// Marker requests not yet delivered.
    markers: Vec<Markers>,
}

fn config() -> TxnConfig {
    TxnConfig::default()
}

impl Harness {
    fn new() -> Self {
        Self::with_config(config())
    }

    fn with_config(config: TxnConfig) -> Self {
        Harness {
            shard: TxnShard::new(config, COORDINATOR_EPOCH, 0),
            now: 0,
            next_req: 0,
            next_pid: FIRST_PID,
            replies: HashMap::new(),
            pending: Vec::new(),
            log: Vec::new(),
            markers: Vec::new(),
        }
    }

    fn apply(&mut self, fx: Vec<TxnEffect<u32>>) {
        for e in fx {
            match e {
                TxnEffect::Reply(id, r) => {
                    assert!(self.replies.insert(id, r).is_none(), "{id} answered twice");
                }
                TxnEffect::Write { key, value, token } => self.pending.push((token, key, value)),
                TxnEffect::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    partitions,
                } => {
                    assert_eq!(coordinator_epoch, COORDINATOR_EPOCH);
                    self.markers.push(Markers {
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        commit,
                        partitions,
                    });
                }
            }
        }
    }

    fn req(&mut self) -> u32 {
        self.next_req += 1;
        self.next_req
    }

    fn take(&mut self, id: u32) -> TxnReply {
        self.replies
            .remove(&id)
            .unwrap_or_else(|| panic!("request {id} has no reply yet"))
    }

    fn init_req(id: &str, expected: Option<(i64, i16)>) -> InitProducerId {
        InitProducerId {
            transactional_id: id.into(),
            transaction_timeout_ms: TIMEOUT,
            expected,
        }
    }

    /// Sends InitProducerId; returns the request number (the reply may wait for a write).
    fn init_with(&mut self, id: &str, expected: Option<(i64, i16)>) -> u32 {
        let r = self.req();
        let now = self.now;
        let mut next_pid = self.next_pid;
        let mut alloc = || {
            let pid = next_pid;
            next_pid += 1;
            Some(pid)
        };
        let fx = self
            .shard
            .init_producer_id(now, Self::init_req(id, expected), &mut alloc, r);
        self.next_pid = next_pid;
        self.apply(fx);
        r
    }

    fn init_reply(&mut self, r: u32) -> Result<(i64, i16), ResponseError> {
        match self.take(r) {
            TxnReply::InitProducerId(res) => res,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// InitProducerId with every write completed: its answer.
    fn init(
        &mut self,
        id: &str,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        let r = self.init_with(id, expected);
        self.complete_writes();
        self.init_reply(r)
    }

    fn add_with(&mut self, id: &str, pid: i64, epoch: i16, parts: &[(&str, i32)]) -> u32 {
        let r = self.req();
        let parts = parts.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let fx = self
            .shard
            .add_partitions(self.now, id, pid, epoch, parts, r);
        self.apply(fx);
        r
    }

    fn add_reply(&mut self, r: u32) -> Result<(), ResponseError> {
        match self.take(r) {
            TxnReply::AddPartitions(res) => res,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn add(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(&str, i32)],
    ) -> Result<(), ResponseError> {
        let r = self.add_with(id, pid, epoch, parts);
        self.complete_writes();
        self.add_reply(r)
    }

    fn end_with(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> u32 {
        let r = self.req();
        let fx = self.shard.end_txn(self.now, id, pid, epoch, commit, r);
        self.apply(fx);
        r
    }

    fn end_reply(&mut self, r: u32) -> Result<(), ResponseError> {
        match self.take(r) {
            TxnReply::EndTxn(res) => res,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool) -> Result<(), ResponseError> {
        let r = self.end_with(id, pid, epoch, commit);
        self.complete_writes();
        self.end_reply(r)
    }

    /// Makes every pending write durable, including writes that follow from them.
    fn complete_writes(&mut self) {
        while !self.pending.is_empty() {
            let (token, key, value) = self.pending.remove(0);
            self.log.push((key, value));
            let fx = self.shard.write_done(self.now, token, Ok(()));
            self.apply(fx);
        }
    }

    /// Fails the oldest pending write with `error`.
    fn fail_write(&mut self, error: ResponseError) {
        let (token, _, _) = self.pending.remove(0);
        let fx = self.shard.write_done(self.now, token, Err(error));
        self.apply(fx);
    }

    /// Delivers every requested marker set and completes the resulting writes.
    fn deliver_markers(&mut self) {
        while !self.markers.is_empty() {
            let m = self.markers.remove(0);
            let fx = self.shard.markers_written(
                self.now,
                &m.transactional_id,
                m.producer_id,
                m.producer_epoch,
            );
            self.apply(fx);
            self.complete_writes();
        }
    }

    fn advance_to(&mut self, now: i64) {
        self.now = now;
        let fx = self.shard.tick(now);
        self.apply(fx);
    }

    fn describe(&self, id: &str) -> Result<DescribedTxn, ResponseError> {
        let mut d = self.shard.describe(&[id.to_string()]);
        assert_eq!(d.len(), 1);
        d.remove(0).result
    }

    fn state(&self, id: &str) -> TxnState {
        self.describe(id).expect("described").state
    }

    /// The value of the last pending write.
    fn pending_value(&self) -> Option<TxnLogValue> {
        let (_, _, v) = self.pending.last().expect("a pending write");
        v.as_ref().map(|v| decode_value(v).expect("decodes"))
    }
}

fn parts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn value_of(fx: &TxnEffect<u32>) -> TxnLogValue {
    match fx {
        TxnEffect::Write { value: Some(v), .. } => decode_value(v).expect("decodes"),
        other => panic!("not a value write: {other:?}"),
    }
}

fn token_of(fx: &TxnEffect<u32>) -> WriteToken {
    match fx {
        TxnEffect::Write { token, .. } => *token,
        other => panic!("not a write: {other:?}"),
    }
}

#[test]
fn happy_path_commit_emits_effects_in_order() {
    let mut shard: TxnShard<u32> = TxnShard::new(config(), COORDINATOR_EPOCH, 0);
    let mut pids = FIRST_PID..;
    let mut alloc = || pids.next();

    // InitProducerId: one Empty write, then the reply.
    let fx = shard.init_producer_id(100, Harness::init_req("tx", None), &mut alloc, 1);
    assert_eq!(fx.len(), 1);
    let TxnEffect::Write { key, .. } = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(decode_key(key), Ok("tx".to_string()));
    let v = value_of(&fx[0]);
    assert_eq!(
        (
            v.producer_id,
            v.producer_epoch,
            v.state,
            v.start_timestamp_ms
        ),
        (FIRST_PID, 0, TxnState::Empty, -1)
    );
    assert_eq!(
        shard.write_done(100, token_of(&fx[0]), Ok(())),
        vec![TxnEffect::Reply(
            1,
            TxnReply::InitProducerId(Ok((FIRST_PID, 0)))
        )]
    );

    // AddPartitions: Ongoing written with the partitions and the start time.
    let fx = shard.add_partitions(200, "tx", FIRST_PID, 0, parts(&[("t", 1), ("t", 0)]), 2);
    assert_eq!(fx.len(), 1);
    let v = value_of(&fx[0]);
    assert_eq!(v.state, TxnState::Ongoing);
    assert_eq!(v.start_timestamp_ms, 200);
    assert_eq!(
        v.partitions,
        parts(&[("t", 0), ("t", 1)]).into_iter().collect()
    );
    assert_eq!(
        shard.write_done(200, token_of(&fx[0]), Ok(())),
        vec![TxnEffect::Reply(2, TxnReply::AddPartitions(Ok(())))]
    );
    // The same partitions again: answered at once, nothing written.
    assert_eq!(
        shard.add_partitions(250, "tx", FIRST_PID, 0, parts(&[("t", 0)]), 3),
        vec![TxnEffect::Reply(3, TxnReply::AddPartitions(Ok(())))]
    );

    // EndTxn(commit): PrepareCommit written, then the reply, then the markers.
    let fx = shard.end_txn(300, "tx", FIRST_PID, 0, true, 4);
    assert_eq!(fx.len(), 1);
    assert_eq!(value_of(&fx[0]).state, TxnState::PrepareCommit);
    assert_eq!(
        shard.write_done(300, token_of(&fx[0]), Ok(())),
        vec![
            TxnEffect::Reply(4, TxnReply::EndTxn(Ok(()))),
            TxnEffect::WriteMarkers {
                transactional_id: "tx".into(),
                producer_id: FIRST_PID,
                producer_epoch: 0,
                coordinator_epoch: COORDINATOR_EPOCH,
                commit: true,
                partitions: parts(&[("t", 0), ("t", 1)]),
            }
        ]
    );

    // Markers written: CompleteCommit, partitions cleared.
    let fx = shard.markers_written(400, "tx", FIRST_PID, 0);
    assert_eq!(fx.len(), 1);
    let v = value_of(&fx[0]);
    assert_eq!(v.state, TxnState::CompleteCommit);
    assert!(v.partitions.is_empty());
    assert_eq!(v.last_update_timestamp_ms, 400);
    assert_eq!(shard.write_done(400, token_of(&fx[0]), Ok(())), vec![]);
    // A late duplicate of the markers call is ignored.
    assert_eq!(shard.markers_written(401, "tx", FIRST_PID, 0), vec![]);

    let d = shard.describe(&["tx".to_string()]);
    assert_eq!(
        d[0].result,
        Ok(DescribedTxn {
            state: TxnState::CompleteCommit,
            transaction_timeout_ms: TIMEOUT,
            transaction_start_time_ms: 200,
            producer_id: FIRST_PID,
            producer_epoch: 0,
            topics: vec![],
        })
    );
}

#[test]
fn timed_out_transaction_is_aborted_with_an_epoch_bump() {
    let mut h = Harness::new();
    let (pid, epoch) = h.init("tx", None).expect("init");
    h.now = 1_000;
    h.add("tx", pid, epoch, &[("t", 0)]).expect("add");
    // Timed out once start + timeout < now; acted on at the next 10 s check.
    assert_eq!(h.shard.next_deadline(), 70_000);
    h.advance_to(61_000);
    h.advance_to(69_999);
    assert!(h.pending.is_empty());
    h.advance_to(70_000);
    let v = h.pending_value().expect("PrepareAbort");
    assert_eq!((v.state, v.producer_epoch), (TxnState::PrepareAbort, 1));
    // The old producer is fenced while the abort is being written …
    let r = h.add_with("tx", pid, epoch, &[("t", 1)]);
    assert_eq!(h.add_reply(r), Err(ResponseError::ProducerFenced));
    h.complete_writes();
    assert_eq!(
        h.markers,
        vec![Markers {
            transactional_id: "tx".into(),
            producer_id: pid,
            producer_epoch: 1,
            commit: false,
            partitions: parts(&[("t", 0)]),
        }]
    );
    // … and after.
    assert_eq!(
        h.end("tx", pid, epoch, true),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("tx", pid, epoch, false),
        Err(ResponseError::ProducerFenced)
    );
    h.deliver_markers();
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    assert_eq!(
        h.add("tx", pid, epoch, &[("t", 0)]),
        Err(ResponseError::ProducerFenced)
    );
    // KIP-360: the timed-out producer cannot bump its way back in.
    assert_eq!(
        h.init("tx", Some((pid, epoch))),
        Err(ResponseError::ProducerFenced)
    );
    // A new producer gets a higher epoch.
    assert_eq!(h.init("tx", None), Ok((pid, 2)));
    // Now idle: it expires 7 days after this update, at the next hourly check.
    assert_eq!(h.shard.next_deadline(), 169 * 3_600_000);
}

#[test]
fn concurrent_end_txn_and_retries() {
    let mut h = Harness::new();
    let (pid, e) = h.init("tx", None).expect("init");
    h.add("tx", pid, e, &[("t", 0)]).expect("add");
    let first = h.end_with("tx", pid, e, true);
    assert!(!h.replies.contains_key(&first), "reply waits for the write");
    let second = h.end_with("tx", pid, e, true);
    assert_eq!(
        h.end_reply(second),
        Err(ResponseError::ConcurrentTransactions)
    );
    h.complete_writes();
    assert_eq!(h.end_reply(first), Ok(()));
    assert_eq!(h.markers.len(), 1);
    // Markers in flight: a commit retry waits, an abort is a state error.
    assert_eq!(
        h.end("tx", pid, e, true),
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.end("tx", pid, e, false),
        Err(ResponseError::InvalidTxnState)
    );
    h.deliver_markers();
    assert_eq!(h.end("tx", pid, e, true), Ok(()));
    assert_eq!(
        h.end("tx", pid, e, false),
        Err(ResponseError::InvalidTxnState)
    );
    assert!(h.pending.is_empty() && h.markers.is_empty());
    // After a new InitProducerId the id is Empty: EndTxn is a state error.
    let (pid, e) = h.init("tx", None).expect("init");
    assert_eq!(
        h.end("tx", pid, e, true),
        Err(ResponseError::InvalidTxnState)
    );
}

#[test]
fn requests_during_a_pending_transition_get_concurrent_transactions() {
    let mut h = Harness::new();
    let (pid, e) = h.init("tx", None).expect("init");
    h.add("tx", pid, e, &[("t", 0)]).expect("add");
    let first = h.end_with("tx", pid, e, true);
    let second = h.end_with("tx", pid, e, true);
    assert_eq!(
        h.end_reply(second),
        Err(ResponseError::ConcurrentTransactions)
    );
    let add = h.add_with("tx", pid, e, &[("t", 1)]);
    assert_eq!(h.add_reply(add), Err(ResponseError::ConcurrentTransactions));
    let init = h.init_with("tx", None);
    assert_eq!(
        h.init_reply(init),
        Err(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(h.pending.len(), 1);
    h.complete_writes();
    assert_eq!(h.end_reply(first), Ok(()));
}

#[test]
fn second_producer_fences_the_zombie() {
    let mut h = Harness::new();
    let (pid, e) = h.init("tx", None).expect("init");
    h.add("tx", pid, e, &[("a", 0), ("b", 2)]).expect("add");
    // A second producer with the same transactional id.
    let r = h.init_with("tx", None);
    assert!(!h.replies.contains_key(&r));
    let v = h.pending_value().expect("PrepareAbort");
    assert_eq!((v.state, v.producer_epoch), (TxnState::PrepareAbort, 1));
    // The zombie is fenced at once.
    assert_eq!(
        h.end("tx", pid, e, true),
        Err(ResponseError::ProducerFenced)
    );
    h.complete_writes();
    assert_eq!(h.init_reply(r), Err(ResponseError::ConcurrentTransactions));
    assert_eq!(
        h.markers,
        vec![Markers {
            transactional_id: "tx".into(),
            producer_id: pid,
            producer_epoch: 1,
            commit: false,
            partitions: parts(&[("a", 0), ("b", 2)]),
        }]
    );
    // Retrying before the markers are written still waits.
    assert_eq!(
        h.init("tx", None),
        Err(ResponseError::ConcurrentTransactions)
    );
    h.deliver_markers();
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
    let (pid2, e2) = h.init("tx", None).expect("retry succeeds");
    assert_eq!(pid2, pid);
    assert!(e2 > e + 1, "epoch {e2} is above the fenced epoch");
    // The zombie stays fenced, for every request.
    assert_eq!(
        h.add("tx", pid, e, &[("a", 0)]),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("tx", pid, e, false),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.init("tx", Some((pid, e))),
        Err(ResponseError::ProducerFenced)
    );
    // The new producer works.
    h.add("tx", pid2, e2, &[("a", 1)]).expect("add");
    assert_eq!(h.end("tx", pid2, e2, true), Ok(()));
}

/// Drives one id per state; returns the ids with their expected state.
fn drive_every_state(h: &mut Harness) -> Vec<(&'static str, TxnState)> {
    let (p, e) = h.init("empty", None).expect("init");
    let _ = (p, e);
    let (p, e) = h.init("ongoing", None).expect("init");
    h.add("ongoing", p, e, &[("t", 0), ("u", 3)]).expect("add");
    let (p, e) = h.init("prep-commit", None).expect("init");
    h.add("prep-commit", p, e, &[("t", 1)]).expect("add");
    h.end("prep-commit", p, e, true).expect("end");
    let (p, e) = h.init("prep-abort", None).expect("init");
    h.add("prep-abort", p, e, &[("t", 2), ("t", 3)])
        .expect("add");
    h.end("prep-abort", p, e, false).expect("end");
    let (p, e) = h.init("done-commit", None).expect("init");
    h.add("done-commit", p, e, &[("v", 0)]).expect("add");
    h.end("done-commit", p, e, true).expect("end");
    let (p, e) = h.init("done-abort", None).expect("init");
    h.add("done-abort", p, e, &[("v", 1)]).expect("add");
    h.end("done-abort", p, e, false).expect("end");
    // Only the last two get their markers.
    let (done, prepared): (Vec<_>, Vec<_>) = h
        .markers
        .drain(..)
        .partition(|m| m.transactional_id.starts_with("done"));
    h.markers = done;
    h.deliver_markers();
    h.markers = prepared;
    vec![
        ("empty", TxnState::Empty),
        ("ongoing", TxnState::Ongoing),
        ("prep-commit", TxnState::PrepareCommit),
        ("prep-abort", TxnState::PrepareAbort),
        ("done-commit", TxnState::CompleteCommit),
        ("done-abort", TxnState::CompleteAbort),
    ]
}

#[test]
fn coordinator_restart_in_every_state() {
    let mut h = Harness::new();
    h.now = 5_000;
    let ids = drive_every_state(&mut h);
    for (id, state) in &ids {
        assert_eq!(h.state(id), *state, "{id}");
    }
    let names: Vec<String> = ids.iter().map(|(id, _)| id.to_string()).collect();
    let before = h.shard.describe(&names);

    // A new coordinator (higher epoch) loads the partition.
    let mut restored: TxnShard<u32> = TxnShard::new(config(), COORDINATOR_EPOCH + 1, 20_000);
    for (key, value) in &h.log {
        restored.replay(key, value.as_deref()).expect("replays");
    }
    assert_eq!(restored.describe(&names), before);
    assert_eq!(restored.len(), ids.len());

    // Markers again, exactly for the Prepare states.
    let fx = restored.finish_load(20_000);
    let want = |id: &str, commit: bool, p: &[(&str, i32)]| {
        let d = h.describe(id).expect("described");
        TxnEffect::WriteMarkers {
            transactional_id: id.into(),
            producer_id: d.producer_id,
            producer_epoch: d.producer_epoch,
            coordinator_epoch: COORDINATOR_EPOCH + 1,
            commit,
            partitions: parts(p),
        }
    };
    assert_eq!(
        fx,
        vec![
            want("prep-abort", false, &[("t", 2), ("t", 3)]),
            want("prep-commit", true, &[("t", 1)]),
        ]
    );
    // They complete as usual.
    let d = h.describe("prep-commit").expect("described");
    let fx = restored.markers_written(21_000, "prep-commit", d.producer_id, d.producer_epoch);
    assert_eq!(value_of(&fx[0]).state, TxnState::CompleteCommit);
    restored.write_done(21_000, token_of(&fx[0]), Ok(()));
    assert_eq!(
        restored.describe(&["prep-commit".into()])[0]
            .result
            .as_ref()
            .map(|d| d.state),
        Ok(TxnState::CompleteCommit)
    );

    // The restored Ongoing transaction still times out: started at 5000, timeout 60 s,
    // checks every 10 s from 20 000.
    let ongoing = h.describe("ongoing").expect("described");
    assert_eq!(ongoing.transaction_start_time_ms, 5_000);
    assert_eq!(restored.next_deadline(), 70_000);
    assert_eq!(restored.tick(69_999), vec![]);
    let fx = restored.tick(70_000);
    assert_eq!(fx.len(), 1);
    let v = value_of(&fx[0]);
    assert_eq!(
        decode_key(match &fx[0] {
            TxnEffect::Write { key, .. } => key,
            _ => unreachable!(),
        }),
        Ok("ongoing".to_string())
    );
    assert_eq!(v.state, TxnState::PrepareAbort);
    assert_eq!(v.producer_epoch, ongoing.producer_epoch + 1);
    assert_eq!(
        restored.write_done(70_000, token_of(&fx[0]), Ok(())),
        vec![TxnEffect::WriteMarkers {
            transactional_id: "ongoing".into(),
            producer_id: ongoing.producer_id,
            producer_epoch: ongoing.producer_epoch + 1,
            coordinator_epoch: COORDINATOR_EPOCH + 1,
            commit: false,
            partitions: parts(&[("t", 0), ("u", 3)]),
        }]
    );
}

#[test]
fn failed_write_drops_the_pending_transition() {
    let mut h = Harness::new();
    // A new id whose first write fails does not exist.
    let r = h.init_with("tx", None);
    h.fail_write(ResponseError::NotCoordinator);
    assert_eq!(h.init_reply(r), Err(ResponseError::NotCoordinator));
    assert_eq!(
        h.describe("tx"),
        Err(ResponseError::TransactionalIdNotFound)
    );
    assert!(h.shard.is_empty());
    let (pid, e) = h.init("tx", None).expect("init");

    // AddPartitions fails: still Empty, and the next request is not blocked.
    let r = h.add_with("tx", pid, e, &[("t", 0)]);
    h.fail_write(ResponseError::CoordinatorNotAvailable);
    assert_eq!(h.add_reply(r), Err(ResponseError::CoordinatorNotAvailable));
    let d = h.describe("tx").expect("described");
    assert_eq!(
        (d.state, d.topics.len(), d.transaction_start_time_ms),
        (TxnState::Empty, 0, -1)
    );
    h.add("tx", pid, e, &[("t", 0)]).expect("add");

    // EndTxn fails: still Ongoing, no markers.
    let r = h.end_with("tx", pid, e, true);
    h.fail_write(ResponseError::NotCoordinator);
    assert_eq!(h.end_reply(r), Err(ResponseError::NotCoordinator));
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    assert!(h.markers.is_empty());

    // A failed fence keeps its bump (as Kafka) and does not bump again.
    let r = h.init_with("tx", None);
    assert_eq!(h.pending_value().map(|v| v.producer_epoch), Some(e + 1));
    h.fail_write(ResponseError::CoordinatorNotAvailable);
    assert_eq!(h.init_reply(r), Err(ResponseError::CoordinatorNotAvailable));
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    let r = h.init_with("tx", None);
    assert_eq!(h.pending_value().map(|v| v.producer_epoch), Some(e + 1));
    h.complete_writes();
    assert_eq!(h.init_reply(r), Err(ResponseError::ConcurrentTransactions));

    // A failed completion is retried after a backoff.
    let m = h.markers.remove(0);
    let fx = h
        .shard
        .markers_written(h.now, "tx", m.producer_id, m.producer_epoch);
    h.apply(fx);
    h.fail_write(ResponseError::CoordinatorNotAvailable);
    assert_eq!(h.state("tx"), TxnState::PrepareAbort);
    assert_eq!(
        h.shard.next_deadline(),
        h.now + super::shard::COMPLETE_RETRY_BACKOFF_MS
    );
    let at = h.shard.next_deadline();
    h.advance_to(at);
    assert_eq!(
        h.pending_value().map(|v| v.state),
        Some(TxnState::CompleteAbort)
    );
    h.complete_writes();
    assert_eq!(h.init("tx", None), Ok((pid, e + 2)));
}

#[test]
fn idle_transactional_id_expires_with_a_tombstone() {
    let mut h = Harness::with_config(TxnConfig {
        transactional_id_expiration_ms: 1_000,
        remove_expired_transactional_ids_interval_ms: 500,
        ..config()
    });
    let (pid, e) = h.init("idle", None).expect("init");
    h.now = 200;
    let (busy_pid, busy_e) = h.init("busy", None).expect("init");
    h.add("busy", busy_pid, busy_e, &[("t", 0)]).expect("add");
    assert_eq!(h.shard.next_deadline(), 1_000);
    h.advance_to(999);
    assert!(h.pending.is_empty());
    h.advance_to(1_000);
    assert_eq!(h.pending.len(), 1);
    let (_, key, value) = &h.pending[0];
    assert_eq!(key, &encode_key("idle"));
    assert_eq!(value, &None);
    // While the tombstone is written the id is busy.
    assert_eq!(
        h.init("idle", None),
        Err(ResponseError::ConcurrentTransactions)
    );
    h.complete_writes();
    assert_eq!(
        h.describe("idle"),
        Err(ResponseError::TransactionalIdNotFound)
    );
    assert_eq!(
        h.add("idle", pid, e, &[("t", 0)]),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    // Ongoing transactions do not expire (they time out instead).
    assert_eq!(h.state("busy"), TxnState::Ongoing);
    // The id comes back with a new producer id.
    let (new_pid, new_e) = h.init("idle", None).expect("init");
    assert_ne!(new_pid, pid);
    assert_eq!(new_e, 0);
    // A replay of the tombstone removes the id too.
    let mut restored: TxnShard<u32> = TxnShard::new(config(), 1, 0);
    for (key, value) in &h.log[..h.log.len() - 1] {
        restored.replay(key, value.as_deref()).expect("replays");
    }
    assert_eq!(
        restored.describe(&["idle".into()])[0].result,
        Err(ResponseError::TransactionalIdNotFound)
    );
}

#[test]
fn exhausted_epoch_allocates_a_new_producer_id() {
    let mut h = Harness::new();
    let start = TxnLogValue {
        producer_id: 77,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: i16::MAX - 2,
        transaction_timeout_ms: TIMEOUT,
        state: TxnState::CompleteCommit,
        partitions: BTreeSet::new(),
        last_update_timestamp_ms: 0,
        start_timestamp_ms: 0,
        client_transaction_version: 0,
    };
    h.shard
        .replay(&encode_key("tx"), Some(&encode_value(&start, 0)))
        .expect("replays");
    assert_eq!(h.init("tx", None), Ok((77, i16::MAX - 1)));
    // Exhausted: a fresh producer id at epoch 0.
    assert_eq!(h.init("tx", Some((77, i16::MAX - 1))), Ok((FIRST_PID, 0)));
    // KIP-360: a retry of that call (answer lost) gets the same answer.
    assert_eq!(h.init("tx", Some((77, i16::MAX - 1))), Ok((FIRST_PID, 0)));
    assert_eq!(h.next_pid, FIRST_PID + 1);
    // No producer id to hand out: retriable.
    let mut h = Harness::new();
    h.shard
        .replay(&encode_key("tx"), Some(&encode_value(&start, 0)))
        .expect("replays");
    assert_eq!(h.init("tx", None), Ok((77, i16::MAX - 1)));
    let fx = h
        .shard
        .init_producer_id(0, Harness::init_req("tx", None), &mut || None, 99);
    assert_eq!(
        fx,
        vec![TxnEffect::Reply(
            99,
            TxnReply::InitProducerId(Err(ResponseError::CoordinatorLoadInProgress))
        )]
    );
    let fx = h
        .shard
        .init_producer_id(0, Harness::init_req("new", None), &mut || None, 100);
    assert_eq!(
        fx,
        vec![TxnEffect::Reply(
            100,
            TxnReply::InitProducerId(Err(ResponseError::CoordinatorLoadInProgress))
        )]
    );
}

#[test]
fn kip_360_bump_and_retry() {
    let mut h = Harness::new();
    let (pid, e) = h.init("tx", None).expect("init");
    assert_eq!(h.init("tx", Some((pid, e))), Ok((pid, e + 1)));
    // The answer was lost; the retry with the old epoch gets the same answer.
    assert_eq!(h.init("tx", Some((pid, e))), Ok((pid, e + 1)));
    assert_eq!(
        h.init("tx", Some((pid, e + 5))),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.init("tx", Some((pid + 1, e + 1))),
        Err(ResponseError::ProducerFenced)
    );
    // A new id accepts whatever the producer held (it recovers from UNKNOWN_PRODUCER_ID).
    assert_eq!(h.init("other", Some((5, 3))), Ok((pid + 1, 0)));
}

#[test]
fn invalid_requests_are_rejected() {
    let mut h = Harness::new();
    for timeout in [0, -1, TxnConfig::default().transaction_max_timeout_ms + 1] {
        let r = h.req();
        let fx = h.shard.init_producer_id(
            0,
            InitProducerId {
                transactional_id: "tx".into(),
                transaction_timeout_ms: timeout,
                expected: None,
            },
            &mut || Some(1),
            r,
        );
        assert_eq!(
            fx,
            vec![TxnEffect::Reply(
                r,
                TxnReply::InitProducerId(Err(ResponseError::InvalidTransactionTimeout))
            )],
            "timeout {timeout}"
        );
    }
    assert_eq!(h.init("", None), Err(ResponseError::InvalidRequest));
    assert_eq!(
        h.add("nope", 1, 0, &[("t", 0)]),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("nope", 1, 0, true),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    let (pid, e) = h.init("tx", None).expect("init");
    assert_eq!(
        h.add("tx", pid + 1, e, &[("t", 0)]),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("tx", pid + 1, e, true),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("tx", pid, e + 1, &[("t", 0)]),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("tx", pid, e + 1, true),
        Err(ResponseError::ProducerFenced)
    );
    assert!(h.pending.is_empty());
}

#[test]
fn transaction_without_partitions_completes_without_markers() {
    let mut h = Harness::new();
    let (pid, e) = h.init("tx", None).expect("init");
    h.add("tx", pid, e, &[]).expect("add");
    assert_eq!(h.state("tx"), TxnState::Ongoing);
    assert_eq!(h.end("tx", pid, e, false), Ok(()));
    assert!(h.markers.is_empty());
    assert_eq!(h.state("tx"), TxnState::CompleteAbort);
}

#[test]
fn describe_and_list_filter_as_kafka() {
    let mut h = Harness::new();
    let (a_pid, a_e) = h.init("a", None).expect("init");
    h.now = 1_000;
    h.add("a", a_pid, a_e, &[("t", 2), ("t", 0), ("s", 1)])
        .expect("add");
    let (b_pid, _) = h.init("b", None).expect("init");
    let d = h.describe("a").expect("described");
    assert_eq!(
        d.topics,
        vec![("s".into(), vec![1]), ("t".into(), vec![0, 2])]
    );
    assert_eq!(d.state.name(), "Ongoing");
    assert_eq!(
        h.shard.describe(&["zzz".into(), String::new()]),
        vec![
            TxnDescription {
                transactional_id: "zzz".into(),
                result: Err(ResponseError::TransactionalIdNotFound),
            },
            TxnDescription {
                transactional_id: String::new(),
                result: Err(ResponseError::InvalidRequest),
            },
        ]
    );
    let listing = |id: &str, pid: i64, state| TxnListing {
        transactional_id: id.into(),
        producer_id: pid,
        state,
    };
    let all = vec![
        listing("a", a_pid, TxnState::Ongoing),
        listing("b", b_pid, TxnState::Empty),
    ];
    assert_eq!(h.shard.list(&[], &[], -1, 2_000), all);
    assert_eq!(h.shard.list(&["Ongoing".into()], &[], -1, 2_000), all[..1]);
    assert_eq!(h.shard.list(&["Bogus".into()], &[], -1, 2_000), vec![]);
    assert_eq!(h.shard.list(&[], &[b_pid], -1, 2_000), all[1..]);
    // Duration: "a" started at 1000; "b" has no start (-1) and passes, as in Kafka.
    assert_eq!(h.shard.list(&[], &[], 1_000, 2_000), all[1..]);
    assert_eq!(h.shard.list(&[], &[], 999, 2_000), all);
    assert_eq!(
        TxnState::from_name("PrepareEpochFence"),
        Some(TxnState::PrepareEpochFence)
    );
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_name(s.name()), Some(s));
        assert_eq!(TxnState::from_code(s.code()), Some(s));
    }
}

#[test]
fn replay_rejects_bad_records_and_leaves_the_shard_unchanged() {
    let mut shard: TxnShard<u32> = TxnShard::new(config(), 1, 0);
    let key = encode_key("tx");
    let good = TxnLogValue {
        producer_id: 1,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: 0,
        transaction_timeout_ms: TIMEOUT,
        state: TxnState::Ongoing,
        partitions: parts(&[("t", 0)]).into_iter().collect(),
        last_update_timestamp_ms: 10,
        start_timestamp_ms: 10,
        client_transaction_version: 0,
    };
    let bytes = encode_value(&good, 1);
    shard.replay(&key, Some(&bytes)).expect("v1 replays");
    assert!(shard.replay(&key, Some(&bytes[..bytes.len() - 3])).is_err());
    assert!(shard.replay(&key[..3], Some(&bytes)).is_err());
    let dead = encode_value(
        &TxnLogValue {
            state: TxnState::Dead,
            ..good.clone()
        },
        0,
    );
    assert_eq!(
        shard.replay(&key, Some(&dead)),
        Err(super::TxnRecordError::NotStored(TxnState::Dead))
    );
    let d = shard.describe(&["tx".into()]);
    assert_eq!(d[0].result.as_ref().map(|d| d.state), Ok(TxnState::Ongoing));
    assert_eq!(shard.next_deadline(), 70_000);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_key(&bytes);
            let _ = decode_value(&bytes);
            let mut versioned = vec![0u8, 1];
            versioned.extend_from_slice(&bytes);
            let _ = decode_value(&versioned);
        }

        /// Any interleaving of requests, markers, time and (non-fence) write failures
        /// leaves a log that a new coordinator replays into the same state.
        #[test]
        fn replayed_log_matches_memory(ops in proptest::collection::vec((0u8..7, 0usize..3, any::<bool>()), 1..60)) {
            let ids = ["a", "b", "c"];
            let mut h = Harness::new();
            for (op, which, flag) in ops {
                let id = ids[which];
                let known = h.describe(id).ok();
                match op {
                    0 => {
                        let expected = known.as_ref().filter(|_| flag).map(|d| (d.producer_id, d.producer_epoch));
                        h.init_with(id, expected);
                    }
                    1 | 2 => {
                        if let Some(d) = known {
                            h.add_with(id, d.producer_id, d.producer_epoch, &[("t", i32::from(flag)), ("u", which as i32)]);
                        }
                    }
                    3 => {
                        if let Some(d) = known {
                            h.end_with(id, d.producer_id, d.producer_epoch, flag);
                        }
                    }
                    4 => h.complete_writes(),
                    5 => h.deliver_markers(),
                    _ => {
                        let fence = h.pending.first().is_some_and(|(_, _, v)| {
                            v.as_ref().and_then(|v| decode_value(v).ok()).is_some_and(|v| v.state == TxnState::PrepareAbort)
                        });
                        if flag && !h.pending.is_empty() && !fence {
                            h.fail_write(ResponseError::NotCoordinator);
                        } else {
                            let at = h.now + 20_000;
                            h.advance_to(at);
                        }
                    }
                }
            }
            h.complete_writes();
            let names: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            let mut restored: TxnShard<u32> = TxnShard::new(config(), 9, h.now);
            for (key, value) in &h.log {
                restored.replay(key, value.as_deref()).expect("replays");
            }
            prop_assert_eq!(restored.describe(&names), h.shard.describe(&names));
            let fx = restored.finish_load(h.now);
            let prepared: Vec<String> = names
                .iter()
                .filter(|n| h.describe(n).is_ok_and(|d| d.state == TxnState::PrepareCommit || d.state == TxnState::PrepareAbort))
                .cloned()
                .collect();
            prop_assert_eq!(fx.len(), prepared.len());
        }
    }
}
