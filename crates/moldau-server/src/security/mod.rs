//! Authentication on the broker's listeners: TLS ([`tls`]), SASL ([`sasl`], with
//! [`scram`] and [`oauth`]) and the principal a connection acts as.
//!
//! A principal is Kafka's `User:<name>`: the SASL user, the mapped subject of a TLS
//! client certificate, or `User:ANONYMOUS` on PLAINTEXT listeners and for TLS clients
//! without a certificate (Kafka's `DefaultKafkaPrincipalBuilder`).

pub mod oauth;
pub mod sasl;
pub mod scram;
pub mod tls;

use crate::config::security::SaslSettings;
use std::sync::Arc;

/// The principal name of an unauthenticated connection.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The principal of connections on a dedicated inter-broker listener in a cluster with
/// an authorizer: brokers reach each other there without TLS or SASL (not implemented
/// between brokers yet), so the listener itself is what is trusted, and it must be kept
/// on a private network. Allowed everything, like a super user.
pub const INTER_BROKER: &str = "User:moldau-inter-broker";

/// How a bound listener authenticates its connections.
pub struct ListenerAuth {
    /// TLS handshake first (SSL, SASL_SSL).
    pub tls: Option<tls::TlsAcceptor>,
    /// SASL exchange before requests (SASL_PLAINTEXT, SASL_SSL).
    pub sasl: Option<Arc<SaslSettings>>,
    /// Connections act as [`INTER_BROKER`] (the dedicated inter-broker listener of a
    /// cluster with an authorizer).
    pub inter_broker: bool,
}
