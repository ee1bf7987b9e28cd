//! The API versions this client speaks, and the choice of one per connection.
//!
//! Each entry is the range of versions the client's code builds requests for correctly
//! (request shapes change across versions: Fetch takes topic ids from v13, DeleteTopics
//! from v6, FindCoordinator batches keys from v4, OffsetFetch batches groups from v8).
//! The version used on a connection is the highest both sides serve (protocol guide,
//! "Versioning and Compatibility").

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)` the client speaks.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 1),
    (ApiKey::FindCoordinator, 1, 3),
    (ApiKey::JoinGroup, 1, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 3, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// The range the client speaks for `api`, if any.
pub fn client_range(api: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// The highest version in both the client's range and the broker's `[min, max]`.
pub fn negotiate(api: ApiKey, broker_min: i16, broker_max: i16) -> Option<i16> {
    let (lo, hi) = client_range(api)?;
    let v = hi.min(broker_max);
    (v >= lo.max(broker_min)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(ApiKey::Fetch, 4, 16), Some(12));
        assert_eq!(negotiate(ApiKey::Fetch, 0, 7), Some(7));
        assert_eq!(negotiate(ApiKey::Fetch, 13, 17), None);
        assert_eq!(negotiate(ApiKey::AlterPartition, 0, 3), None);
    }
}
