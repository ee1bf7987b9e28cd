//! TLS and SASL settings of each listener, under Kafka's names (Kafka docs "Broker
//! Configs", "Encryption and Authentication using SSL", "Authentication using SASL").
//!
//! A setting is read from `listener.name.<listener>.<name>` first (listener name in
//! lower case, as Kafka writes it) and then from the bare `<name>`. SASL JAAS configs
//! exist only per listener and mechanism
//! (`listener.name.<listener>.<mechanism>.sasl.jaas.config`), as on a Kafka broker.
//!
//! Moldau differs from Kafka in two defaults, and says so at start rather than fail
//! obscurely: `ssl.keystore.type` and `ssl.truststore.type` default to `PEM` (Kafka's
//! default JKS is a Java format Moldau does not read), and `sasl.enabled.mechanisms` has
//! no default (Kafka's GSSAPI is not implemented), so a SASL listener must name its
//! mechanisms.

use super::listeners::{Endpoint, SecurityProtocol};
use super::ConfigError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a listener's certificate chain and private key come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// `ssl.keystore.location`: one PEM file holding the private key and the chain.
    File(PathBuf),
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`: PEM text in the config.
    Inline {
        /// Certificate chain, leaf first.
        chain: String,
        /// Unencrypted private key (PKCS#8, PKCS#1 or SEC1).
        key: String,
    },
}

impl std::fmt::Debug for KeyStore {
    /// Names the file, or the size of an inline chain; never shows an inline key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyStore::File(path) => f.debug_tuple("File").field(path).finish(),
            KeyStore::Inline { chain, .. } => f
                .debug_struct("Inline")
                .field("chain_bytes", &chain.len())
                .field("key", &"(hidden)")
                .finish(),
        }
    }
}

/// Where the CA certificates that client certificates are checked against come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustStore {
    /// `ssl.truststore.location`: a PEM file of CA certificates.
    File(PathBuf),
    /// `ssl.truststore.certificates`: PEM text in the config.
    Inline(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for (default).
    None,
    /// Asked for; a client without one connects as `ANONYMOUS`.
    Requested,
    /// Required; a client without a trusted one is refused in the handshake.
    Required,
}

/// A TLS protocol version of `ssl.enabled.protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `TLSv1.2`.
    Tls12,
    /// `TLSv1.3`.
    Tls13,
}

/// One rule of `ssl.principal.mapping.rules` (KIP-371).
#[derive(Debug, Clone)]
pub enum PrincipalRule {
    /// `DEFAULT`: the whole distinguished name (RFC 2253) is the principal name.
    Default,
    /// `RULE:pattern/replacement/[LU]`: the first rule whose pattern matches the whole
    /// DN gives the name, `$n` replaced by groups, then lower- or upper-cased.
    Rule {
        /// Pattern, anchored at both ends.
        pattern: regex::Regex,
        /// Replacement with `$1`-style group references.
        replacement: String,
        /// `/L` or `/U`.
        case: Option<char>,
    },
}

/// TLS settings of one SSL or SASL_SSL listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The listener's certificate and key.
    pub keystore: KeyStore,
    /// CA certificates for client certificates (required unless `client_auth` is none).
    pub truststore: Option<TrustStore>,
    /// `ssl.client.auth` (default none).
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols` (default `TLSv1.2,TLSv1.3`).
    pub protocols: Vec<TlsVersion>,
    /// `ssl.cipher.suites` (IANA names; empty = the TLS library's defaults).
    pub cipher_suites: Vec<String>,
    /// `ssl.principal.mapping.rules` (default `DEFAULT`).
    pub principal_rules: Vec<PrincipalRule>,
}

/// A SASL mechanism Moldau serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616), users from the listener's JAAS config.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677), credentials from the metadata log.
    ScramSha256,
    /// `SCRAM-SHA-512`, credentials from the metadata log.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628), signed JWTs checked against a key set
    /// ([`crate::security::oauth`]).
    OAuthBearer,
}

impl SaslMechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (SASL names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Plain,
            Self::ScramSha256,
            Self::ScramSha512,
            Self::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    /// The mechanism named `name` if a node can log in to another with it (`NAME` is
    /// the property naming it, for the error): OAUTHBEARER cannot, since brokers and
    /// controllers have no token source.
    fn for_nodes(name: &str, property: &str) -> Result<Self, ConfigError> {
        match Self::from_name(name) {
            Some(Self::OAuthBearer) => Err(ConfigError::new(
                property,
                name,
                "brokers and controllers cannot log in with OAUTHBEARER (they have no token \
                 source); use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 between nodes",
            )),
            Some(m) => Ok(m),
            None => Err(ConfigError::new(
                property,
                name,
                "not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            )),
        }
    }
}

/// SASL settings of one SASL_PLAINTEXT or SASL_SSL listener.
#[derive(Clone)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the order given.
    pub mechanisms: Vec<SaslMechanism>,
    /// PLAIN users (`user_<name>="<password>"` entries of the PLAIN JAAS config).
    pub plain_users: BTreeMap<String, String>,
    /// The OAUTHBEARER token validator, when the listener enables it.
    pub oauthbearer: Option<Arc<crate::security::oauth::Validator>>,
}

impl std::fmt::Debug for SaslSettings {
    /// Names the PLAIN users, never their passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Security of one listener.
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    /// The listener's protocol.
    pub protocol: SecurityProtocol,
    /// TLS, for SSL and SASL_SSL.
    pub tls: Option<TlsSettings>,
    /// SASL, for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslSettings>,
}

/// The ACL authorizer's settings (`authorizer.class.name` set).
#[derive(Debug, Clone)]
pub struct AuthorizerSettings {
    /// `super.users` (`User:admin;User:ops`): principals allowed everything.
    pub super_users: std::collections::BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found` (default false): a resource no ACL covers is
    /// open to everyone instead of to super users only.
    pub allow_if_no_acl: bool,
}

/// Kafka's authorizer classes Moldau's authorizer stands in for (same semantics).
pub const AUTHORIZER_CLASSES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// Resolves `authorizer.class.name`, `super.users` and `allow.everyone.if.no.acl.found`.
/// `None` when no authorizer is configured (every request is allowed, as in Kafka).
pub(super) fn authorizer(
    p: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Option<AuthorizerSettings>, ConfigError> {
    let class = p
        .get("authorizer.class.name")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty());
    let Some(class) = class else {
        for name in ["super.users", "allow.everyone.if.no.acl.found"] {
            if p.contains_key(name) {
                warnings.push(format!(
                    "{name}: no authorizer.class.name is set, so nothing is authorized"
                ));
            }
        }
        return Ok(None);
    };
    if !AUTHORIZER_CLASSES.contains(&class) {
        return Err(ConfigError::new(
            "authorizer.class.name",
            class,
            format!(
                "Moldau's ACL authorizer stands in for {} (custom authorizers are Java classes)",
                AUTHORIZER_CLASSES.join(" or ")
            ),
        ));
    }
    let mut super_users = std::collections::BTreeSet::new();
    for u in p
        .get("super.users")
        .map(String::as_str)
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        if !u.contains(':') {
            return Err(ConfigError::new(
                "super.users",
                &p["super.users"],
                format!("{u} is not a principal (write User:{u})"),
            ));
        }
        super_users.insert(u.to_owned());
    }
    Ok(Some(AuthorizerSettings {
        super_users,
        allow_if_no_acl: super::parse(p, "allow.everyone.if.no.acl.found", false)?,
    }))
}

/// How this broker connects, as a client, to the other brokers' inter-broker listener:
/// the same protocol, TLS trusting the listener's truststore (and presenting its keystore
/// when the listener asks for client certificates), SASL with
/// `sasl.mechanism.inter.broker.protocol` and the `username`/`password` options of the
/// listener's JAAS config for that mechanism (Kafka's convention). Errors name the
/// missing or unusable setting.
pub(super) fn inter_broker_client(
    p: &BTreeMap<String, String>,
    listener: &str,
    security: &BTreeMap<String, ListenerSecurity>,
) -> Result<moldau_client::security::Security, ConfigError> {
    let Some(sec) = security.get(listener) else {
        return Ok(Default::default());
    };
    let lower = listener.to_ascii_lowercase();
    let mut props = client_tls_properties(p, listener, sec)?;
    if let Some(sasl) = &sec.sasl {
        const NAME: &str = "sasl.mechanism.inter.broker.protocol";
        let Some(m) = p.get(NAME) else {
            return Err(ConfigError::new(
                NAME,
                "",
                format!(
                    "the inter-broker listener {listener} uses SASL: name the mechanism brokers \
                     log in with (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); Kafka's default \
                     GSSAPI is not implemented"
                ),
            ));
        };
        let mechanism = SaslMechanism::for_nodes(m.trim(), NAME)?;
        if !sasl.mechanisms.contains(&mechanism) {
            return Err(ConfigError::new(
                NAME,
                m,
                format!("not one of the mechanisms listener {listener} enables"),
            ));
        }
        login_properties(
            p,
            &lower,
            mechanism,
            "brokers log in to each other",
            &mut props,
        )?;
    }
    moldau_client::security::Security::from_properties(&props)
        .map_err(|e| ConfigError::new("inter.broker.listener.name", listener, e.to_string()))
}

/// Adds `sasl.mechanism`, `sasl.username` and `sasl.password` to `props`: the
/// `username`/`password` options of `listener.name.<lower>.<mechanism>.sasl.jaas.config`,
/// Kafka's convention for how a node logs in to a listener. `who` says who logs in, for
/// the error naming that property when the options are missing.
fn login_properties(
    p: &BTreeMap<String, String>,
    lower: &str,
    mechanism: SaslMechanism,
    who: &str,
    props: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let key = format!(
        "listener.name.{lower}.{}.sasl.jaas.config",
        mechanism.name().to_ascii_lowercase()
    );
    let options = p
        .get(&key)
        .map(|j| parse_jaas(j))
        .transpose()
        .map_err(|e| ConfigError::new(&key, "", e))?
        .unwrap_or_default();
    let (Some(user), Some(password)) = (options.get("username"), options.get("password")) else {
        return Err(ConfigError::new(
            &key,
            "",
            format!(
                "{who} with this JAAS config's username=\"…\" and password=\"…\" options: \
                 give them"
            ),
        ));
    };
    props.insert("sasl.mechanism".to_owned(), mechanism.name().to_owned());
    props.insert("sasl.username".to_owned(), user.clone());
    props.insert("sasl.password".to_owned(), password.clone());
    Ok(())
}

/// How this node connects to the controllers' listener `listener` (its protocol
/// `protocol`, from `listener.security.protocol.map`): TLS trusting
/// `ssl.truststore.location` (prefixed by `listener.name.<listener>.` or not), presenting
/// `ssl.keystore.location` when one is set; SASL with `sasl.mechanism.controller.protocol`
/// and the `username`/`password` options of the listener's JAAS config for it, as Kafka's
/// nodes log in to the controllers. Read from the properties, as a broker-only node has
/// no such listener of its own. Errors name the missing or unusable setting.
pub(super) fn controller_client(
    p: &BTreeMap<String, String>,
    listener: &str,
    protocol: SecurityProtocol,
) -> Result<moldau_client::security::Security, ConfigError> {
    let lower = listener.to_ascii_lowercase();
    let mut props = BTreeMap::new();
    props.insert("security.protocol".to_owned(), protocol.name().to_owned());
    if matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl) {
        let Some((_, truststore)) = listener_value(p, listener, "ssl.truststore.location") else {
            return Err(ConfigError::new(
                "ssl.truststore.location",
                "",
                format!(
                    "the controller listener {listener} uses TLS: nodes check the controllers' \
                     certificates against a truststore file, so set \
                     listener.name.{lower}.ssl.truststore.location (or ssl.truststore.location)"
                ),
            ));
        };
        props.insert(
            "ssl.truststore.location".to_owned(),
            truststore.trim().to_owned(),
        );
        for key in [
            "ssl.keystore.location",
            "ssl.endpoint.identification.algorithm",
        ] {
            if let Some((_, v)) = listener_value(p, listener, key) {
                props.insert(key.to_owned(), v.trim().to_owned());
            }
        }
    }
    if matches!(
        protocol,
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
    ) {
        const NAME: &str = "sasl.mechanism.controller.protocol";
        let Some(m) = p.get(NAME) else {
            return Err(ConfigError::new(
                NAME,
                "",
                format!(
                    "the controller listener {listener} uses SASL: name the mechanism nodes log \
                     in with (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); Kafka's default GSSAPI is \
                     not implemented"
                ),
            ));
        };
        let mechanism = SaslMechanism::for_nodes(m.trim(), NAME)?;
        login_properties(
            p,
            &lower,
            mechanism,
            "nodes log in to the controllers",
            &mut props,
        )?;
    }
    moldau_client::security::Security::from_properties(&props)
        .map_err(|e| ConfigError::new("controller.listener.names", listener, e.to_string()))
}

/// How a client in this process (the HTTP API) reaches the broker through one of its
/// listeners: [`LocalAccess::security`] holds the TLS half (trusting the listener's
/// truststore); its users log in with one of [`LocalAccess::sasl_mechanisms`] (none: the
/// listener authenticates no one).
#[derive(Debug, Clone)]
pub struct LocalAccess {
    /// The listener's name.
    pub listener: String,
    /// Protocol and TLS settings, without SASL credentials.
    pub security: moldau_client::security::Security,
    /// The listener's SASL mechanisms in `sasl.enabled.mechanisms` order.
    pub sasl_mechanisms: Vec<moldau_client::security::SaslMechanism>,
}

/// The listener the HTTP API goes through: `http.kafka.listener.name` when given (errors
/// name it when the API cannot use that listener), else the first SASL listener that it
/// can reach (its users then log in with HTTP Basic), else the first PLAINTEXT listener,
/// else the first SSL listener that does not require client certificates. A PLAINTEXT
/// inter-broker listener trusted as brokers' own is never chosen. `None`: no listener
/// fits.
pub(super) fn local_access(
    p: &BTreeMap<String, String>,
    listeners: &[Endpoint],
    security: &BTreeMap<String, ListenerSecurity>,
    excluded: impl Fn(&str) -> bool,
) -> Result<Option<LocalAccess>, ConfigError> {
    const NAME: &str = "http.kafka.listener.name";
    let usable = |l: &Endpoint| -> Result<LocalAccess, String> {
        if excluded(&l.name) {
            return Err(
                "it is a controller listener or the inter-broker listener trusted as \
                        brokers' own"
                    .into(),
            );
        }
        let sec = security.get(&l.name);
        if let Some(tls) = sec.and_then(|s| s.tls.as_ref()) {
            if tls.client_auth == ClientAuth::Required
                && sec.and_then(|s| s.sasl.as_ref()).is_none()
            {
                return Err(
                    "it requires client certificates, which the HTTP API cannot \
                            present for its users"
                        .into(),
                );
            }
        }
        let mut props = match sec {
            Some(sec) => client_tls_properties(p, &l.name, sec).map_err(|e| e.to_string())?,
            None => BTreeMap::new(),
        };
        // The TLS half only: each user's SASL credentials are added per login.
        let protocol = match l.protocol {
            SecurityProtocol::SaslSsl => "SSL",
            SecurityProtocol::SaslPlaintext => "PLAINTEXT",
            other => other.name(),
        };
        props.insert("security.protocol".to_owned(), protocol.to_owned());
        let mut security = moldau_client::security::Security::from_properties(&props)
            .map_err(|e| e.to_string())?;
        security.protocol = match l.protocol {
            SecurityProtocol::Plaintext => moldau_client::security::SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl => moldau_client::security::SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext => {
                moldau_client::security::SecurityProtocol::SaslPlaintext
            }
            SecurityProtocol::SaslSsl => moldau_client::security::SecurityProtocol::SaslSsl,
        };
        let sasl_mechanisms: Vec<moldau_client::security::SaslMechanism> = sec
            .and_then(|s| s.sasl.as_ref())
            .map(|s| {
                s.mechanisms
                    .iter()
                    .filter_map(|m| moldau_client::security::SaslMechanism::from_name(m.name()))
                    .collect()
            })
            .unwrap_or_default();
        let sasl_listener = matches!(
            l.protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        if sasl_listener && sasl_mechanisms.is_empty() {
            return Err("its SASL mechanisms (OAUTHBEARER) cannot log in HTTP Basic users".into());
        }
        Ok(LocalAccess {
            listener: l.name.clone(),
            security,
            sasl_mechanisms,
        })
    };
    if let Some(name) = p.get(NAME) {
        let Some(l) = listeners.iter().find(|l| l.name == name.trim()) else {
            return Err(ConfigError::new(
                NAME,
                name,
                "there is no such listener in listeners",
            ));
        };
        return usable(l).map(Some).map_err(|why| {
            ConfigError::new(NAME, name, format!("the HTTP API cannot use it: {why}"))
        });
    }
    let rank = |l: &Endpoint| match l.protocol {
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => 0,
        SecurityProtocol::Plaintext => 1,
        SecurityProtocol::Ssl => 2,
    };
    let mut candidates: Vec<&Endpoint> = listeners.iter().collect();
    candidates.sort_by_key(|l| rank(l));
    Ok(candidates.into_iter().find_map(|l| usable(l).ok()))
}

/// The HTTP API's TLS settings, for `http.listener=https://…`: Kafka's `ssl.*` names
/// under `http.` (`http.ssl.keystore.location`, `http.ssl.client.auth`, …), each falling
/// back to the broker-wide `ssl.*` value. The key material is loaded once here so that a
/// file that does not load stops start-up. Errors name the property.
pub fn http_tls_settings(p: &BTreeMap<String, String>) -> Result<TlsSettings, ConfigError> {
    const PREFIX: &str = "listener.name.http.";
    let mut q: BTreeMap<String, String> = p
        .iter()
        .filter(|(k, _)| !k.starts_with("listener.name."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in p {
        if let Some(rest) = k.strip_prefix("http.ssl.") {
            q.insert(format!("{PREFIX}ssl.{rest}"), v.clone());
        }
    }
    let named = |mut e: ConfigError| {
        e.name = e.name.replace(PREFIX, "http.");
        e.reason = e
            .reason
            .replace(PREFIX, "http.")
            .replace("listener HTTP", "the HTTP API");
        e
    };
    let settings = tls_settings(&q, "HTTP").map_err(named)?;
    crate::security::tls::server_config(&settings)
        .map_err(|e| ConfigError::new("http.ssl.keystore.location", "", e))?;
    Ok(settings)
}

/// `security.protocol` and the TLS client properties for connecting to `listener`: its
/// truststore file, host names checked unless `ssl.endpoint.identification.algorithm`
/// says otherwise, and its keystore file when it asks for client certificates.
fn client_tls_properties(
    p: &BTreeMap<String, String>,
    listener: &str,
    sec: &ListenerSecurity,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let lower = listener.to_ascii_lowercase();
    let mut props = BTreeMap::new();
    props.insert(
        "security.protocol".to_owned(),
        sec.protocol.name().to_owned(),
    );
    if let Some(tls) = &sec.tls {
        match &tls.truststore {
            Some(TrustStore::File(path)) => {
                props.insert(
                    "ssl.truststore.location".to_owned(),
                    path.display().to_string(),
                );
            }
            _ => {
                return Err(ConfigError::new(
                    "ssl.truststore.location",
                    "",
                    format!(
                        "the inter-broker listener {listener} uses TLS: brokers check each \
                         other's certificates against a truststore file, so set \
                         listener.name.{lower}.ssl.truststore.location (or ssl.truststore.location)"
                    ),
                ))
            }
        }
        // Host names are checked (https) unless the setting says otherwise, which the
        // client refuses: Moldau does not connect to a broker it cannot identify.
        if let Some((_, v)) = listener_value(p, listener, "ssl.endpoint.identification.algorithm") {
            props.insert(
                "ssl.endpoint.identification.algorithm".to_owned(),
                v.to_owned(),
            );
        }
        if tls.client_auth != ClientAuth::None {
            match &tls.keystore {
                KeyStore::File(path) => {
                    props.insert(
                        "ssl.keystore.location".to_owned(),
                        path.display().to_string(),
                    );
                }
                KeyStore::Inline { .. } => {
                    return Err(ConfigError::new(
                        "ssl.keystore.location",
                        "",
                        "brokers present their keystore file to each other: give the \
                         inter-broker listener's key and chain as ssl.keystore.location",
                    ))
                }
            }
        }
    }
    Ok(props)
}

/// Broker-wide authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `sasl.server.max.receive.size` (default 524288): the largest frame a client may
    /// send before it has authenticated, bytes.
    pub sasl_max_receive_size: usize,
    /// `connection.failed.authentication.delay.ms` (default 100): how long a failed
    /// authentication's answer is held back before the connection closes.
    pub failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (default 0, never; KIP-368): the longest a SASL
    /// session lasts before the client must re-authenticate on the same connection.
    pub connections_max_reauth_ms: u64,
}

/// The value of `name` for `listener`: `listener.name.<listener>.<name>`, else `<name>`.
pub(super) fn listener_value<'a>(
    p: &'a BTreeMap<String, String>,
    listener: &str,
    name: &str,
) -> Option<(String, &'a str)> {
    let prefixed = format!("listener.name.{}.{name}", listener.to_ascii_lowercase());
    if let Some(v) = p.get(&prefixed) {
        return Some((prefixed, v));
    }
    p.get(name).map(|v| (name.to_owned(), v.as_str()))
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn pem_type(p: &BTreeMap<String, String>, listener: &str, name: &str) -> Result<(), ConfigError> {
    match listener_value(p, listener, name) {
        Some((key, v)) if !v.trim().eq_ignore_ascii_case("PEM") => Err(ConfigError::new(
            &key,
            v,
            "only PEM key and trust stores are read (JKS and PKCS12 are Java formats Moldau does not read)",
        )),
        _ => Ok(()),
    }
}

fn tls_settings(p: &BTreeMap<String, String>, listener: &str) -> Result<TlsSettings, ConfigError> {
    pem_type(p, listener, "ssl.keystore.type")?;
    pem_type(p, listener, "ssl.truststore.type")?;
    let location = listener_value(p, listener, "ssl.keystore.location");
    let chain = listener_value(p, listener, "ssl.keystore.certificate.chain");
    let key = listener_value(p, listener, "ssl.keystore.key");
    let keystore = match (location, chain, key) {
        (Some(_), Some((name, v)), _) | (Some(_), _, Some((name, v))) => {
            return Err(ConfigError::new(
                &name,
                v,
                "give ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key, not both",
            ))
        }
        (Some((_, path)), None, None) => KeyStore::File(PathBuf::from(path.trim())),
        (None, Some((_, chain)), Some((_, key))) => KeyStore::Inline {
            chain: chain.to_owned(),
            key: key.to_owned(),
        },
        (None, Some((name, v)), None) | (None, None, Some((name, v))) => {
            return Err(ConfigError::new(
                &name,
                v,
                "ssl.keystore.certificate.chain and ssl.keystore.key go together",
            ))
        }
        (None, None, None) => {
            return Err(ConfigError::new(
                "ssl.keystore.location",
                "",
                format!(
                    "listener {listener} uses TLS and needs a certificate: set ssl.keystore.location \
                     (or listener.name.{}.ssl.keystore.location) to a PEM file with the key and chain",
                    listener.to_ascii_lowercase()
                ),
            ))
        }
    };
    let truststore = match (
        listener_value(p, listener, "ssl.truststore.location"),
        listener_value(p, listener, "ssl.truststore.certificates"),
    ) {
        (Some(_), Some((name, v))) => {
            return Err(ConfigError::new(
                &name,
                v,
                "give ssl.truststore.location or ssl.truststore.certificates, not both",
            ))
        }
        (Some((_, path)), None) => Some(TrustStore::File(PathBuf::from(path.trim()))),
        (None, Some((_, pem))) => Some(TrustStore::Inline(pem.to_owned())),
        (None, None) => None,
    };
    let client_auth = match listener_value(p, listener, "ssl.client.auth") {
        None => ClientAuth::None,
        Some((name, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            _ => {
                return Err(ConfigError::new(
                    &name,
                    v,
                    "expected none, requested or required",
                ))
            }
        },
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(ConfigError::new(
            "ssl.client.auth",
            "",
            format!(
                "listener {listener} asks for client certificates but has no truststore to check \
                 them against: set ssl.truststore.location"
            ),
        ));
    }
    let protocols = match listener_value(p, listener, "ssl.enabled.protocols") {
        None => vec![TlsVersion::Tls12, TlsVersion::Tls13],
        Some((name, v)) => {
            let mut out = Vec::new();
            for proto in list(v) {
                out.push(match proto.as_str() {
                    "TLSv1.2" => TlsVersion::Tls12,
                    "TLSv1.3" => TlsVersion::Tls13,
                    other => {
                        return Err(ConfigError::new(
                            &name,
                            v,
                            format!("{other} is not offered: TLSv1.2 and TLSv1.3 are (older versions are insecure)"),
                        ))
                    }
                });
            }
            if out.is_empty() {
                return Err(ConfigError::new(&name, v, "no protocol enabled"));
            }
            out
        }
    };
    if let Some((name, v)) = listener_value(p, listener, "ssl.protocol") {
        let enabled = match v.trim() {
            "TLSv1.2" => protocols.contains(&TlsVersion::Tls12),
            "TLSv1.3" | "TLS" => true,
            _ => false,
        };
        if !enabled {
            return Err(ConfigError::new(
                &name,
                v,
                "expected TLSv1.2, TLSv1.3 or TLS, a version ssl.enabled.protocols enables",
            ));
        }
    }
    let cipher_suites = listener_value(p, listener, "ssl.cipher.suites")
        .map(|(_, v)| list(v))
        .unwrap_or_default();
    let principal_rules = match listener_value(p, listener, "ssl.principal.mapping.rules") {
        None => vec![PrincipalRule::Default],
        Some((name, v)) => parse_principal_rules(v).map_err(|e| ConfigError::new(&name, v, e))?,
    };
    Ok(TlsSettings {
        keystore,
        truststore,
        client_auth,
        protocols,
        cipher_suites,
        principal_rules,
    })
}

/// Parses `ssl.principal.mapping.rules`: `DEFAULT` and `RULE:pattern/replacement/[LU]`
/// entries separated by commas (a pattern or replacement holds no `/`, as in Kafka).
pub fn parse_principal_rules(text: &str) -> Result<Vec<PrincipalRule>, String> {
    let mut rules = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("DEFAULT") {
            rules.push(PrincipalRule::Default);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("RULE:") {
            let (pattern, after) = after
                .split_once('/')
                .ok_or("a RULE needs pattern/replacement/")?;
            let (replacement, mut after) = after
                .split_once('/')
                .ok_or("a RULE needs pattern/replacement/")?;
            let case = match after.chars().next() {
                Some(c @ ('L' | 'U')) => {
                    after = &after[1..];
                    Some(c)
                }
                _ => None,
            };
            let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
            rules.push(PrincipalRule::Rule {
                pattern,
                replacement: replacement.to_owned(),
                case,
            });
            rest = after;
        } else {
            return Err(format!("expected DEFAULT or RULE: at {rest:?}"));
        }
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected a comma before {rest:?}"));
        }
    }
    if rules.is_empty() {
        return Err("no rule given".into());
    }
    Ok(rules)
}

/// Applies the rules to a distinguished name (KIP-371); `None` when no rule matches.
pub fn map_principal(rules: &[PrincipalRule], dn: &str) -> Option<String> {
    rules.iter().find_map(|rule| match rule {
        PrincipalRule::Default => Some(dn.to_owned()),
        PrincipalRule::Rule {
            pattern,
            replacement,
            case,
        } => {
            let caps = pattern.captures(dn)?;
            let mut out = String::new();
            caps.expand(replacement, &mut out);
            Some(match case {
                Some('L') => out.to_lowercase(),
                Some('U') => out.to_uppercase(),
                _ => out,
            })
        }
    })
}

/// Parses a Kafka JAAS config value:
/// `<LoginModule class> required key="value" ... ;`. Returns the options.
pub fn parse_jaas(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim();
    let body = text
        .strip_suffix(';')
        .ok_or("a JAAS config ends with ';'")?
        .trim();
    let mut words = body.splitn(3, char::is_whitespace);
    let module = words.next().unwrap_or_default();
    if module.is_empty() {
        return Err("no login module given".into());
    }
    match words.next().map(str::trim) {
        Some("required" | "requisite" | "sufficient" | "optional") => {}
        _ => return Err("expected the login module's class, then 'required'".into()),
    }
    let mut rest = words.next().unwrap_or_default().trim();
    let mut options = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| "expected key=\"value\" options after the flag".to_owned())?;
        let key = key.trim();
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quoted value for {key}"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        options.insert(key.to_owned(), value.to_owned());
        rest = after.trim_start();
    }
    Ok(options)
}

fn sasl_settings(
    p: &BTreeMap<String, String>,
    listener: &str,
) -> Result<SaslSettings, ConfigError> {
    let lower = listener.to_ascii_lowercase();
    let Some((name, v)) = listener_value(p, listener, "sasl.enabled.mechanisms") else {
        return Err(ConfigError::new(
            "sasl.enabled.mechanisms",
            "",
            format!(
                "listener {listener} uses SASL: name its mechanisms (PLAIN, SCRAM-SHA-256, \
                 SCRAM-SHA-512); Kafka's default GSSAPI is not implemented"
            ),
        ));
    };
    let mut mechanisms = Vec::new();
    for m in list(v) {
        let mechanism = SaslMechanism::from_name(&m).ok_or_else(|| {
            ConfigError::new(
                &name,
                v,
                format!(
                    "{m} is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER are)"
                ),
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(ConfigError::new(&name, v, "no mechanism given"));
    }
    let mut plain_users = BTreeMap::new();
    if mechanisms.contains(&SaslMechanism::Plain) {
        let key = format!("listener.name.{lower}.plain.sasl.jaas.config");
        let Some(jaas) = p.get(&key) else {
            return Err(ConfigError::new(
                &key,
                "",
                format!(
                    "PLAIN is enabled on listener {listener}: give its users as \
                     org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\" ...;"
                ),
            ));
        };
        let options = parse_jaas(jaas).map_err(|e| ConfigError::new(&key, "(hidden)", e))?;
        for (k, v) in options {
            if let Some(user) = k.strip_prefix("user_") {
                plain_users.insert(user.to_owned(), v);
            }
        }
        if plain_users.is_empty() {
            return Err(ConfigError::new(
                &key,
                "(hidden)",
                "no user_<name>=\"<password>\" entry: nobody could log in with PLAIN",
            ));
        }
    }
    for m in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let key = format!(
            "listener.name.{lower}.{}.sasl.jaas.config",
            m.name().to_ascii_lowercase()
        );
        if let Some(jaas) = p.get(&key) {
            parse_jaas(jaas).map_err(|e| ConfigError::new(&key, "(hidden)", e))?;
        }
    }
    let oauthbearer = if mechanisms.contains(&SaslMechanism::OAuthBearer) {
        Some(Arc::new(oauth_validator(p, &lower, listener)?))
    } else {
        None
    };
    Ok(SaslSettings {
        mechanisms,
        plain_users,
        oauthbearer,
    })
}

/// Kafka's class names for the validating OAUTHBEARER callback handler (KIP-768; the
/// second is its pre-3.4 package).
const OAUTH_VALIDATOR_CLASSES: [&str; 2] = [
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
];

/// The OAUTHBEARER validator of listener `listener` from the broker's
/// `sasl.oauthbearer.*` settings (see [`crate::security::oauth`]). The key set must be
/// given, as a file; a callback handler class other than Kafka's validator stops
/// start-up.
fn oauth_validator(
    p: &BTreeMap<String, String>,
    lower: &str,
    listener: &str,
) -> Result<crate::security::oauth::Validator, ConfigError> {
    let handler = format!("listener.name.{lower}.oauthbearer.sasl.server.callback.handler.class");
    if let Some(class) = p.get(&handler) {
        if !OAUTH_VALIDATOR_CLASSES.contains(&class.trim()) {
            return Err(ConfigError::new(
                &handler,
                class,
                format!(
                    "Moldau validates tokens itself, as {}",
                    OAUTH_VALIDATOR_CLASSES[0]
                ),
            ));
        }
    }
    let jaas = format!("listener.name.{lower}.oauthbearer.sasl.jaas.config");
    if let Some(v) = p.get(&jaas) {
        parse_jaas(v).map_err(|e| ConfigError::new(&jaas, "(hidden)", e))?;
    }
    const URL: &str = "sasl.oauthbearer.jwks.endpoint.url";
    let Some(url) = p.get(URL) else {
        return Err(ConfigError::new(
            URL,
            "",
            format!(
                "OAUTHBEARER is enabled on listener {listener}: give the key set that signs \
                 tokens as file:/path/jwks.json (unsigned tokens are never accepted)"
            ),
        ));
    };
    let jwks_path =
        crate::security::oauth::jwks_file(url.trim()).map_err(|e| ConfigError::new(URL, url, e))?;
    const SKEW: &str = "sasl.oauthbearer.clock.skew.seconds";
    let clock_skew_s = match p.get(SKEW) {
        None => 30,
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|s: &u64| *s <= 86_400)
            .ok_or_else(|| {
                ConfigError::new(SKEW, v, "not a whole number of seconds from 0 to 86400")
            })?,
    };
    let settings = crate::security::oauth::OAuthSettings {
        jwks_path,
        audience: p
            .get("sasl.oauthbearer.expected.audience")
            .map(|v| list(v))
            .unwrap_or_default(),
        issuer: p
            .get("sasl.oauthbearer.expected.issuer")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        sub_claim: p
            .get("sasl.oauthbearer.sub.claim.name")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "sub".to_owned()),
        clock_skew_s,
    };
    crate::security::oauth::Validator::new(settings).map_err(|e| ConfigError::new(URL, url, e))
}

/// Each listener's security, the broker-wide settings, and warnings.
pub(super) type Resolved = (
    BTreeMap<String, ListenerSecurity>,
    AuthSettings,
    Vec<String>,
);

/// Resolves the security of every listener and the broker-wide authentication settings.
/// Also returns warnings for settings no listener uses (TLS settings without an SSL
/// listener, …). Errors name the property: missing key material, a file that does not
/// load, a mechanism without users, a `listener.name.` prefix for an unknown listener.
/// `controller` is the controller listener's name and protocol, which a broker-only node
/// connects to without listening on it (its `listener.name.` settings are then known).
pub(super) fn resolve(
    p: &BTreeMap<String, String>,
    listeners: &[Endpoint],
    controller: Option<(&str, SecurityProtocol)>,
) -> Result<Resolved, ConfigError> {
    for key in p.keys() {
        if let Some(rest) = key.strip_prefix("listener.name.") {
            let listener = rest.split('.').next().unwrap_or_default();
            if listener != listener.to_ascii_lowercase() {
                return Err(ConfigError::new(
                    key,
                    &p[key],
                    format!(
                        "write the listener name in lower case: listener.name.{}.…",
                        listener.to_ascii_lowercase()
                    ),
                ));
            }
            if !listeners
                .iter()
                .any(|l| l.name.eq_ignore_ascii_case(listener))
                && !controller.is_some_and(|(c, _)| c.eq_ignore_ascii_case(listener))
            {
                return Err(ConfigError::new(
                    key,
                    &p[key],
                    format!("there is no listener {listener} in listeners"),
                ));
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    for l in listeners {
        let tls = match l.protocol {
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => {
                let settings = tls_settings(p, &l.name)?;
                crate::security::tls::server_config(&settings).map_err(|e| {
                    ConfigError::new(
                        "ssl.keystore.location",
                        "",
                        format!("listener {}: {e}", l.name),
                    )
                })?;
                Some(settings)
            }
            _ => None,
        };
        let sasl = match l.protocol {
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => {
                Some(sasl_settings(p, &l.name)?)
            }
            _ => None,
        };
        for key in p.keys() {
            let Some(rest) = key
                .strip_prefix("listener.name.")
                .and_then(|r| r.strip_prefix(&format!("{}.", l.name.to_ascii_lowercase())))
            else {
                continue;
            };
            let unused = (rest.starts_with("ssl.") && tls.is_none())
                || (rest.contains("sasl.") && sasl.is_none());
            if unused {
                return Err(ConfigError::new(
                    key,
                    &p[key],
                    format!(
                        "listener {} uses {}, which has no use for it",
                        l.name,
                        l.protocol.name()
                    ),
                ));
            }
        }
        out.insert(
            l.name.clone(),
            ListenerSecurity {
                protocol: l.protocol,
                tls,
                sasl,
            },
        );
    }
    let controller_protocol = controller.map(|(_, p)| p);
    let any_tls = out.values().any(|s| s.tls.is_some())
        || matches!(
            controller_protocol,
            Some(SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
        );
    let any_sasl = out.values().any(|s| s.sasl.is_some())
        || matches!(
            controller_protocol,
            Some(SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
        );
    let any_oauth = out.values().any(|s| {
        s.sasl
            .as_ref()
            .is_some_and(|s| s.mechanisms.contains(&SaslMechanism::OAuthBearer))
    });
    for key in p.keys() {
        let unused = (key.starts_with("ssl.") && !any_tls)
            || (key.starts_with("sasl.")
                && key != "sasl.mechanism.inter.broker.protocol"
                && key != "sasl.mechanism.controller.protocol"
                && !any_sasl);
        if unused {
            warnings.push(format!(
                "{key}: no listener uses it (no SSL, SASL_PLAINTEXT or SASL_SSL listener needs it)"
            ));
        } else if key.starts_with("sasl.oauthbearer.") && !any_oauth {
            warnings.push(format!(
                "{key}: no listener enables OAUTHBEARER (sasl.enabled.mechanisms)"
            ));
        }
    }
    let auth = AuthSettings {
        sasl_max_receive_size: super::parse(p, "sasl.server.max.receive.size", 524_288usize)?,
        failed_authentication_delay_ms: super::parse(
            p,
            "connection.failed.authentication.delay.ms",
            100u64,
        )?,
        // Beyond ten years means never expiring in practice; clamped so deadlines fit.
        connections_max_reauth_ms: super::parse(p, "connections.max.reauth.ms", 0u64)?
            .min(10 * 365 * 24 * 3_600_000),
    };
    Ok((out, auth, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_cannot_log_in_with_oauthbearer() {
        let e = SaslMechanism::for_nodes("OAUTHBEARER", "sasl.mechanism.inter.broker.protocol")
            .expect_err("OAUTHBEARER between nodes");
        assert!(e.to_string().contains("no token source"), "{e}");
        assert_eq!(
            SaslMechanism::for_nodes("SCRAM-SHA-512", "x").ok(),
            Some(SaslMechanism::ScramSha512)
        );
        assert!(SaslMechanism::for_nodes("GSSAPI", "x").is_err());
    }

    #[test]
    fn jaas_options() {
        let o = parse_jaas(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a b";"#,
        )
        .expect("valid");
        assert_eq!(o["user_alice"], "a b");
        assert_eq!(o["username"], "admin");
        assert!(parse_jaas("X required a=\"b\"").is_err(), "no semicolon");
        assert!(parse_jaas("X a=\"b\";").is_err(), "no flag");
        assert!(parse_jaas("X required a=\"b;").is_err());
    }

    /// Printing a whole config (as a panic message or a debug log might) shows no
    /// password: neither the JAAS config's nor a PLAIN user's.
    #[test]
    fn debug_output_hides_secrets() {
        let p: BTreeMap<String, String> = [
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                r#"x required username="admin" password="s3cret-a" user_alice="s3cret-b";"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = crate::config::BrokerConfig::from_properties(p).expect("valid");
        let text = format!("{config:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let inline = KeyStore::Inline {
            chain: "chain".into(),
            key: "-----BEGIN PRIVATE KEY----- s3cret".into(),
        };
        assert!(!format!("{inline:?}").contains("s3cret"));
    }

    #[test]
    fn principal_rules_as_kip_371() {
        let rules = parse_principal_rules(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/, DEFAULT",
        )
        .expect("valid");
        assert_eq!(rules.len(), 3);
        assert_eq!(
            map_principal(&rules, "CN=Kafka,OU=ServiceUsers,O=Org").as_deref(),
            Some("kafka")
        );
        assert_eq!(
            map_principal(&rules, "CN=alice,OU=eng,O=Org").as_deref(),
            Some("alice@eng")
        );
        assert_eq!(map_principal(&rules, "CN=x").as_deref(), Some("CN=x"));
        let only = parse_principal_rules("RULE:^CN=([a-z]+)$/$1/U").expect("valid");
        assert_eq!(map_principal(&only, "CN=bob").as_deref(), Some("BOB"));
        assert_eq!(map_principal(&only, "O=bob"), None);
        for bad in ["", "RULE:x", "RULE:(/y/", "SOMETHING", "DEFAULT DEFAULT"] {
            assert!(parse_principal_rules(bad).is_err(), "{bad}");
        }
    }
}
