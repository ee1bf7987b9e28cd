//! The APIs and version ranges Moldau serves, as advertised in ApiVersions.
//!
//! Ranges follow what real clients send (protocol guide; Kafka 4.0's ApiVersions), with
//! the older versions that kafka-python, kafkajs and sarama still use kept where the
//! message schemas allow. The server dispatches only what this table lists; anything else
//! is answered with `UNSUPPORTED_VERSION` (35) or, for an unknown api key, a closed
//! connection, as Kafka does.

use kafka_protocol::messages::ApiKey;

/// One row of the table: an API and the inclusive version range served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version served (inclusive).
    pub min: i16,
    /// Highest version served (inclusive).
    pub max: i16,
}

const fn r(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Produce versions below 3 (message formats v0/v1) are advertised but answered with
/// `UNSUPPORTED_VERSION` per partition, as Kafka 4 does (KIP-896; KAFKA-18659: older
/// librdkafka refuses to produce compressed batches unless Produce's minimum is 0).
pub const PRODUCE_REJECTED_BELOW: i16 = 3;

/// Every API Moldau serves, in api-key order.
pub const SUPPORTED: &[ApiRange] = &[
    r(ApiKey::Produce, 0, 11),
    r(ApiKey::Fetch, 4, 16),
    r(ApiKey::ListOffsets, 1, 8),
    r(ApiKey::Metadata, 0, 12),
    r(ApiKey::ApiVersions, 0, 4),
    r(ApiKey::CreateTopics, 2, 7),
    r(ApiKey::DeleteTopics, 1, 6),
    r(ApiKey::DeleteRecords, 0, 2),
    r(ApiKey::InitProducerId, 0, 5),
    r(ApiKey::OffsetForLeaderEpoch, 2, 4),
    r(ApiKey::AddPartitionsToTxn, 0, 5),
    r(ApiKey::AddOffsetsToTxn, 0, 4),
    r(ApiKey::EndTxn, 0, 5),
    r(ApiKey::WriteTxnMarkers, 1, 1),
    r(ApiKey::TxnOffsetCommit, 0, 5),
    r(ApiKey::DescribeAcls, 1, 3),
    r(ApiKey::CreateAcls, 1, 3),
    r(ApiKey::DeleteAcls, 1, 3),
    r(ApiKey::DescribeConfigs, 1, 4),
    r(ApiKey::AlterConfigs, 0, 2),
    r(ApiKey::CreatePartitions, 0, 3),
    r(ApiKey::IncrementalAlterConfigs, 0, 1),
    r(ApiKey::DescribeQuorum, 0, 2),
    r(ApiKey::DescribeCluster, 0, 2),
    r(ApiKey::DescribeTopicPartitions, 0, 0),
    r(ApiKey::FindCoordinator, 0, 6),
    r(ApiKey::JoinGroup, 0, 9),
    r(ApiKey::SyncGroup, 0, 5),
    r(ApiKey::Heartbeat, 0, 4),
    r(ApiKey::LeaveGroup, 0, 5),
    r(ApiKey::OffsetCommit, 2, 9),
    r(ApiKey::OffsetFetch, 1, 9),
    r(ApiKey::OffsetDelete, 0, 0),
    r(ApiKey::ListGroups, 0, 5),
    r(ApiKey::DescribeGroups, 0, 5),
    r(ApiKey::DeleteGroups, 0, 2),
    r(ApiKey::DescribeProducers, 0, 0),
    r(ApiKey::DescribeTransactions, 0, 0),
    r(ApiKey::ListTransactions, 0, 1),
    r(ApiKey::SaslHandshake, 0, 1),
    r(ApiKey::SaslAuthenticate, 0, 2),
    r(ApiKey::DescribeUserScramCredentials, 0, 0),
    r(ApiKey::AlterUserScramCredentials, 0, 0),
    r(ApiKey::DescribeClientQuotas, 0, 1),
    r(ApiKey::AlterClientQuotas, 0, 1),
];

/// The served range of `key`, if Moldau serves it at all.
pub fn range(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|r| r.key == key)
}

/// Whether `version` of `key` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    range(key).is_some_and(|r| (r.min..=r.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn every_advertised_version_is_decodable_by_the_message_crate() {
        fn within<M: Message>(r: &ApiRange) {
            assert!(
                M::VERSIONS.min <= r.min && r.max <= M::VERSIONS.max,
                "{:?} {}..{} outside {}",
                r.key,
                r.min,
                r.max,
                M::VERSIONS
            );
        }
        for r in SUPPORTED {
            match r.key {
                ApiKey::Produce => within::<ProduceRequest>(&ApiRange {
                    min: PRODUCE_REJECTED_BELOW,
                    ..*r
                }),
                ApiKey::Fetch => within::<FetchRequest>(r),
                ApiKey::ListOffsets => within::<ListOffsetsRequest>(r),
                ApiKey::Metadata => within::<MetadataRequest>(r),
                ApiKey::ApiVersions => within::<ApiVersionsRequest>(r),
                ApiKey::CreateTopics => within::<CreateTopicsRequest>(r),
                ApiKey::DeleteTopics => within::<DeleteTopicsRequest>(r),
                ApiKey::DeleteRecords => within::<DeleteRecordsRequest>(r),
                ApiKey::OffsetForLeaderEpoch => within::<OffsetForLeaderEpochRequest>(r),
                ApiKey::DescribeConfigs => within::<DescribeConfigsRequest>(r),
                ApiKey::CreatePartitions => within::<CreatePartitionsRequest>(r),
                ApiKey::AlterConfigs => within::<AlterConfigsRequest>(r),
                ApiKey::DescribeAcls => within::<DescribeAclsRequest>(r),
                ApiKey::CreateAcls => within::<CreateAclsRequest>(r),
                ApiKey::DeleteAcls => within::<DeleteAclsRequest>(r),
                ApiKey::IncrementalAlterConfigs => within::<IncrementalAlterConfigsRequest>(r),
                ApiKey::DescribeCluster => within::<DescribeClusterRequest>(r),
                ApiKey::DescribeQuorum => within::<DescribeQuorumRequest>(r),
                ApiKey::DescribeTopicPartitions => within::<DescribeTopicPartitionsRequest>(r),
                ApiKey::FindCoordinator => within::<FindCoordinatorRequest>(r),
                ApiKey::JoinGroup => within::<JoinGroupRequest>(r),
                ApiKey::SyncGroup => within::<SyncGroupRequest>(r),
                ApiKey::Heartbeat => within::<HeartbeatRequest>(r),
                ApiKey::LeaveGroup => within::<LeaveGroupRequest>(r),
                ApiKey::OffsetCommit => within::<OffsetCommitRequest>(r),
                ApiKey::OffsetFetch => within::<OffsetFetchRequest>(r),
                ApiKey::OffsetDelete => within::<OffsetDeleteRequest>(r),
                ApiKey::ListGroups => within::<ListGroupsRequest>(r),
                ApiKey::DescribeGroups => within::<DescribeGroupsRequest>(r),
                ApiKey::DeleteGroups => within::<DeleteGroupsRequest>(r),
                ApiKey::InitProducerId => within::<InitProducerIdRequest>(r),
                ApiKey::SaslHandshake => within::<SaslHandshakeRequest>(r),
                ApiKey::SaslAuthenticate => within::<SaslAuthenticateRequest>(r),
                ApiKey::DescribeUserScramCredentials => {
                    within::<DescribeUserScramCredentialsRequest>(r)
                }
                ApiKey::AlterUserScramCredentials => within::<AlterUserScramCredentialsRequest>(r),
                ApiKey::DescribeClientQuotas => within::<DescribeClientQuotasRequest>(r),
                ApiKey::AlterClientQuotas => within::<AlterClientQuotasRequest>(r),
                ApiKey::AddPartitionsToTxn => within::<AddPartitionsToTxnRequest>(r),
                ApiKey::AddOffsetsToTxn => within::<AddOffsetsToTxnRequest>(r),
                ApiKey::EndTxn => within::<EndTxnRequest>(r),
                ApiKey::WriteTxnMarkers => within::<WriteTxnMarkersRequest>(r),
                ApiKey::TxnOffsetCommit => within::<TxnOffsetCommitRequest>(r),
                ApiKey::DescribeProducers => within::<DescribeProducersRequest>(r),
                ApiKey::DescribeTransactions => within::<DescribeTransactionsRequest>(r),
                ApiKey::ListTransactions => within::<ListTransactionsRequest>(r),
                other => panic!("no check for {other:?}"),
            }
        }
        assert!(is_supported(ApiKey::Fetch, 4));
        assert!(!is_supported(ApiKey::Fetch, 17));
        assert!(is_supported(ApiKey::JoinGroup, 0));
        assert!(is_supported(ApiKey::InitProducerId, 5));
        assert!(!is_supported(ApiKey::WriteTxnMarkers, 0));
        assert!(!is_supported(ApiKey::ListTransactions, 2));
    }
}
