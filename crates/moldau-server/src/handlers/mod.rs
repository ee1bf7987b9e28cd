//! One module per Kafka API. Each translates a decoded request into calls on the broker
//! and builds the response; none holds state.
//!
//! [`dispatch`] checks the api key and version against [`moldau_protocol::apis`], decodes
//! the header and body with the `kafka-protocol` structs, and returns the future that
//! yields the framed response (`None` when the request gets no response, as produce
//! with `acks=0`).

mod acls;
mod admin_configs;
mod admin_topics;
mod api_versions;
mod client_quotas;
mod delete_records;
mod describe_cluster;
mod describe_producers;
mod describe_quorum;
mod fetch;
mod find_coordinator;
mod group_admin;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod sasl;
mod scram_credentials;
mod txn;
mod txn_admin;
mod txn_offset_commit;
mod write_txn_markers;

use crate::broker::Broker;
use bytes::{BufMut, Bytes};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
pub use moldau_metadata::acl::{AclOperation, ResourceType};
use moldau_protocol::rope::Rope;
use moldau_protocol::{apis, frame};
use std::future::Future;
use std::sync::Arc;

/// What a finished request asks the connection to do.
#[derive(Debug)]
pub enum Reply {
    /// Write these chunks, in order: together one framed response. Record bytes of a
    /// Fetch response are chunks of their own, referenced rather than copied
    /// ([`moldau_protocol::rope`]).
    Send(Vec<Bytes>),
    /// Write nothing (produce with `acks=0`).
    Nothing,
    /// Close the connection: the response could not be built, and silence would leave
    /// the client waiting on a correlation id that never comes.
    Close(String),
}

/// A response in the making.
pub type ResponseFuture = BoxFuture<'static, Reply>;

/// What the connection does with a frame.
pub enum Dispatch {
    /// Queue this response (in request order).
    Respond(ResponseFuture),
    /// Close the connection after the responses already queued.
    Close(String),
}

/// A response body, with the record bytes (if any) its encoding may reference instead
/// of copying.
pub trait ResponseBody: Encodable {
    /// Registers the body's record bytes with `rope`; most responses have none.
    fn share_records(&self, _rope: &mut Rope) {}

    /// Raises the body's `throttle_time_ms` to at least `ms` (a request quota's
    /// throttle, KIP-124); a no-op for bodies without the field.
    fn raise_throttle_time(&mut self, _ms: i32) {}

    /// Turns the body into what a client over its `request_percentage` quota gets; most
    /// bodies stay as they are (only their throttle time is raised).
    fn request_throttled(&mut self, _broker: &Broker, _ctx: &RequestContext) {}
}

macro_rules! no_records {
    ($($t:ty),* $(,)?) => { $(impl ResponseBody for $t {
        fn raise_throttle_time(&mut self, ms: i32) {
            self.throttle_time_ms = self.throttle_time_ms.max(ms);
        }
    })* };
}

macro_rules! unthrottled {
    ($($t:ty),* $(,)?) => { $(impl ResponseBody for $t {})* };
}

no_records!(
    kafka_protocol::messages::ApiVersionsResponse,
    kafka_protocol::messages::MetadataResponse,
    kafka_protocol::messages::ProduceResponse,
    kafka_protocol::messages::ListOffsetsResponse,
    kafka_protocol::messages::CreateTopicsResponse,
    kafka_protocol::messages::DeleteTopicsResponse,
    kafka_protocol::messages::CreatePartitionsResponse,
    kafka_protocol::messages::DescribeTopicPartitionsResponse,
    kafka_protocol::messages::DescribeConfigsResponse,
    kafka_protocol::messages::IncrementalAlterConfigsResponse,
    kafka_protocol::messages::AlterConfigsResponse,
    kafka_protocol::messages::DescribeAclsResponse,
    kafka_protocol::messages::CreateAclsResponse,
    kafka_protocol::messages::DeleteAclsResponse,
    kafka_protocol::messages::DescribeClusterResponse,
    kafka_protocol::messages::DeleteRecordsResponse,
    kafka_protocol::messages::OffsetForLeaderEpochResponse,
    kafka_protocol::messages::FindCoordinatorResponse,
    kafka_protocol::messages::JoinGroupResponse,
    kafka_protocol::messages::SyncGroupResponse,
    kafka_protocol::messages::HeartbeatResponse,
    kafka_protocol::messages::LeaveGroupResponse,
    kafka_protocol::messages::OffsetCommitResponse,
    kafka_protocol::messages::OffsetFetchResponse,
    kafka_protocol::messages::OffsetDeleteResponse,
    kafka_protocol::messages::ListGroupsResponse,
    kafka_protocol::messages::DescribeGroupsResponse,
    kafka_protocol::messages::DeleteGroupsResponse,
    kafka_protocol::messages::InitProducerIdResponse,
    kafka_protocol::messages::AddPartitionsToTxnResponse,
    kafka_protocol::messages::AddOffsetsToTxnResponse,
    kafka_protocol::messages::EndTxnResponse,
    kafka_protocol::messages::TxnOffsetCommitResponse,
    kafka_protocol::messages::DescribeProducersResponse,
    kafka_protocol::messages::DescribeTransactionsResponse,
    kafka_protocol::messages::ListTransactionsResponse,
    kafka_protocol::messages::DescribeUserScramCredentialsResponse,
    kafka_protocol::messages::AlterUserScramCredentialsResponse,
    kafka_protocol::messages::DescribeClientQuotasResponse,
    kafka_protocol::messages::AlterClientQuotasResponse,
);

unthrottled!(
    kafka_protocol::messages::DescribeQuorumResponse,
    kafka_protocol::messages::WriteTxnMarkersResponse,
    kafka_protocol::messages::SaslHandshakeResponse,
    kafka_protocol::messages::SaslAuthenticateResponse,
);

impl ResponseBody for kafka_protocol::messages::FetchResponse {
    fn raise_throttle_time(&mut self, ms: i32) {
        self.throttle_time_ms = self.throttle_time_ms.max(ms);
    }

    /// A consumer's Fetch over its request quota is answered without records, and the
    /// record bytes it had counted against `consumer_byte_rate` are taken back, as
    /// Kafka's `KafkaApis` answers any throttled consumer fetch (KIP-219): the consumer
    /// fetches the same offsets again once its connection is unmuted.
    fn request_throttled(&mut self, broker: &Broker, ctx: &RequestContext) {
        let bytes: usize = self
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref().map(Bytes::len))
            .sum();
        if bytes > 0 {
            self.responses.clear();
            ctx.withhold_fetched(broker, bytes);
        }
    }

    fn share_records(&self, rope: &mut Rope) {
        for topic in &self.responses {
            for partition in &topic.partitions {
                if let Some(records) = &partition.records {
                    rope.share(records);
                }
            }
        }
    }
}

/// Encodes `size | response header | body` for `api_key` at `version`.
pub fn encode_response<R: ResponseBody>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Reply {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = (|| -> Result<Vec<Bytes>, String> {
        let size = header.compute_size(header_version).map_err(to_string)?
            + body.compute_size(version).map_err(to_string)?;
        let mut rope = Rope::with_capacity((frame::SIZE_PREFIX + size).min(64 * 1024));
        body.share_records(&mut rope);
        rope.put_i32(size as i32);
        header
            .encode(&mut rope, header_version)
            .map_err(to_string)?;
        body.encode(&mut rope, version).map_err(to_string)?;
        Ok(rope.into_chunks())
    })();
    match result {
        Ok(chunks) => Reply::Send(chunks),
        Err(e) => {
            tracing::error!(?api_key, version, error = %e, "cannot encode response");
            Reply::Close(format!(
                "cannot encode {api_key:?} v{version} response: {e}"
            ))
        }
    }
}

fn to_string<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Dispatches one frame (see the module docs).
///
/// A broker out of contact with the controller for longer than its session (it has
/// been fenced and its partitions are led elsewhere, [`Broker::out_of_contact`]) closes
/// each client connection at its next request: it cannot know who leads now, and a
/// client that keeps asking it would never learn. Clients reconnect to another broker.
pub fn dispatch(broker: &Arc<Broker>, conn: &ConnInfo, frame_bytes: Bytes) -> Dispatch {
    if broker.out_of_contact() {
        return Dispatch::Close(
            "this broker is out of contact with the controller; ask another broker".into(),
        );
    }
    let prefix = match frame::peek_header(&frame_bytes) {
        Ok(p) => p,
        Err(e) => return Dispatch::Close(e.to_string()),
    };
    let Ok(api_key) = ApiKey::try_from(prefix.api_key) else {
        return Dispatch::Close(format!("unknown api key {}", prefix.api_key));
    };
    if !apis::is_supported(api_key, prefix.api_version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer with a v0 body carrying UNSUPPORTED_VERSION and our ranges.
            let body = api_versions::unsupported_version();
            return respond_now(encode_response(api_key, 0, prefix.correlation_id, &body));
        }
        return Dispatch::Close(format!(
            "unsupported version {} of {api_key:?}",
            prefix.api_version
        ));
    }
    let mut body = frame_bytes;
    let (_, header) = match frame::decode_header(&mut body) {
        Ok(h) => h,
        Err(e) => return Dispatch::Close(e.to_string()),
    };
    let b = broker.clone();
    match api_key {
        ApiKey::ApiVersions => run(b, conn, header, body, api_versions::handle),
        ApiKey::Metadata => run(b, conn, header, body, metadata::handle),
        ApiKey::Produce if header.request_api_version < apis::PRODUCE_REJECTED_BELOW => {
            produce::reject_legacy(&header, body)
        }
        ApiKey::Produce => match decode(&mut body, header.request_api_version) {
            Ok(req) => produce::handle(&b, &context(conn, &header), header, req),
            Err(e) => Dispatch::Close(e),
        },
        ApiKey::Fetch => run(b, conn, header, body, fetch::handle),
        ApiKey::ListOffsets => run(b, conn, header, body, list_offsets::handle),
        ApiKey::CreateTopics => run(b, conn, header, body, admin_topics::create_topics),
        ApiKey::DeleteTopics => run(b, conn, header, body, admin_topics::delete_topics),
        ApiKey::CreatePartitions => run(b, conn, header, body, admin_topics::create_partitions),
        ApiKey::DescribeTopicPartitions => {
            run(b, conn, header, body, metadata::describe_topic_partitions)
        }
        ApiKey::DescribeConfigs => run(b, conn, header, body, admin_configs::describe_configs),
        ApiKey::AlterConfigs => run(b, conn, header, body, admin_configs::alter_configs),
        ApiKey::DescribeAcls => run(b, conn, header, body, acls::describe_acls),
        ApiKey::CreateAcls => run(b, conn, header, body, acls::create_acls),
        ApiKey::DeleteAcls => run(b, conn, header, body, acls::delete_acls),
        ApiKey::IncrementalAlterConfigs => run(
            b,
            conn,
            header,
            body,
            admin_configs::incremental_alter_configs,
        ),
        ApiKey::DescribeCluster => run(b, conn, header, body, describe_cluster::handle),
        ApiKey::DescribeQuorum => run(b, conn, header, body, describe_quorum::handle),
        ApiKey::DeleteRecords => run(b, conn, header, body, delete_records::handle),
        ApiKey::OffsetForLeaderEpoch => run(b, conn, header, body, offset_for_leader_epoch::handle),
        ApiKey::FindCoordinator => run(b, conn, header, body, find_coordinator::handle),
        ApiKey::JoinGroup => run(b, conn, header, body, groups::join_group),
        ApiKey::SyncGroup => run(b, conn, header, body, groups::sync_group),
        ApiKey::Heartbeat => run(b, conn, header, body, groups::heartbeat),
        ApiKey::LeaveGroup => run(b, conn, header, body, groups::leave_group),
        ApiKey::OffsetCommit => run(b, conn, header, body, offsets::offset_commit),
        ApiKey::OffsetFetch => run(b, conn, header, body, offsets::offset_fetch),
        ApiKey::OffsetDelete => run(b, conn, header, body, offsets::offset_delete),
        ApiKey::ListGroups => run(b, conn, header, body, group_admin::list_groups),
        ApiKey::DescribeGroups => run(b, conn, header, body, group_admin::describe_groups),
        ApiKey::DeleteGroups => run(b, conn, header, body, group_admin::delete_groups),
        ApiKey::InitProducerId => run(b, conn, header, body, init_producer_id::handle),
        ApiKey::AddPartitionsToTxn => run(b, conn, header, body, txn::add_partitions_to_txn),
        ApiKey::AddOffsetsToTxn => run(b, conn, header, body, txn::add_offsets_to_txn),
        ApiKey::EndTxn => run(b, conn, header, body, txn::end_txn),
        ApiKey::WriteTxnMarkers => run(b, conn, header, body, write_txn_markers::handle),
        ApiKey::TxnOffsetCommit => run(b, conn, header, body, txn_offset_commit::handle),
        ApiKey::DescribeProducers => run(b, conn, header, body, describe_producers::handle),
        ApiKey::DescribeTransactions => {
            run(b, conn, header, body, txn_admin::describe_transactions)
        }
        ApiKey::ListTransactions => run(b, conn, header, body, txn_admin::list_transactions),
        ApiKey::SaslHandshake => run(b, conn, header, body, sasl::handshake_out_of_place),
        ApiKey::SaslAuthenticate => run(b, conn, header, body, sasl::authenticate_out_of_place),
        ApiKey::DescribeUserScramCredentials => {
            run(b, conn, header, body, scram_credentials::describe)
        }
        ApiKey::AlterUserScramCredentials => run(b, conn, header, body, scram_credentials::alter),
        ApiKey::DescribeClientQuotas => run(b, conn, header, body, client_quotas::describe),
        ApiKey::AlterClientQuotas => run(b, conn, header, body, client_quotas::alter),
        other => Dispatch::Close(format!("{other:?} is not served")),
    }
}

fn respond_now(reply: Reply) -> Dispatch {
    Dispatch::Respond(Box::pin(std::future::ready(reply)))
}

/// Decodes a request body; bytes after it are ignored (and logged at debug level), as
/// Kafka ignores them. Decoding runs under `catch_unwind` so a decoder bug on hostile input costs one connection, not the broker.
fn decode<R: Decodable>(body: &mut Bytes, version: i16) -> Result<R, String> {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| R::decode(body, version)));
    match result {
        Ok(Ok(req)) => {
            if !frame::fully_consumed(body) {
                let shown = &body[..body.len().min(32)];
                tracing::debug!(version, trailing = ?shown, "ignoring bytes after a request body");
            }
            Ok(req)
        }
        Ok(Err(e)) => Err(format!("malformed request body: {e}")),
        Err(_) => Err("request body decoder panicked".into()),
    }
}

/// What the network layer knows of a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: Arc<str>,
    /// The listener the connection came in on (Metadata answers with every broker's
    /// endpoint on that same listener, as Kafka does).
    pub listener: Arc<str>,
    /// The principal the connection acts as (`User:alice`, `User:ANONYMOUS`).
    pub principal: Arc<str>,
    /// Until when the connection is muted by a quota throttle, ms since the Unix epoch
    /// (the network layer reads no request before then; KIP-219).
    pub muted_until_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The share of `fetch.response.pool.bytes` held by this connection's Fetch response
    /// until the network layer has written it (one Fetch is in flight per connection).
    pub fetch_permit: FetchPermit,
}

/// A connection's hold on the broker's fetch response pool.
pub type FetchPermit = Arc<parking_lot::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

/// The request context handlers may need.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Negotiated api version.
    pub version: i16,
    /// `client.id` from the header.
    pub client_id: Option<StrBytes>,
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: Arc<str>,
    /// The listener the request came in on.
    pub listener: Arc<str>,
    /// The principal the request acts as (`User:alice`, `User:ANONYMOUS`).
    pub principal: Arc<str>,
    /// The connection's mute deadline ([`ConnInfo::muted_until_ms`]).
    pub muted_until_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The connection's hold on the fetch response pool ([`ConnInfo::fetch_permit`]).
    pub fetch_permit: FetchPermit,
}

/// An ACL host in canonical form: `*`, or the IP address as Rust prints it after
/// `to_canonical` (`::ffff:10.0.0.5` and `10.0.0.5` are one host; `0:0:0:0:0:0:0:1` is
/// `::1`). Anything else is returned as given.
pub fn canonical_host(host: &str) -> String {
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_else(|_| host.to_owned())
}

/// The resource name of the cluster in ACLs.
pub const CLUSTER: &str = "kafka-cluster";

impl RequestContext {
    /// Whether the request's principal may do `op` on `resource_type` `name` (always,
    /// without an authorizer; super users always). A denial is logged at INFO with the
    /// principal, operation, resource and client address (the audit log; Kafka's
    /// `kafka.authorizer.logger`).
    pub fn allowed(
        &self,
        broker: &Broker,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let ok = self.visible(broker, op, resource_type, name);
        if !ok {
            tracing::info!(
                target: "moldau::authorizer",
                principal = %self.principal,
                operation = op.name(),
                resource_type = ?resource_type,
                resource = name,
                client = %self.client_host.trim_start_matches('/'),
                "authorization denied"
            );
        }
        ok
    }

    /// [`RequestContext::allowed`] without the audit line, for leaving things out of a
    /// listing (Metadata, ListGroups) rather than refusing a request.
    pub fn visible(
        &self,
        broker: &Broker,
        op: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some(a) = &broker.config.authorizer else {
            return true;
        };
        if a.super_users.contains(&*self.principal)
            || &*self.principal == crate::security::INTER_BROKER
        {
            return true;
        }
        let image = broker.image();
        moldau_metadata::acl::authorize(
            image.acls.covering(resource_type, name),
            &self.principal,
            &self.client_ip(),
            op,
            resource_type,
            name,
            a.allow_if_no_acl,
        )
    }

    /// Records `bytes` against the byte-rate quota `key` that applies to this client
    /// (its principal's user name and its `client.id`), and mutes the connection for the
    /// throttle time, which it returns (ms; 0 without a quota or under it).
    pub fn throttle(&self, broker: &Broker, key: &'static str, bytes: usize) -> u64 {
        self.record_and_mute(broker, key, bytes as f64, u64::MAX)
    }

    /// For a consumer Fetch answered without the `bytes` of records it read (a throttled
    /// fetch, Kafka's `getThrottledResponse`): takes them back from the
    /// `consumer_byte_rate` quota and gives its share of the fetch response pool back.
    pub fn withhold_fetched(&self, broker: &Broker, bytes: usize) {
        let quota = moldau_metadata::quota::CONSUMER_BYTE_RATE;
        if broker.quotas.is_active(quota) {
            broker.quotas.unrecord(
                &broker.image().client_quotas,
                quota,
                self.user(),
                self.client_id.as_deref().unwrap_or(""),
                bytes,
            );
        }
        self.fetch_permit.lock().take();
    }

    /// Records `busy` (the time a runtime thread spent decoding and handling this
    /// request) against the `request_percentage` quota that applies to this client, and
    /// mutes the connection for the throttle time, which it returns (ms; at most one quota
    /// window, as Kafka bounds it; 0 without a quota or under it). KIP-124.
    pub fn throttle_request(&self, broker: &Broker, busy: std::time::Duration) -> u64 {
        self.record_and_mute(
            broker,
            moldau_metadata::quota::REQUEST_PERCENTAGE,
            busy.as_secs_f64() * 100.0,
            broker.quotas.window_ms(),
        )
    }

    /// Records `amount` against quota `key` for this client; mutes the connection for
    /// the throttle time (at most `max_ms`), which it returns.
    fn record_and_mute(&self, broker: &Broker, key: &'static str, amount: f64, max_ms: u64) -> u64 {
        if !broker.quotas.is_active(key) {
            return 0;
        }
        let image = broker.image();
        let now = u64::try_from(crate::replica_manager::now_ms()).unwrap_or(0);
        let ms = broker
            .quotas
            .record(
                &image.client_quotas,
                key,
                self.user(),
                self.client_id.as_deref().unwrap_or(""),
                amount,
                now,
            )
            .min(max_ms);
        if ms > 0 {
            self.muted_until_ms
                .fetch_max(now + ms, std::sync::atomic::Ordering::AcqRel);
        }
        ms
    }

    /// The client's IP address in canonical form (an IPv4-mapped IPv6 address as IPv4),
    /// as ACL hosts are stored.
    pub fn client_ip(&self) -> String {
        canonical_host(self.client_host.trim_start_matches('/'))
    }

    /// The user name of the principal (`alice` for `User:alice`).
    pub fn user(&self) -> &str {
        self.principal
            .strip_prefix("User:")
            .unwrap_or(&self.principal)
    }

    /// `op` on the cluster resource.
    pub fn allowed_on_cluster(&self, broker: &Broker, op: AclOperation) -> bool {
        self.allowed(broker, op, ResourceType::Cluster, CLUSTER)
    }
}

fn context(conn: &ConnInfo, header: &RequestHeader) -> RequestContext {
    RequestContext {
        version: header.request_api_version,
        client_id: header.client_id.clone(),
        client_host: conn.client_host.clone(),
        listener: conn.listener.clone(),
        principal: conn.principal.clone(),
        muted_until_ms: conn.muted_until_ms.clone(),
        fetch_permit: conn.fetch_permit.clone(),
    }
}

fn run<Req, Resp, F, Fut>(
    broker: Arc<Broker>,
    conn: &ConnInfo,
    header: RequestHeader,
    mut body: Bytes,
    f: F,
) -> Dispatch
where
    Req: Decodable + 'static,
    Resp: ResponseBody,
    F: FnOnce(Arc<Broker>, RequestContext, Req) -> Fut,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let version = header.request_api_version;
    let Ok(api_key) = ApiKey::try_from(header.request_api_key) else {
        return Dispatch::Close("unknown api key".into());
    };
    // With any client quota configured, the request's thread time is measured for the
    // request quota: decoding, every poll of its handler, encoding (not the time it
    // waits, as for replication or a fetch's max.wait.ms: Kafka counts thread time too).
    let started = broker
        .quotas
        .is_active(moldau_metadata::quota::REQUEST_PERCENTAGE)
        .then(std::time::Instant::now);
    let req: Req = match decode(&mut body, version) {
        Ok(r) => r,
        Err(e) => return Dispatch::Close(format!("{api_key:?} v{version}: {e}")),
    };
    let ctx = context(conn, &header);
    let correlation_id = header.correlation_id;
    let Some(started) = started else {
        let fut = f(broker, ctx, req);
        return Dispatch::Respond(Box::pin(async move {
            let resp = fut.await;
            encode_response(api_key, version, correlation_id, &resp)
        }));
    };
    let exempt = request_quota_exempt(&req);
    let decoding = started.elapsed();
    let quota_ctx = ctx.clone();
    let fut = f(broker.clone(), ctx, req);
    Dispatch::Respond(Box::pin(async move {
        let (mut resp, polling) = BusyTime::new(fut).await;
        let mut busy = decoding + polling;
        let encoding = std::time::Instant::now();
        if exempt {
            return encode_response(api_key, version, correlation_id, &resp);
        }
        // The encode is timed on a first pass whose result is kept unless a throttle
        // must be written into the body.
        let reply = encode_response(api_key, version, correlation_id, &resp);
        busy += encoding.elapsed();
        let ms = quota_ctx.throttle_request(&broker, busy);
        if ms == 0 {
            return reply;
        }
        resp.request_throttled(&broker, &quota_ctx);
        resp.raise_throttle_time(i32::try_from(ms).unwrap_or(i32::MAX));
        encode_response(api_key, version, correlation_id, &resp)
    }))
}

/// Requests the request quota does not hold back, as Kafka exempts what needs
/// CLUSTER_ACTION: a follower's Fetch and the coordinator's WriteTxnMarkers.
fn request_quota_exempt<Req: 'static>(req: &Req) -> bool {
    let any: &dyn std::any::Any = req;
    if let Some(fetch) = any.downcast_ref::<kafka_protocol::messages::FetchRequest>() {
        return *fetch.replica_id >= 0 || *fetch.replica_state.replica_id >= 0;
    }
    any.is::<kafka_protocol::messages::WriteTxnMarkersRequest>()
}

/// A future with the time spent inside its `poll` calls (the thread time of an async
/// handler, without the time it waits).
struct BusyTime<F> {
    inner: std::pin::Pin<Box<F>>,
    busy: std::time::Duration,
}

impl<F: Future> BusyTime<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            busy: std::time::Duration::ZERO,
        }
    }
}

impl<F: Future> Future for BusyTime<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += started.elapsed();
        polled.map(|out| (out, self.busy))
    }
}

/// `Some(message)` as the protocol's nullable string.
pub(crate) fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}
