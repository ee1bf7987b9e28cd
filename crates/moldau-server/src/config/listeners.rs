//! Listeners, security protocols and controller voters, as Kafka writes them
//! (`listeners`, `advertised.listeners`, `listener.security.protocol.map`,
//! `controller.quorum.voters`; Kafka docs "Broker Configs" and KIP-595/KIP-631).

use super::ConfigError;
use std::collections::BTreeMap;

/// A listener's security protocol (values of `listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No encryption, no authentication.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over plaintext.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses Kafka's protocol name (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's name for the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Kafka's numeric id (`SecurityProtocol.id`), as carried in broker registrations.
    pub fn id(self) -> i16 {
        match self {
            Self::Plaintext => 0,
            Self::Ssl => 1,
            Self::SaslPlaintext => 2,
            Self::SaslSsl => 3,
        }
    }
}

/// One named listener: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, upper case (Kafka normalises names to upper case).
    pub name: String,
    /// Host to bind or advertise; empty means every interface (bind) or `localhost`
    /// (advertise).
    pub host: String,
    /// TCP port; 0 binds an ephemeral port (advertised as the port actually bound).
    pub port: u16,
    /// Security protocol from `listener.security.protocol.map`.
    pub protocol: SecurityProtocol,
}

impl Endpoint {
    /// `host:port` to bind (IPv6 hosts bracketed; an empty host binds `0.0.0.0`).
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        join_host_port(host, self.port)
    }
}

/// `host:port`, with IPv6 literals in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host:port` (`[v6]:port` too). Errors name `property`.
pub fn split_host_port(property: &str, text: &str) -> Result<(String, u16), ConfigError> {
    let bad = |reason: &str| ConfigError::new(property, text, reason);
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// The protocol of each listener name: Kafka's default map
/// (`PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL`) or
/// `listener.security.protocol.map`.
#[derive(Debug, Clone)]
pub struct ProtocolMap {
    map: BTreeMap<String, SecurityProtocol>,
    explicit: bool,
}

impl ProtocolMap {
    /// Parses `listener.security.protocol.map` (`None`: Kafka's default).
    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        const NAME: &str = "listener.security.protocol.map";
        let Some(value) = value else {
            let map = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                .iter()
                .filter_map(|p| Some((p.to_string(), SecurityProtocol::parse(p)?)))
                .collect();
            return Ok(Self {
                map,
                explicit: false,
            });
        };
        let mut map = BTreeMap::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                ConfigError::new(NAME, value, format!("'{entry}' is not NAME:PROTOCOL"))
            })?;
            let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
                ConfigError::new(
                    NAME,
                    value,
                    format!("'{protocol}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                )
            })?;
            if map
                .insert(name.trim().to_ascii_uppercase(), protocol)
                .is_some()
            {
                return Err(ConfigError::new(
                    NAME,
                    value,
                    format!("listener {name} is mapped twice"),
                ));
            }
        }
        Ok(Self {
            map,
            explicit: true,
        })
    }

    /// The protocol of listener `name`. A controller listener missing from Kafka's
    /// default map is PLAINTEXT (Kafka 3.x does the same for `CONTROLLER`).
    pub fn protocol(&self, name: &str, is_controller: bool) -> Option<SecurityProtocol> {
        match self.map.get(name) {
            Some(p) => Some(*p),
            None if is_controller && !self.explicit => Some(SecurityProtocol::Plaintext),
            None => None,
        }
    }
}

/// Parses a `listeners`/`advertised.listeners` value: comma-separated `NAME://host:port`
/// entries (a bare `host:port` is the `PLAINTEXT` listener, as older Moldau accepted).
/// Names are upper-cased and must be unique. `controller_names` are the names in
/// `controller.listener.names` (they map to PLAINTEXT by default).
pub fn parse_listeners(
    property: &str,
    value: &str,
    map: &ProtocolMap,
    controller_names: &[String],
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = match entry.split_once("://") {
            Some((n, a)) => (n.trim().to_ascii_uppercase(), a),
            None => ("PLAINTEXT".to_owned(), entry),
        };
        if name.is_empty() {
            return Err(ConfigError::new(
                property,
                value,
                format!("'{entry}' has no listener name"),
            ));
        }
        let (host, port) = split_host_port(property, address)?;
        let is_controller = controller_names.contains(&name);
        let protocol = map.protocol(&name, is_controller).ok_or_else(|| {
            ConfigError::new(
                property,
                value,
                format!(
                    "listener {name} has no security protocol: name it in \
                     listener.security.protocol.map or use a protocol name"
                ),
            )
        })?;
        if out.iter().any(|e| e.name == name) {
            return Err(ConfigError::new(
                property,
                value,
                format!("listener {name} appears twice"),
            ));
        }
        out.push(Endpoint {
            name,
            host,
            port,
            protocol,
        });
    }
    if out.is_empty() {
        return Err(ConfigError::new(property, value, "no listener given"));
    }
    Ok(out)
}

/// One controller quorum voter from `controller.quorum.voters` (`id@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The voter's `node.id`.
    pub id: i32,
    /// Host of its controller listener.
    pub host: String,
    /// Port of its controller listener.
    pub port: u16,
}

impl Voter {
    /// `host:port` of the voter's controller listener.
    pub fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// Parses `controller.quorum.voters`: `id@host:port` entries, comma-separated, ids
/// unique and non-negative.
pub fn parse_voters(value: &str) -> Result<Vec<Voter>, ConfigError> {
    const NAME: &str = "controller.quorum.voters";
    let mut voters: Vec<Voter> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry.split_once('@').ok_or_else(|| {
            ConfigError::new(NAME, value, format!("'{entry}' is not id@host:port"))
        })?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                ConfigError::new(NAME, value, format!("'{id}' is not a node id (>= 0)"))
            })?;
        let (host, port) = split_host_port(NAME, address)?;
        if host.is_empty() || port == 0 {
            return Err(ConfigError::new(
                NAME,
                value,
                format!("voter {id} needs a host and a non-zero port"),
            ));
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(ConfigError::new(
                NAME,
                value,
                format!("voter {id} appears twice"),
            ));
        }
        voters.push(Voter { id, host, port });
    }
    if voters.is_empty() {
        return Err(ConfigError::new(NAME, value, "no voter given"));
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_with_names_and_protocols() {
        let map = ProtocolMap::parse(None).expect("default");
        let l = parse_listeners(
            "listeners",
            "PLAINTEXT://:9092, controller://127.0.0.1:9093,[::1]:9094",
            &map,
            &["CONTROLLER".to_owned()],
        );
        // The bare [::1]:9094 is a second PLAINTEXT listener: refused.
        assert!(l.is_err());
        let l = parse_listeners(
            "listeners",
            "PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093",
            &map,
            &["CONTROLLER".to_owned()],
        )
        .expect("valid");
        assert_eq!(l[0].bind_addr(), "0.0.0.0:9092");
        assert_eq!(l[1].name, "CONTROLLER");
        assert_eq!(l[1].protocol, SecurityProtocol::Plaintext);
        let err = parse_listeners("listeners", "INTERNAL://:1", &map, &[]).expect_err("unmapped");
        assert!(err.to_string().contains("INTERNAL"), "{err}");
        let map = ProtocolMap::parse(Some("INTERNAL:PLAINTEXT,EXTERNAL:SSL")).expect("map");
        let l = parse_listeners("listeners", "INTERNAL://h:1,EXTERNAL://h:2", &map, &[])
            .expect("valid");
        assert_eq!(l[1].protocol, SecurityProtocol::Ssl);
        assert!(ProtocolMap::parse(Some("A:TLS")).is_err());
        assert_eq!(
            parse_listeners(
                "listeners",
                "[::1]:9092",
                &ProtocolMap::parse(None).expect("map"),
                &[]
            )
            .expect("v6")[0]
                .bind_addr(),
            "[::1]:9092"
        );
    }

    #[test]
    fn voters() {
        let v = parse_voters("1@a:9093,2@b:9093, 3@[::1]:9093").expect("valid");
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].addr(), "[::1]:9093");
        for bad in [
            "",
            "1@a",
            "x@a:1",
            "1@a:1,1@b:1",
            "-1@a:1",
            "1@:9093",
            "1@a:0",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }
}
