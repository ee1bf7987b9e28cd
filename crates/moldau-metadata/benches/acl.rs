//! One ACL decision among many bindings: through the index ([`AclSet::covering`]) and,
//! for comparison, over every binding (what Moldau did before the index). 10,000 users
//! each hold a literal Read on their own topic and a prefixed Write on their own
//! namespace; the decision asks whether one of them may read a topic in its namespace.
//!
//! `cargo bench -p moldau-metadata --bench acl` prints the time of one decision.

use criterion::{criterion_group, criterion_main, Criterion};
use moldau_metadata::acl::{
    authorize, AclBinding, AclOperation, AclPermission, AclSet, PatternType, ResourceType,
};
use std::hint::black_box;

const USERS: usize = 10_000;

fn bindings() -> AclSet {
    let mut set = AclSet::default();
    for u in 0..USERS {
        for (name, pattern_type, operation) in [
            (
                format!("topic-{u}"),
                PatternType::Literal,
                AclOperation::Read,
            ),
            (
                format!("team-{u}."),
                PatternType::Prefixed,
                AclOperation::Write,
            ),
        ] {
            set.insert(
                uuid::Uuid::new_v4(),
                AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: name,
                    pattern_type,
                    principal: format!("User:user-{u}"),
                    host: "*".into(),
                    operation,
                    permission: AclPermission::Allow,
                },
            );
        }
    }
    set
}

fn decision(c: &mut Criterion) {
    let set = bindings();
    let (principal, topic) = ("User:user-4711", "team-4711.orders");
    let mut group = c.benchmark_group(format!("authorize among {} ACLs", set.len()));
    group.bench_function("indexed", |b| {
        b.iter(|| {
            assert!(authorize(
                set.covering(ResourceType::Topic, black_box(topic)),
                principal,
                "10.0.0.1",
                AclOperation::Describe,
                ResourceType::Topic,
                topic,
                false,
            ))
        })
    });
    group.bench_function("every binding", |b| {
        b.iter(|| {
            assert!(authorize(
                set.values(),
                principal,
                "10.0.0.1",
                AclOperation::Describe,
                ResourceType::Topic,
                black_box(topic),
                false,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
