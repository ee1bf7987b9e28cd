//! Rebuilding a shard from its `__consumer_offsets` partition at load (Kafka
//! `GroupMetadataManager.loadGroupsAndOffsets`).

use crate::group::{Group, GroupState, Member};
use crate::records::{self, RecordKey};
use crate::shard::GroupShard;
use crate::CoordinatorError;

impl<R> GroupShard<R> {
    /// Applies one record read back from the partition (start-up replay, in offset
    /// order). Records this coordinator cannot decode are returned as errors and
    /// should be logged and skipped.
    pub fn replay(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        now: i64,
    ) -> Result<(), CoordinatorError> {
        match records::decode_key(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let value = records::decode_offset_value(v)?;
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, now))
                        .offsets
                        .insert((topic, partition), value);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            RecordKey::Group { group } => match value {
                Some(v) => {
                    let value = records::decode_group_value(v)?;
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, now));
                    g.generation = value.generation;
                    g.protocol_type = Some(value.protocol_type).filter(|t: &String| !t.is_empty());
                    g.protocol = value.protocol;
                    g.leader = value.leader;
                    g.members = value
                        .members
                        .into_iter()
                        .map(|m| Member {
                            member_id: m.member_id,
                            group_instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocols: vec![(
                                g.protocol.clone().unwrap_or_default(),
                                m.subscription,
                            )],
                            assignment: m.assignment,
                            awaiting_join: None,
                            awaiting_sync: None,
                            synced: true,
                            is_new: false,
                            joined_at: now,
                            heartbeat_deadline: now + i64::from(m.session_timeout_ms),
                        })
                        .collect();
                    let state = if g.members.is_empty() {
                        GroupState::Empty
                    } else {
                        GroupState::Stable
                    };
                    // -1 (value v0/v1) stays -1: offset expiry then counts from each
                    // commit.
                    g.transition(state, value.state_timestamp);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
        Ok(())
    }

    /// Ends a replay: members of loaded groups get a fresh session from `now`, so they
    /// can heartbeat back in (Kafka does the same on coordinator load).
    pub fn finish_load(&mut self, now: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            if let Some(g) = self.groups.get_mut(&id) {
                for m in &mut g.members {
                    m.heartbeat_deadline = now + i64::from(m.session_timeout_ms);
                }
            }
            self.reschedule(&id);
        }
    }
}
