//! Read-only views of a shard's groups for ListGroups and DescribeGroups.

use crate::api::*;
use crate::group::GroupState;
use crate::shard::GroupShard;
use bytes::Bytes;

impl<R> GroupShard<R> {
    /// Groups, optionally only those in `states` and of `types` (`classic`; Moldau has
    /// no KIP-848 groups yet, so a filter without `classic` matches nothing).
    pub fn list_groups(&self, states: &[GroupState], types: &[String]) -> Vec<GroupListing> {
        if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            return Vec::new();
        }
        let mut out: Vec<GroupListing> = self
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// How many members `group_id` has (0 for an unknown group): the cheap count for
    /// metrics, without copying [`GroupShard::describe_group`]'s metadata and assignments.
    pub fn member_count(&self, group_id: &str) -> usize {
        self.groups.get(group_id).map_or(0, |g| g.members.len())
    }

    /// A group's description (DescribeGroups); an unknown group is `Dead`.
    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_owned(),
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                generation: -1,
                members: Vec::new(),
            };
        };
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        GroupDescription {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            generation: g.generation,
            members: g
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}
