//! Access control lists with the semantics of Kafka's `StandardAuthorizer` (KIP-801;
//! Kafka docs "Authorization and ACLs"): bindings of a resource pattern to a principal,
//! host, operation and permission, kept in the metadata log
//! ([`crate::MetadataRecord::AccessControlEntry`]), and the decision for one request.
//!
//! Numbering follows Kafka's `ResourceType`, `PatternType`, `AclOperation` and
//! `AclPermissionType`, as CreateAcls, DescribeAcls and DeleteAcls carry them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// A resource type. `Any` appears only in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    /// 1: any type (filters).
    Any,
    /// 2.
    Topic,
    /// 3: consumer group.
    Group,
    /// 4: the cluster (name `kafka-cluster`).
    Cluster,
    /// 5.
    TransactionalId,
    /// 6 (delegation tokens are not supported; kept so filters can name them).
    DelegationToken,
    /// 7.
    User,
}

impl ResourceType {
    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
        }
    }

    /// The type with Kafka code `code` (`None` for UNKNOWN and unknown codes).
    pub fn from_code(code: i8) -> Option<Self> {
        [
            Self::Any,
            Self::Topic,
            Self::Group,
            Self::Cluster,
            Self::TransactionalId,
            Self::DelegationToken,
            Self::User,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }
}

/// How a binding's resource name matches. `Any` and `Match` appear only in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    /// 1: any pattern type (filters).
    Any,
    /// 2: bindings that apply to the named resource (filters).
    Match,
    /// 3: the exact name (`*` is every resource of the type).
    Literal,
    /// 4: every name starting with it.
    Prefixed,
}

impl PatternType {
    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Match => 2,
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    /// The pattern type with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<Self> {
        [Self::Any, Self::Match, Self::Literal, Self::Prefixed]
            .into_iter()
            .find(|t| t.code() == code)
    }
}

/// An operation. `Any` appears only in filters; `All` in a binding covers every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AclOperation {
    Any,
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl AclOperation {
    const EVERY: [AclOperation; 14] = [
        Self::Any,
        Self::All,
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
        Self::ClusterAction,
        Self::DescribeConfigs,
        Self::AlterConfigs,
        Self::IdempotentWrite,
        Self::CreateTokens,
        Self::DescribeTokens,
    ];

    /// Kafka's code (ANY 1 … DESCRIBE_TOKENS 14).
    pub fn code(self) -> i8 {
        Self::EVERY
            .iter()
            .position(|o| *o == self)
            .map_or(0, |i| i as i8 + 1)
    }

    /// The operation with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<Self> {
        usize::try_from(code - 1)
            .ok()
            .and_then(|i| Self::EVERY.get(i).copied())
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`, …), for the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::All => "ALL",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::Alter => "ALTER",
            Self::Describe => "DESCRIBE",
            Self::ClusterAction => "CLUSTER_ACTION",
            Self::DescribeConfigs => "DESCRIBE_CONFIGS",
            Self::AlterConfigs => "ALTER_CONFIGS",
            Self::IdempotentWrite => "IDEMPOTENT_WRITE",
            Self::CreateTokens => "CREATE_TOKENS",
            Self::DescribeTokens => "DESCRIBE_TOKENS",
        }
    }
}

/// ALLOW or DENY. `Any` appears only in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclPermission {
    /// 1 (filters).
    Any,
    /// 2: deny wins over any allow.
    Deny,
    /// 3.
    Allow,
}

impl AclPermission {
    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    /// The permission with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<Self> {
        [Self::Any, Self::Deny, Self::Allow]
            .into_iter()
            .find(|p| p.code() == code)
    }
}

/// One ACL: `principal` from `host` may (or may not) do `operation` on the resources
/// `resource_name` names under `pattern_type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// Resource type (never `Any`).
    pub resource_type: ResourceType,
    /// Resource name or prefix (`*` with `Literal`: every resource of the type).
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// Client IP address, or `*` for any.
    pub host: String,
    /// The operation (never `Any`).
    pub operation: AclOperation,
    /// `Allow` or `Deny`.
    pub permission: AclPermission,
}

/// A DescribeAcls / DeleteAcls filter: `None` and the `Any` values match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type or `Any`.
    pub resource_type: ResourceType,
    /// Resource name, or `None` for any.
    pub resource_name: Option<String>,
    /// `Any`, `Match`, `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// Principal, or `None` for any.
    pub principal: Option<String>,
    /// Host, or `None` for any.
    pub host: Option<String>,
    /// Operation or `Any`.
    pub operation: AclOperation,
    /// Permission or `Any`.
    pub permission: AclPermission,
}

impl AclBinding {
    /// Whether this binding's pattern covers the resource `name` of `resource_type`.
    pub fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                PatternType::Any | PatternType::Match => false,
            }
    }
}

/// Every ACL of the cluster by id, indexed by resource pattern, so that one decision
/// looks only at the bindings that can cover its resource: the literal name, the literal
/// `*`, and the prefixed patterns that are prefixes of the name (one lookup per prefix
/// length), instead of scanning every binding. The same idea as Kafka's
/// `StandardAuthorizerData`, which keeps its ACLs sorted by resource.
///
/// (De)serializes as the plain map of id to binding; the index is rebuilt on load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<Uuid, AclBinding>",
    into = "BTreeMap<Uuid, AclBinding>"
)]
pub struct AclSet {
    by_id: BTreeMap<Uuid, AclBinding>,
    /// Ids by resource type and pattern type, then by resource name or prefix.
    by_pattern: HashMap<(ResourceType, PatternType), HashMap<String, BTreeSet<Uuid>>>,
    /// For each resource type, the lengths (bytes) of its distinct prefixed patterns and
    /// how many there are of each: a decision probes only these lengths of the name.
    prefix_lengths: HashMap<ResourceType, BTreeMap<usize, usize>>,
}

impl From<BTreeMap<Uuid, AclBinding>> for AclSet {
    fn from(by_id: BTreeMap<Uuid, AclBinding>) -> Self {
        let mut set = Self::default();
        for (id, binding) in by_id {
            set.insert(id, binding);
        }
        set
    }
}

impl From<AclSet> for BTreeMap<Uuid, AclBinding> {
    fn from(set: AclSet) -> Self {
        set.by_id
    }
}

impl AclSet {
    /// Adds (or replaces) the binding with id `id`.
    pub fn insert(&mut self, id: Uuid, binding: AclBinding) {
        self.remove(&id);
        let names = self
            .by_pattern
            .entry((binding.resource_type, binding.pattern_type))
            .or_default();
        if !names.contains_key(&binding.resource_name)
            && binding.pattern_type == PatternType::Prefixed
        {
            *self
                .prefix_lengths
                .entry(binding.resource_type)
                .or_default()
                .entry(binding.resource_name.len())
                .or_default() += 1;
        }
        names
            .entry(binding.resource_name.clone())
            .or_default()
            .insert(id);
        self.by_id.insert(id, binding);
    }

    /// Removes the binding with id `id`, returning it.
    pub fn remove(&mut self, id: &Uuid) -> Option<AclBinding> {
        let binding = self.by_id.remove(id)?;
        let key = (binding.resource_type, binding.pattern_type);
        let mut name_gone = false;
        if let Some(names) = self.by_pattern.get_mut(&key) {
            if let Some(ids) = names.get_mut(&binding.resource_name) {
                ids.remove(id);
                if ids.is_empty() {
                    names.remove(&binding.resource_name);
                    name_gone = true;
                }
            }
            if names.is_empty() {
                self.by_pattern.remove(&key);
            }
        }
        if name_gone && binding.pattern_type == PatternType::Prefixed {
            self.forget_prefix_length(binding.resource_type, binding.resource_name.len());
        }
        Some(binding)
    }

    fn forget_prefix_length(&mut self, resource_type: ResourceType, len: usize) {
        if let Some(lengths) = self.prefix_lengths.get_mut(&resource_type) {
            if let Some(n) = lengths.get_mut(&len) {
                *n -= 1;
                if *n == 0 {
                    lengths.remove(&len);
                }
            }
            if lengths.is_empty() {
                self.prefix_lengths.remove(&resource_type);
            }
        }
    }

    /// The binding with id `id`.
    pub fn get(&self, id: &Uuid) -> Option<&AclBinding> {
        self.by_id.get(id)
    }

    /// Whether a binding has id `id`.
    pub fn contains_key(&self, id: &Uuid) -> bool {
        self.by_id.contains_key(id)
    }

    /// The number of bindings.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every binding, in id order.
    pub fn values(&self) -> impl Iterator<Item = &AclBinding> + Clone {
        self.by_id.values()
    }

    /// Every (id, binding), in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &AclBinding)> {
        self.by_id.iter()
    }

    /// The bindings that cover resource `name` of `resource_type` (exactly those for
    /// which [`AclBinding::covers`] holds), for [`authorize`]. Costs two hash lookups
    /// for the literal patterns and one per distinct prefixed-pattern length up to the
    /// name's length (each hashing that many bytes), plus the bindings returned.
    pub fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self
            .by_pattern
            .get(&(resource_type, PatternType::Literal))
            .into_iter()
            .flat_map(move |names| {
                let wildcard = (name != "*").then(|| names.get("*")).flatten();
                names.get(name).into_iter().chain(wildcard)
            });
        let prefixed = self
            .by_pattern
            .get(&(resource_type, PatternType::Prefixed))
            .into_iter()
            .zip(self.prefix_lengths.get(&resource_type))
            .flat_map(move |(names, lengths)| {
                lengths
                    .range(..=name.len())
                    .map(|(len, _)| *len)
                    .filter(move |&i| name.is_char_boundary(i))
                    .filter_map(move |i| names.get(&name[..i]))
            });
        literal
            .chain(prefixed)
            .flatten()
            .filter_map(move |id| self.by_id.get(id))
    }
}

impl AclFilter {
    /// Whether `b` matches (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource_ok = (self.resource_type == ResourceType::Any
            || self.resource_type == b.resource_type)
            && match (self.pattern_type, &self.resource_name) {
                (PatternType::Any, None) => true,
                (PatternType::Any, Some(n)) => *n == b.resource_name,
                (PatternType::Match, None) => true,
                (PatternType::Match, Some(n)) => b.covers(b.resource_type, n),
                (p, n) => p == b.pattern_type && n.as_ref().is_none_or(|n| *n == b.resource_name),
            };
        resource_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == AclOperation::Any || self.operation == b.operation)
            && (self.permission == AclPermission::Any || self.permission == b.permission)
    }
}

/// Whether the binding's operation grants `op` (with Kafka's implied operations:
/// DESCRIBE from READ, WRITE, DELETE or ALTER; DESCRIBE_CONFIGS from ALTER_CONFIGS).
fn grants(binding_op: AclOperation, op: AclOperation) -> bool {
    binding_op == op
        || binding_op == AclOperation::All
        || (op == AclOperation::Describe
            && matches!(
                binding_op,
                AclOperation::Read
                    | AclOperation::Write
                    | AclOperation::Delete
                    | AclOperation::Alter
            ))
        || (op == AclOperation::DescribeConfigs && binding_op == AclOperation::AlterConfigs)
}

/// The decision for `principal` at `host` doing `op` on `resource_type` `name`, given
/// every binding (StandardAuthorizer's rules): a matching DENY wins; else a matching
/// ALLOW (implied operations included) allows; else, if no binding at all covers the
/// resource, `allow_if_no_acl` (`allow.everyone.if.no.acl.found`) decides; else denied.
/// Super users are the caller's business.
pub fn authorize<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    host: &str,
    op: AclOperation,
    resource_type: ResourceType,
    name: &str,
    allow_if_no_acl: bool,
) -> bool {
    let mut any_for_resource = false;
    let mut allowed = false;
    for b in bindings {
        if !b.covers(resource_type, name) {
            continue;
        }
        any_for_resource = true;
        let applies = (b.principal == principal || b.principal == "User:*")
            && (b.host == "*" || b.host == host);
        if !applies {
            continue;
        }
        match b.permission {
            AclPermission::Deny if b.operation == op || b.operation == AclOperation::All => {
                return false
            }
            AclPermission::Allow if grants(b.operation, op) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_for_resource && allow_if_no_acl)
}

/// Whether `principal` at `host` holds an ALLOW for `op` on some resource of
/// `resource_type` that no DENY of the same pattern takes back (Kafka's
/// `authorizeByResourceType`, used for idempotent producers under KIP-679).
pub fn authorize_any<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding> + Clone,
    principal: &str,
    host: &str,
    op: AclOperation,
    resource_type: ResourceType,
) -> bool {
    let applies = |b: &AclBinding| {
        b.resource_type == resource_type
            && (b.principal == principal || b.principal == "User:*")
            && (b.host == "*" || b.host == host)
    };
    bindings.clone().into_iter().any(|allow| {
        applies(allow)
            && allow.permission == AclPermission::Allow
            && grants(allow.operation, op)
            && !bindings.clone().into_iter().any(|deny| {
                applies(deny)
                    && deny.permission == AclPermission::Deny
                    && (deny.operation == op || deny.operation == AclOperation::All)
                    && match deny.pattern_type {
                        PatternType::Literal => {
                            deny.resource_name == "*"
                                || (allow.pattern_type == PatternType::Literal
                                    && deny.resource_name == allow.resource_name)
                        }
                        PatternType::Prefixed => {
                            allow.resource_name.starts_with(&deny.resource_name)
                        }
                        _ => false,
                    }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: AclOperation,
        permission: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    #[test]
    fn standard_authorizer_rules() {
        use AclOperation::*;
        use PatternType::*;
        use ResourceType::*;
        let acls = [
            acl(
                Topic,
                "orders",
                Literal,
                "User:alice",
                Read,
                AclPermission::Allow,
            ),
            acl(
                Topic,
                "pay-",
                Prefixed,
                "User:bob",
                Write,
                AclPermission::Allow,
            ),
            acl(
                Topic,
                "pay-secret",
                Literal,
                "User:bob",
                All,
                AclPermission::Deny,
            ),
            acl(
                Topic,
                "*",
                Literal,
                "User:*",
                AlterConfigs,
                AclPermission::Allow,
            ),
            acl(
                Group,
                "g",
                Literal,
                "User:alice",
                Read,
                AclPermission::Allow,
            ),
        ];
        let ok = |p: &str, op, t, n: &str| authorize(&acls, p, "10.0.0.1", op, t, n, false);
        assert!(ok("User:alice", Read, Topic, "orders"));
        assert!(
            ok("User:alice", Describe, Topic, "orders"),
            "implied by READ"
        );
        assert!(!ok("User:alice", Write, Topic, "orders"));
        assert!(!ok("User:carol", Read, Topic, "orders"), "other principal");
        assert!(ok("User:bob", Write, Topic, "pay-in"), "prefixed");
        assert!(!ok("User:bob", Write, Topic, "pay-secret"), "deny wins");
        assert!(!ok("User:bob", Write, Topic, "payroll"), "prefix is 'pay-'");
        assert!(
            ok("User:carol", DescribeConfigs, Topic, "x"),
            "wildcard + implied"
        );
        assert!(ok("User:alice", Read, Group, "g"));
        assert!(
            !ok("User:alice", Read, Group, "h"),
            "no ACL, no allow-everyone"
        );
        // No ACL at all covers cluster: allow.everyone.if.no.acl.found decides.
        assert!(authorize(
            &acls,
            "User:x",
            "h",
            Describe,
            Cluster,
            "kafka-cluster",
            true
        ));
        assert!(!authorize(
            &acls,
            "User:x",
            "h",
            Describe,
            Cluster,
            "kafka-cluster",
            false
        ));
        // An ACL on the resource for someone else: allow-everyone no longer applies.
        assert!(!authorize(
            &acls, "User:x", "h", Read, Topic, "orders", true
        ));
        // Hosts.
        let mut by_host = acls[0].clone();
        by_host.host = "10.0.0.2".into();
        assert!(!authorize(
            [&by_host],
            "User:alice",
            "10.0.0.1",
            Read,
            Topic,
            "orders",
            false
        ));
        assert!(authorize(
            [&by_host],
            "User:alice",
            "10.0.0.2",
            Read,
            Topic,
            "orders",
            false
        ));
        // KIP-679: WRITE on some topic.
        assert!(authorize_any(&acls, "User:bob", "h", Write, Topic));
        assert!(!authorize_any(&acls, "User:alice", "h", Write, Topic));
        for op in AclOperation::EVERY {
            assert_eq!(AclOperation::from_code(op.code()), Some(op));
        }
        assert_eq!(Read.code(), 3);
        assert_eq!(DescribeTokens.code(), 14);
    }

    #[test]
    fn filters_as_kafka() {
        use PatternType::*;
        let b = acl(
            ResourceType::Topic,
            "pay-",
            Prefixed,
            "User:bob",
            AclOperation::Write,
            AclPermission::Allow,
        );
        let any = AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermission::Any,
        };
        assert!(any.matches(&b));
        let named = |name: &str, pattern_type| AclFilter {
            resource_name: Some(name.into()),
            pattern_type,
            ..any.clone()
        };
        assert!(named("pay-", Any).matches(&b));
        assert!(!named("pay-in", Any).matches(&b));
        assert!(
            named("pay-in", Match).matches(&b),
            "MATCH: applies to pay-in"
        );
        assert!(named("pay-", Prefixed).matches(&b));
        assert!(!named("pay-", Literal).matches(&b));
        let other = AclFilter {
            principal: Some("User:alice".into()),
            ..any
        };
        assert!(!other.matches(&b));
    }

    /// The index returns exactly the bindings that cover a resource, so a decision
    /// through it equals the decision over every binding, for any set of bindings
    /// (names drawn from a small alphabet so that literals, prefixes and `*` collide),
    /// also after removals.
    mod index {
        use super::*;
        use proptest::prelude::*;

        fn binding() -> impl Strategy<Value = AclBinding> {
            let name = prop_oneof![Just("*".to_owned()), "[abé]{0,3}"];
            (
                prop_oneof![Just(ResourceType::Topic), Just(ResourceType::Group)],
                name,
                prop_oneof![Just(PatternType::Literal), Just(PatternType::Prefixed)],
                prop_oneof![Just("User:a"), Just("User:*")],
                prop_oneof![Just(AclOperation::Read), Just(AclOperation::All)],
                prop_oneof![Just(AclPermission::Allow), Just(AclPermission::Deny)],
            )
                .prop_map(
                    |(
                        resource_type,
                        resource_name,
                        pattern_type,
                        principal,
                        operation,
                        permission,
                    )| {
                        AclBinding {
                            resource_type,
                            resource_name,
                            pattern_type,
                            principal: principal.into(),
                            host: "*".into(),
                            operation,
                            permission,
                        }
                    },
                )
        }

        proptest! {
            #[test]
            fn covering_is_exactly_what_covers(
                bindings in proptest::collection::vec(binding(), 0..40),
                removed in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
                name in prop_oneof![Just("*".to_owned()), "[abé]{0,4}"],
                allow_if_no_acl: bool,
            ) {
                let mut set = AclSet::default();
                let ids: Vec<Uuid> = bindings
                    .iter()
                    .map(|b| {
                        let id = Uuid::new_v4();
                        set.insert(id, b.clone());
                        id
                    })
                    .collect();
                if !ids.is_empty() {
                    for r in &removed {
                        set.remove(&ids[r.index(ids.len())]);
                    }
                }
                let reloaded: AclSet = BTreeMap::from(set.clone()).into();
                prop_assert_eq!(&reloaded, &set);
                for resource_type in [ResourceType::Topic, ResourceType::Group] {
                    let mut want: Vec<&AclBinding> =
                        set.values().filter(|b| b.covers(resource_type, &name)).collect();
                    let mut got: Vec<&AclBinding> = set.covering(resource_type, &name).collect();
                    want.sort_by_key(|b| format!("{b:?}"));
                    got.sort_by_key(|b| format!("{b:?}"));
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(
                        authorize(set.covering(resource_type, &name), "User:a", "h",
                            AclOperation::Read, resource_type, &name, allow_if_no_acl),
                        authorize(set.values(), "User:a", "h",
                            AclOperation::Read, resource_type, &name, allow_if_no_acl)
                    );
                }
            }
        }
    }
}
