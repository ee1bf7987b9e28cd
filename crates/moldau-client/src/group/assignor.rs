//! Kafka's `range` assignor.

use super::protocol::TopicPartitions;
use std::collections::{BTreeMap, BTreeSet};

/// One group member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Member id given by the coordinator.
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
}

/// Kafka's `RangeAssignor`: for each topic, the members subscribed to it in order (static
/// members by `group.instance.id` first, then the rest by member id) each take a
/// contiguous range of the topic's partitions; with `n` partitions and `m` members the
/// first `n % m` members take `n / m + 1`, the others `n / m`.
///
/// `partitions` holds the partition count of each topic; topics not in it (unknown to
/// the cluster) are not assigned. Returns every member's assignment, keyed by member id,
/// topics in name order (a member may get nothing).
pub fn range_assign(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    let mut by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &sorted {
        let topics: BTreeSet<&str> = m.topics.iter().map(String::as_str).collect();
        for t in topics {
            by_topic.entry(t).or_default().push(&m.member_id);
        }
    }
    let mut out: BTreeMap<String, TopicPartitions> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    for (topic, subscribers) in by_topic {
        let Some(&n) = partitions.get(topic) else {
            continue;
        };
        let m = i32::try_from(subscribers.len()).unwrap_or(i32::MAX);
        let (per_member, extra) = (n / m, n % m);
        for (i, member) in subscribers.into_iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let start = per_member * i + i.min(extra);
            let len = per_member + i32::from(i < extra);
            if len > 0 {
                if let Some(a) = out.get_mut(member) {
                    a.push((topic.to_owned(), (start..start + len).collect()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_splits_contiguously_with_extras_first() {
        // Kafka RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions-style layout:
        // 7 partitions over 3 members → 3, 2, 2.
        let members = [
            member("c", &["t"]),
            member("a", &["t"]),
            member("b", &["t"]),
        ];
        let plan = range_assign(&members, &counts(&[("t", 7)]));
        assert_eq!(plan["a"], vec![("t".to_string(), vec![0, 1, 2])]);
        assert_eq!(plan["b"], vec![("t".to_string(), vec![3, 4])]);
        assert_eq!(plan["c"], vec![("t".to_string(), vec![5, 6])]);
    }

    #[test]
    fn range_is_per_topic_and_skips_unknown_topics() {
        let members = [
            member("m1", &["t1", "t2", "gone"]),
            member("m2", &["t1"]),
            member("m3", &["t2"]),
        ];
        let plan = range_assign(&members, &counts(&[("t1", 3), ("t2", 1)]));
        assert_eq!(
            plan["m1"],
            vec![("t1".to_string(), vec![0, 1]), ("t2".to_string(), vec![0])]
        );
        assert_eq!(plan["m2"], vec![("t1".to_string(), vec![2])]);
        // More members than partitions: the last ones get nothing, but an entry.
        assert_eq!(plan["m3"], Vec::<(String, Vec<i32>)>::new());
    }

    #[test]
    fn static_members_sort_first() {
        let mut s = member("z-member", &["t"]);
        s.group_instance_id = Some("instance".into());
        let members = [member("a-member", &["t"]), s];
        let plan = range_assign(&members, &counts(&[("t", 2)]));
        assert_eq!(plan["z-member"], vec![("t".to_string(), vec![0])]);
        assert_eq!(plan["a-member"], vec![("t".to_string(), vec![1])]);
    }
}
