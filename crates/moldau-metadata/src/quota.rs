//! Client quotas (KIP-13, KIP-55, KIP-546): byte rates per user and/or client id, kept in
//! the metadata log ([`crate::MetadataRecord::ClientQuota`]) and looked up with Kafka's
//! precedence, most specific first.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entity type `user` (the principal's name).
pub const USER: &str = "user";
/// Entity type `client-id`.
pub const CLIENT_ID: &str = "client-id";
/// `producer_byte_rate`: bytes/s a producer may send (LONG).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// `consumer_byte_rate`: bytes/s a consumer may fetch (LONG).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// `request_percentage` (KIP-124): the share of one request-handling thread a client may
/// use, in percent per quota window (200 = two threads' time). Kafka's key is a DOUBLE;
/// Moldau keeps whole percentages.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// Entity type `ip` (KIP-612): a client address, alone in its entity.
pub const IP: &str = "ip";
/// `connection_creation_rate` (KIP-612): connections/s an `ip` may open (INT).
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// A quota entity: `user` and/or `client-id`, each a name or `None` for the default
/// (`<default>`). Sorted by type, as Kafka's entity maps are compared.
pub type QuotaEntity = BTreeMap<String, Option<String>>;

/// One entity's quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaEntry {
    /// The entity.
    pub entity: QuotaEntity,
    /// Quota key → value (bytes/s for the byte rates).
    pub values: BTreeMap<String, i64>,
}

/// The image's key for an entity: `client-id=<default>,user=alice`.
pub fn entity_key(entity: &QuotaEntity) -> String {
    entity
        .iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The quota for `key` that applies to `user` with `client_id`, and the entity it comes
/// from, in Kafka's order: user+client, user+default client, user, default user+client,
/// default user+default client, default user, client, default client.
pub fn lookup<'a>(
    quotas: &'a BTreeMap<String, QuotaEntry>,
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(&'a QuotaEntry, i64)> {
    let u = Some(user.to_owned());
    let c = Some(client_id.to_owned());
    let order: [Vec<(&str, Option<String>)>; 8] = [
        vec![(USER, u.clone()), (CLIENT_ID, c.clone())],
        vec![(USER, u.clone()), (CLIENT_ID, None)],
        vec![(USER, u)],
        vec![(USER, None), (CLIENT_ID, c.clone())],
        vec![(USER, None), (CLIENT_ID, None)],
        vec![(USER, None)],
        vec![(CLIENT_ID, c)],
        vec![(CLIENT_ID, None)],
    ];
    order.into_iter().find_map(|parts| {
        let entity: QuotaEntity = parts.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
        let entry = quotas.get(&entity_key(&entity))?;
        entry.values.get(key).map(|v| (entry, *v))
    })
}

/// The `connection_creation_rate` that applies to address `ip` (canonical form, as
/// [`std::net::IpAddr`] prints it): its own entity's, else the default `ip` entity's.
pub fn lookup_ip<'a>(
    quotas: &'a BTreeMap<String, QuotaEntry>,
    ip: &str,
) -> Option<(&'a QuotaEntry, i64)> {
    [Some(ip.to_owned()), None].into_iter().find_map(|name| {
        let entity: QuotaEntity = [(IP.to_owned(), name)].into();
        let entry = quotas.get(&entity_key(&entity))?;
        entry
            .values
            .get(CONNECTION_CREATION_RATE)
            .map(|v| (entry, *v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(parts: &[(&str, Option<&str>)], rate: i64) -> (String, QuotaEntry) {
        let entity: QuotaEntity = parts
            .iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_owned)))
            .collect();
        (
            entity_key(&entity),
            QuotaEntry {
                entity,
                values: BTreeMap::from([(PRODUCER_BYTE_RATE.to_owned(), rate)]),
            },
        )
    }

    #[test]
    fn most_specific_quota_wins() {
        let quotas: BTreeMap<String, QuotaEntry> = [
            entry(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))], 1),
            entry(&[(USER, Some("alice"))], 2),
            entry(&[(USER, None)], 3),
            entry(&[(CLIENT_ID, Some("app"))], 4),
            entry(&[(CLIENT_ID, None)], 5),
        ]
        .into_iter()
        .collect();
        let rate = |u: &str, c: &str| lookup(&quotas, u, c, PRODUCER_BYTE_RATE).map(|(_, v)| v);
        assert_eq!(rate("alice", "app"), Some(1));
        assert_eq!(rate("alice", "other"), Some(2));
        assert_eq!(rate("bob", "app"), Some(3), "default user before client id");
        assert_eq!(lookup(&quotas, "bob", "app", CONSUMER_BYTE_RATE), None);
        let only_clients: BTreeMap<String, QuotaEntry> = [
            entry(&[(CLIENT_ID, Some("app"))], 4),
            entry(&[(CLIENT_ID, None)], 5),
        ]
        .into_iter()
        .collect();
        let rate =
            |u: &str, c: &str| lookup(&only_clients, u, c, PRODUCER_BYTE_RATE).map(|(_, v)| v);
        assert_eq!(rate("bob", "app"), Some(4));
        assert_eq!(rate("bob", "x"), Some(5));
    }
}
