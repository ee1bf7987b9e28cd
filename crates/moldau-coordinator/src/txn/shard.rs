//! [`TxnShard`]: the transactional ids of one `__transaction_state` partition and the
//! transaction protocol on them (InitProducerId, AddPartitionsToTxn, EndTxn, markers,
//! timeouts, expiration), as a state machine.
//!
//! Every transition follows Kafka's `pendingState` model: it is prepared from the current
//! metadata, written as a record ([`TxnEffect::Write`]), and applied only when the
//! runtime reports the write durable ([`TxnShard::write_done`]). While a transition is
//! pending, other requests for that id get CONCURRENT_TRANSACTIONS; a failed write drops
//! it and leaves the durable state as it was.

use super::api::{InitProducerId, TxnEffect, TxnReply, WriteToken};
use super::metadata::{
    is_epoch_exhausted, TimerKind, TxnFields, TxnMetadata, TxnState, NO_PRODUCER_EPOCH,
};
use super::records::{encode_key, encode_value, VALUE_VERSION};
use super::TxnConfig;
use moldau_protocol::error::ResponseError;
use std::collections::{BTreeSet, HashMap};

/// How long a failed completion write (CompleteCommit/CompleteAbort after the markers)
/// waits before it is tried again, ms (Kafka retries it from its marker sender loop,
/// at `retry.backoff.ms`, 100 by default).
pub const COMPLETE_RETRY_BACKOFF_MS: i64 = 100;

/// What to do once a pending write is durable (or failed).
#[derive(Debug)]
enum Then<R> {
    /// InitProducerId: reply with the new producer id and epoch.
    Init(R),
    /// AddPartitionsToTxn: reply success.
    AddPartitions(R),
    /// EndTxn: reply success, then write the markers.
    EndTxn(R),
    /// An epoch fence (fencing InitProducerId, or a timed-out transaction): reply
    /// CONCURRENT_TRANSACTIONS to the InitProducerId if any, then write abort markers.
    Fence(Option<R>),
    /// Markers are written: the transaction is complete.
    Complete,
    /// The id expired: drop it.
    Expire,
}

#[derive(Debug)]
struct PendingWrite<R> {
    transactional_id: String,
    /// The metadata the write stores; `None` for a tombstone.
    transit: Option<TxnFields>,
    then: Then<R>,
}

/// The transactional ids of one `__transaction_state` partition.
///
/// `R` is the runtime's reply handle (e.g. a oneshot sender); replies that depend on a
/// write are held until [`TxnShard::write_done`].
#[derive(Debug)]
pub struct TxnShard<R> {
    pub(super) config: TxnConfig,
    pub(super) coordinator_epoch: i32,
    pub(super) txns: HashMap<String, TxnMetadata>,
    writes: HashMap<u64, PendingWrite<R>>,
    next_token: u64,
    /// `(due ms, transactional id)` per timer kind; each id is in at most one set, at
    /// the due time stored in its `timer`.
    timeouts: BTreeSet<(i64, String)>,
    expiries: BTreeSet<(i64, String)>,
    retries: BTreeSet<(i64, String)>,
    /// When the periodic checks started, ms: timeouts are acted on at
    /// `anchor + k * abort_timed_out_transaction_cleanup_interval_ms`, expirations at
    /// `anchor + k * remove_expired_transactional_ids_interval_ms`, as Kafka's scheduler
    /// runs them.
    anchor: i64,
}

pub(super) type Effects<R> = Vec<TxnEffect<R>>;

/// The first periodic check (every `interval` ms from `anchor`) at or after `due`.
fn check_time(anchor: i64, interval: i64, due: i64) -> i64 {
    if due <= anchor {
        return anchor;
    }
    let interval = interval.max(1);
    let steps = (due - anchor).saturating_add(interval - 1) / interval;
    anchor.saturating_add(steps.saturating_mul(interval))
}

impl<R> TxnShard<R> {
    /// An empty shard for a `__transaction_state` partition this broker now leads at
    /// `coordinator_epoch` (the partition's leader epoch, carried in markers). Replay the
    /// partition into it ([`TxnShard::replay`], then [`TxnShard::finish_load`]) before
    /// feeding it requests.
    pub fn new(config: TxnConfig, coordinator_epoch: i32, now: i64) -> Self {
        TxnShard {
            config,
            coordinator_epoch,
            txns: HashMap::new(),
            writes: HashMap::new(),
            next_token: 0,
            timeouts: BTreeSet::new(),
            expiries: BTreeSet::new(),
            retries: BTreeSet::new(),
            anchor: now,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The coordinator epoch the shard was created with.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Number of transactional ids held (including ones whose first write is pending).
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether the shard holds no transactional id.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Handles a transactional InitProducerId (KIP-98, KIP-360).
    ///
    /// `alloc` hands out a fresh producer id (for a new transactional id, or when the
    /// epoch is exhausted); `None` answers COORDINATOR_LOAD_IN_PROGRESS (retriable).
    ///
    /// Answers, as Kafka's `TransactionCoordinator.handleInitProducerId`:
    /// - empty id: INVALID_REQUEST; timeout not in `1..=transaction.max.timeout.ms`:
    ///   INVALID_TRANSACTION_TIMEOUT;
    /// - a new id: a fresh producer id at epoch 0, after the write;
    /// - a transition pending, or PrepareCommit/PrepareAbort: CONCURRENT_TRANSACTIONS;
    /// - `expected` names neither the current producer id nor (with an exhausted epoch)
    ///   the previous one, or an epoch that is neither current nor the last one: PRODUCER_FENCED;
    /// - Empty/CompleteCommit/CompleteAbort: the epoch is bumped (a new producer id at
    ///   epoch 0 once the epoch reaches `i16::MAX - 1`), after the write; a retry with
    ///   the previous epoch gets the same answer again;
    /// - Ongoing: the producer holding the transaction is fenced (epoch bumped in
    ///   memory at once), the transaction is aborted (PrepareAbort written, then abort
    ///   markers), and this request gets CONCURRENT_TRANSACTIONS; the client retries and
    ///   gets a higher epoch once the abort completes.
    pub fn init_producer_id(
        &mut self,
        now: i64,
        req: InitProducerId,
        alloc: &mut dyn FnMut() -> Option<i64>,
        reply: R,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let fail = |fx: &mut Effects<R>, reply: R, e: ResponseError| {
            fx.push(TxnEffect::Reply(reply, TxnReply::InitProducerId(Err(e))));
        };
        let id = req.transactional_id;
        if id.is_empty() {
            fail(&mut fx, reply, ResponseError::InvalidRequest);
            return fx;
        }
        if req.transaction_timeout_ms <= 0
            || req.transaction_timeout_ms > self.config.transaction_max_timeout_ms
        {
            fail(&mut fx, reply, ResponseError::InvalidTransactionTimeout);
            return fx;
        }
        if !self.txns.contains_key(&id) {
            let Some(producer_id) = alloc() else {
                fail(&mut fx, reply, ResponseError::CoordinatorLoadInProgress);
                return fx;
            };
            let mut meta = TxnMetadata::new(TxnFields {
                producer_id,
                previous_producer_id: -1,
                producer_epoch: NO_PRODUCER_EPOCH,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                txn_timeout_ms: req.transaction_timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_timestamp: -1,
                txn_last_update_timestamp: now,
            });
            meta.unwritten = true;
            self.txns.insert(id.clone(), meta);
        }
        let Some(meta) = self.txns.get(&id) else {
            return fx;
        };
        let cur = &meta.fields;
        if meta.pending.is_some() {
            fail(&mut fx, reply, ResponseError::ConcurrentTransactions);
            return fx;
        }
        // Kafka `isValidProducerId`.
        let valid_producer = |(pid, epoch): (i64, i16)| {
            cur.producer_epoch == NO_PRODUCER_EPOCH
                || pid == cur.producer_id
                || (pid == cur.previous_producer_id && is_epoch_exhausted(epoch))
        };
        if !req.expected.is_none_or(valid_producer) {
            fail(&mut fx, reply, ResponseError::ProducerFenced);
            return fx;
        }
        match cur.state {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
            TxnState::Ongoing => {
                self.fence_and_abort(now, &id, Some(reply), &mut fx);
                return fx;
            }
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Dead
            | TxnState::PrepareEpochFence => {
                fail(&mut fx, reply, ResponseError::ConcurrentTransactions);
                return fx;
            }
        }
        let expected_epoch = req.expected.map(|(_, e)| e);
        let mut transit = cur.clone();
        transit.state = TxnState::Empty;
        transit.txn_timeout_ms = req.transaction_timeout_ms;
        transit.partitions.clear();
        transit.txn_start_timestamp = -1;
        transit.txn_last_update_timestamp = now;
        transit.previous_producer_id = cur.producer_id;
        if is_epoch_exhausted(cur.producer_epoch)
            && expected_epoch.is_none_or(|e| e == cur.producer_epoch)
        {
            // Kafka `prepareProducerIdRotation`.
            let Some(producer_id) = alloc() else {
                fail(&mut fx, reply, ResponseError::CoordinatorLoadInProgress);
                return fx;
            };
            transit.producer_id = producer_id;
            transit.producer_epoch = 0;
            transit.last_producer_epoch = if expected_epoch.is_some() {
                cur.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            };
        } else {
            // Kafka `prepareIncrementProducerEpoch`.
            let (epoch, last) = match expected_epoch {
                None => (cur.producer_epoch + 1, NO_PRODUCER_EPOCH),
                Some(e) if cur.producer_epoch == NO_PRODUCER_EPOCH || e == cur.producer_epoch => {
                    (cur.producer_epoch + 1, cur.producer_epoch)
                }
                // A retry of a bump whose answer was lost: the same answer again.
                Some(e) if e == cur.last_producer_epoch => {
                    (cur.producer_epoch, cur.last_producer_epoch)
                }
                Some(_) => {
                    fail(&mut fx, reply, ResponseError::ProducerFenced);
                    return fx;
                }
            };
            transit.producer_epoch = epoch;
            transit.last_producer_epoch = last;
        }
        self.prepare(&id, transit, Then::Init(reply), &mut fx);
        fx
    }

    /// The metadata of `transactional_id` as the producer `producer_id`/`producer_epoch`
    /// may act on it (AddPartitionsToTxn, EndTxn). Errors: INVALID_REQUEST for an empty
    /// id, INVALID_PRODUCER_ID_MAPPING for an unknown id (or one not yet written) or
    /// another producer id, PRODUCER_FENCED for another epoch.
    fn producer_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&TxnMetadata, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let meta = match self.txns.get(transactional_id) {
            Some(m) if !m.unwritten => m,
            _ => return Err(ResponseError::InvalidProducerIdMapping),
        };
        if meta.fields.producer_id != producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if meta.fields.producer_epoch != producer_epoch {
            Err(ResponseError::ProducerFenced)
        } else {
            Ok(meta)
        }
    }

    /// Handles AddPartitionsToTxn (and AddOffsetsToTxn, for which the runtime passes the
    /// group's `__consumer_offsets` partition), as Kafka's
    /// `handleAddPartitionsToTransaction`: unknown id or another producer id:
    /// INVALID_PRODUCER_ID_MAPPING; another epoch: PRODUCER_FENCED; a transition pending
    /// or PrepareCommit/PrepareAbort: CONCURRENT_TRANSACTIONS; Ongoing with every
    /// partition already in: success at once; otherwise the transaction becomes (or stays)
    /// Ongoing with the partitions added (starting it, at `now`, from
    /// Empty/CompleteCommit/CompleteAbort), and the reply follows the write.
    pub fn add_partitions(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        reply: R,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let answer = |fx: &mut Effects<R>, reply: R, r: Result<(), ResponseError>| {
            fx.push(TxnEffect::Reply(reply, TxnReply::AddPartitions(r)));
        };
        let meta = match self.producer_txn(transactional_id, producer_id, producer_epoch) {
            Ok(m) => m,
            Err(e) => {
                answer(&mut fx, reply, Err(e));
                return fx;
            }
        };
        let cur = &meta.fields;
        let check = if meta.pending.is_some() || cur.state.is_prepare() {
            Err(ResponseError::ConcurrentTransactions)
        } else if cur.state == TxnState::Ongoing
            && partitions.iter().all(|tp| cur.partitions.contains(tp))
        {
            answer(&mut fx, reply, Ok(()));
            return fx;
        } else if !matches!(cur.state, TxnState::Ongoing) && !cur.state.is_idle() {
            Err(ResponseError::ConcurrentTransactions)
        } else {
            Ok(())
        };
        if let Err(e) = check {
            answer(&mut fx, reply, Err(e));
            return fx;
        }
        let mut transit = cur.clone();
        if cur.state.is_idle() {
            transit.txn_start_timestamp = now;
        }
        transit.state = TxnState::Ongoing;
        transit.partitions.extend(partitions);
        transit.txn_last_update_timestamp = now;
        self.prepare(
            transactional_id,
            transit,
            Then::AddPartitions(reply),
            &mut fx,
        );
        fx
    }

    /// Handles EndTxn, as Kafka's `handleEndTransaction` for clients before
    /// `transaction.version` 2: unknown id or another producer id:
    /// INVALID_PRODUCER_ID_MAPPING; another epoch (strictly: a timed-out and aborted
    /// producer holds a stale epoch): PRODUCER_FENCED; a transition pending:
    /// CONCURRENT_TRANSACTIONS; Ongoing: PrepareCommit/PrepareAbort is written, the reply
    /// (success) follows the write, then the markers are due ([`TxnEffect::WriteMarkers`]);
    /// CompleteCommit + commit or CompleteAbort + abort: success (a retry);
    /// PrepareCommit + commit or PrepareAbort + abort: CONCURRENT_TRANSACTIONS; any other
    /// combination, or Empty: INVALID_TXN_STATE.
    pub fn end_txn(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        reply: R,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let answer = |fx: &mut Effects<R>, reply: R, r: Result<(), ResponseError>| {
            fx.push(TxnEffect::Reply(reply, TxnReply::EndTxn(r)));
        };
        let meta = match self.producer_txn(transactional_id, producer_id, producer_epoch) {
            Ok(m) => m,
            Err(e) => {
                answer(&mut fx, reply, Err(e));
                return fx;
            }
        };
        let cur = &meta.fields;
        use ResponseError::{ConcurrentTransactions, InvalidTxnState};
        let result = if meta.pending.is_some() {
            Err(ConcurrentTransactions)
        } else {
            match (cur.state, commit) {
                (TxnState::Ongoing, _) => {
                    let mut transit = cur.clone();
                    transit.state = if commit {
                        TxnState::PrepareCommit
                    } else {
                        TxnState::PrepareAbort
                    };
                    transit.txn_last_update_timestamp = now;
                    self.prepare(transactional_id, transit, Then::EndTxn(reply), &mut fx);
                    return fx;
                }
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    Err(ConcurrentTransactions)
                }
                (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(ConcurrentTransactions),
                _ => Err(InvalidTxnState),
            }
        };
        answer(&mut fx, reply, result);
        fx
    }

    /// The markers of a [`TxnEffect::WriteMarkers`] are written: the transaction
    /// completes (CompleteCommit/CompleteAbort, partitions cleared, last update `now`),
    /// through a write. Stale calls (id gone, other producer id or epoch, a transition
    /// pending, not PrepareCommit/PrepareAbort) are ignored.
    pub fn markers_written(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let Some(meta) = self.txns.get(transactional_id) else {
            return fx;
        };
        let cur = &meta.fields;
        if meta.pending.is_some()
            || !cur.state.is_prepare()
            || cur.producer_id != producer_id
            || cur.producer_epoch != producer_epoch
        {
            return fx;
        }
        self.complete(now, transactional_id, &mut fx);
        fx
    }

    /// A [`TxnEffect::Write`] is durable (`Ok`) or failed (`Err`, with the error to
    /// answer: Kafka maps append failures to NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE).
    ///
    /// On success the prepared transition is applied and its replies and follow-ups
    /// (markers) are returned. On failure the transition is dropped, the durable state
    /// stays as it was, and the waiting request gets the error; two exceptions follow
    /// Kafka: a failed epoch fence keeps its bumped epoch in memory (the next fence does
    /// not bump again), and a failed completion is retried after
    /// [`COMPLETE_RETRY_BACKOFF_MS`] unless the error says the coordinator moved
    /// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS: the next coordinator completes it
    /// when it loads).
    pub fn write_done(
        &mut self,
        now: i64,
        token: WriteToken,
        result: Result<(), ResponseError>,
    ) -> Effects<R> {
        let mut fx = Vec::new();
        let Some(write) = self.writes.remove(&token.0) else {
            return fx;
        };
        let id = write.transactional_id;
        let owned = self
            .txns
            .get(&id)
            .is_some_and(|m| m.pending.is_some_and(|(_, t)| t == token.0));
        let result = if owned {
            result
        } else {
            // Cannot happen while the runtime hands every token back once; answer as
            // Kafka does when the metadata changed under a write.
            Err(result.err().unwrap_or(ResponseError::NotCoordinator))
        };
        match result {
            Ok(()) => self.write_succeeded(now, id, write.transit, write.then, &mut fx),
            Err(e) => self.write_failed(now, id, owned, write.then, e, &mut fx),
        }
        fx
    }

    fn write_succeeded(
        &mut self,
        now: i64,
        id: String,
        transit: Option<TxnFields>,
        then: Then<R>,
        fx: &mut Effects<R>,
    ) {
        let Some(transit) = transit else {
            // A tombstone: the id is gone.
            self.unschedule(&id);
            self.txns.remove(&id);
            return;
        };
        let Some(meta) = self.txns.get_mut(&id) else {
            return;
        };
        if transit.state != meta.fields.state {
            meta.has_failed_epoch_fence = false;
        }
        meta.fields = transit;
        meta.pending = None;
        meta.unwritten = false;
        let (producer_id, producer_epoch) = (meta.fields.producer_id, meta.fields.producer_epoch);
        match then {
            Then::Init(r) => fx.push(TxnEffect::Reply(
                r,
                TxnReply::InitProducerId(Ok((producer_id, producer_epoch))),
            )),
            Then::AddPartitions(r) => {
                fx.push(TxnEffect::Reply(r, TxnReply::AddPartitions(Ok(()))));
            }
            Then::EndTxn(r) => fx.push(TxnEffect::Reply(r, TxnReply::EndTxn(Ok(())))),
            Then::Fence(Some(r)) => fx.push(TxnEffect::Reply(
                r,
                TxnReply::InitProducerId(Err(ResponseError::ConcurrentTransactions)),
            )),
            Then::Fence(None) | Then::Complete | Then::Expire => {}
        }
        self.reschedule(&id);
        if let Some(meta) = self.txns.get(&id) {
            if meta.fields.state.is_prepare() {
                self.send_markers(now, &id, fx);
            }
        }
    }

    fn write_failed(
        &mut self,
        now: i64,
        id: String,
        owned: bool,
        then: Then<R>,
        error: ResponseError,
        fx: &mut Effects<R>,
    ) {
        if owned {
            if let Some(meta) = self.txns.get_mut(&id) {
                meta.pending = None;
                if matches!(then, Then::Fence(_)) {
                    meta.has_failed_epoch_fence = true;
                }
                if meta.unwritten {
                    self.txns.remove(&id);
                }
            }
            self.reschedule(&id);
        }
        match then {
            Then::Init(r) | Then::Fence(Some(r)) => {
                fx.push(TxnEffect::Reply(r, TxnReply::InitProducerId(Err(error))))
            }
            Then::AddPartitions(r) => {
                fx.push(TxnEffect::Reply(r, TxnReply::AddPartitions(Err(error))));
            }
            Then::EndTxn(r) => fx.push(TxnEffect::Reply(r, TxnReply::EndTxn(Err(error)))),
            Then::Complete => {
                let moved = matches!(
                    error,
                    ResponseError::NotCoordinator | ResponseError::CoordinatorLoadInProgress
                );
                if owned && !moved {
                    self.schedule(
                        &id,
                        TimerKind::CompleteRetry,
                        now + COMPLETE_RETRY_BACKOFF_MS,
                    );
                }
            }
            Then::Fence(None) | Then::Expire => {}
        }
    }

    /// When [`TxnShard::tick`] next has work, ms (`i64::MAX` if never): the first
    /// timeout check at or after the earliest transaction deadline, the first expiration
    /// check at or after the earliest expiry, or the earliest completion retry.
    pub fn next_deadline(&self) -> i64 {
        let timeout = self.timeouts.first().map_or(i64::MAX, |(due, _)| {
            check_time(
                self.anchor,
                self.config.abort_timed_out_transaction_cleanup_interval_ms,
                *due,
            )
        });
        let expiry = self.expiries.first().map_or(i64::MAX, |(due, _)| {
            check_time(
                self.anchor,
                self.config.remove_expired_transactional_ids_interval_ms,
                *due,
            )
        });
        let retry = self.retries.first().map_or(i64::MAX, |(due, _)| *due);
        timeout.min(expiry).min(retry)
    }

    /// Runs what is due at `now`, as Kafka's periodic tasks do:
    /// - every `transaction.abort.timed.out.transaction.cleanup.interval.ms`, Ongoing
    ///   transactions older than their timeout (`start + timeout < now`) with no
    ///   transition pending are aborted with an epoch bump (Kafka
    ///   `abortTimedOutTransactions`): PrepareAbort is written with the bumped epoch,
    ///   then abort markers are due;
    /// - every `transaction.remove.expired.transaction.cleanup.interval.ms`, idle ids
    ///   (Empty/CompleteCommit/CompleteAbort) not updated for
    ///   `transactional.id.expiration.ms` are removed with a tombstone;
    /// - failed completion writes are retried.
    pub fn tick(&mut self, now: i64) -> Effects<R> {
        let mut fx = Vec::new();
        let abort_every = self.config.abort_timed_out_transaction_cleanup_interval_ms;
        while let Some(id) = self.pop_due(TimerKind::Timeout, now, abort_every) {
            self.fence_and_abort(now, &id, None, &mut fx);
        }
        let expire_every = self.config.remove_expired_transactional_ids_interval_ms;
        while let Some(id) = self.pop_due(TimerKind::Expiry, now, expire_every) {
            self.expire(now, &id, &mut fx);
        }
        while let Some(id) = self.pop_due(TimerKind::CompleteRetry, now, 1) {
            let retry = self
                .txns
                .get(&id)
                .is_some_and(|m| m.pending.is_none() && m.fields.state.is_prepare());
            if retry {
                self.complete(now, &id, &mut fx);
            }
        }
        fx
    }

    /// Removes and returns the first id of `kind` whose check time has come.
    fn pop_due(&mut self, kind: TimerKind, now: i64, interval: i64) -> Option<String> {
        let anchor = self.anchor;
        let set = self.timer_set(kind);
        let (due, _) = set.first()?;
        let at = match kind {
            TimerKind::CompleteRetry => *due,
            _ => check_time(anchor, interval, *due),
        };
        if at > now {
            return None;
        }
        let (_, id) = set.pop_first()?;
        if let Some(meta) = self.txns.get_mut(&id) {
            meta.timer = None;
        }
        Some(id)
    }

    fn timer_set(&mut self, kind: TimerKind) -> &mut BTreeSet<(i64, String)> {
        match kind {
            TimerKind::Timeout => &mut self.timeouts,
            TimerKind::Expiry => &mut self.expiries,
            TimerKind::CompleteRetry => &mut self.retries,
        }
    }

    pub(super) fn unschedule(&mut self, id: &str) {
        let Some(timer) = self.txns.get_mut(id).and_then(|m| m.timer.take()) else {
            return;
        };
        let (kind, due) = timer;
        self.timer_set(kind).remove(&(due, id.to_owned()));
    }

    fn schedule(&mut self, id: &str, kind: TimerKind, due: i64) {
        self.unschedule(id);
        if let Some(meta) = self.txns.get_mut(id) {
            meta.timer = Some((kind, due));
            self.timer_set(kind).insert((due, id.to_owned()));
        }
    }

    /// Registers `id` under the timer its state calls for: Ongoing under its timeout
    /// (due once `start + timeout < now`), idle states under expiry, nothing while a
    /// transition is pending or in the Prepare states.
    pub(super) fn reschedule(&mut self, id: &str) {
        let Some(meta) = self.txns.get(id) else {
            return;
        };
        let f = &meta.fields;
        let wanted = if meta.pending.is_some() {
            None
        } else if f.state == TxnState::Ongoing {
            let due = f
                .txn_start_timestamp
                .saturating_add(i64::from(f.txn_timeout_ms))
                .saturating_add(1);
            Some((TimerKind::Timeout, due))
        } else if f.state.is_idle() {
            let due = f
                .txn_last_update_timestamp
                .saturating_add(self.config.transactional_id_expiration_ms);
            Some((TimerKind::Expiry, due))
        } else {
            None
        };
        if meta.timer == wanted {
            return;
        }
        self.unschedule(id);
        if let Some((kind, due)) = wanted {
            self.schedule(id, kind, due);
        }
    }

    /// Prepares `transit` for `id`: marks it pending and returns the write.
    fn prepare(&mut self, id: &str, transit: TxnFields, then: Then<R>, fx: &mut Effects<R>) {
        let value = encode_value(&transit.to_value(), VALUE_VERSION);
        self.prepare_write(id, transit.state, Some(transit), Some(value), then, fx);
    }

    fn prepare_write(
        &mut self,
        id: &str,
        target: TxnState,
        transit: Option<TxnFields>,
        value: Option<bytes::Bytes>,
        then: Then<R>,
        fx: &mut Effects<R>,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        if let Some(meta) = self.txns.get_mut(id) {
            meta.pending = Some((target, token));
        }
        self.unschedule(id);
        self.writes.insert(
            token,
            PendingWrite {
                transactional_id: id.to_owned(),
                transit,
                then,
            },
        );
        fx.push(TxnEffect::Write {
            key: encode_key(id),
            value,
            token: WriteToken(token),
        });
    }

    /// Fences the producer of an Ongoing transaction and aborts it (Kafka
    /// `prepareFenceProducerEpoch` followed by `endTransaction(ABORT)` on its behalf).
    /// The bumped epoch is set in memory at once, as Kafka does, so the fenced producer's
    /// requests get PRODUCER_FENCED while the PrepareAbort write is in flight.
    fn fence_and_abort(&mut self, now: i64, id: &str, reply: Option<R>, fx: &mut Effects<R>) {
        let Some(meta) = self.txns.get_mut(id) else {
            if let Some(r) = reply {
                fx.push(TxnEffect::Reply(
                    r,
                    TxnReply::InitProducerId(Err(ResponseError::ConcurrentTransactions)),
                ));
            }
            return;
        };
        if meta.pending.is_some() || meta.fields.state != TxnState::Ongoing {
            if let Some(r) = reply {
                fx.push(TxnEffect::Reply(
                    r,
                    TxnReply::InitProducerId(Err(ResponseError::ConcurrentTransactions)),
                ));
            }
            self.reschedule(id);
            return;
        }
        // Epochs handed to clients stop at i16::MAX - 1, so a bump always fits; if it
        // did not, fence at the current epoch rather than wrap.
        if !meta.has_failed_epoch_fence && meta.fields.producer_epoch < i16::MAX {
            meta.fields.producer_epoch += 1;
        }
        meta.fields.last_producer_epoch = NO_PRODUCER_EPOCH;
        let mut transit = meta.fields.clone();
        transit.state = TxnState::PrepareAbort;
        transit.txn_last_update_timestamp = now;
        self.prepare(id, transit, Then::Fence(reply), fx);
    }

    /// Writes the completion of a Prepare* transaction (Kafka `prepareComplete`).
    fn complete(&mut self, now: i64, id: &str, fx: &mut Effects<R>) {
        let Some(meta) = self.txns.get(id) else {
            return;
        };
        let mut transit = meta.fields.clone();
        transit.state = if meta.fields.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        transit.partitions.clear();
        transit.txn_last_update_timestamp = now;
        self.prepare(id, transit, Then::Complete, fx);
    }

    /// The markers of a Prepare* transaction are due: a [`TxnEffect::WriteMarkers`], or,
    /// with no partitions, the completion at once (as Kafka's marker manager does).
    pub(super) fn send_markers(&mut self, now: i64, id: &str, fx: &mut Effects<R>) {
        let Some(meta) = self.txns.get(id) else {
            return;
        };
        let f = &meta.fields;
        if f.partitions.is_empty() {
            self.complete(now, id, fx);
            return;
        }
        fx.push(TxnEffect::WriteMarkers {
            transactional_id: id.to_owned(),
            producer_id: f.producer_id,
            producer_epoch: f.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            commit: f.state == TxnState::PrepareCommit,
            partitions: f.partitions.iter().cloned().collect(),
        });
    }

    /// Removes an idle id whose expiration has come (Kafka
    /// `removeExpiredTransactionalIds`): a tombstone, then the id is dropped.
    fn expire(&mut self, now: i64, id: &str, fx: &mut Effects<R>) {
        let expiration = self.config.transactional_id_expiration_ms;
        let due = self.txns.get(id).is_some_and(|m| {
            m.pending.is_none()
                && m.fields.state.is_idle()
                && m.fields.txn_last_update_timestamp <= now.saturating_sub(expiration)
        });
        if due {
            self.prepare_write(id, TxnState::Dead, None, None, Then::Expire, fx);
        } else {
            self.reschedule(id);
        }
    }
}
