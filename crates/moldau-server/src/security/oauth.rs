//! SASL/OAUTHBEARER (RFC 7628; KIP-255) with signed JWT access tokens validated against
//! a JSON Web Key Set, as Kafka's `OAuthBearerValidatorCallbackHandler` does (KIP-768):
//! the token's signature must verify with a key of the set (those with the token's
//! `kid`, or those that name none), it must carry `exp` and `iat`, its `exp` must not
//! have passed (and its `nbf` must have), both within
//! `sasl.oauthbearer.clock.skew.seconds`; when configured, `aud` must be present and
//! name one of `sasl.oauthbearer.expected.audience`, and `iss` must be present and be
//! `sasl.oauthbearer.expected.issuer`. The principal is `User:<claim>`, the claim being
//! `sasl.oauthbearer.sub.claim.name` (`sub`). A session ends when its token expires
//! (KIP-368), whether or not `connections.max.reauth.ms` is set.
//!
//! Where Moldau differs from Kafka: the key set is read from a file
//! (`sasl.oauthbearer.jwks.endpoint.url=file:/path/jwks.json`, re-read when the file
//! changes), never fetched over HTTP; and tokens are always validated: Kafka's default,
//! without a validator callback handler configured, accepts unsigned ("unsecured")
//! tokens, which Moldau refuses. Only asymmetric algorithms (RS*, PS*, ES*, EdDSA) are
//! accepted: a public key used as an HMAC secret would let anyone sign.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// How tokens are validated (the broker's `sasl.oauthbearer.*` settings).
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The JWKS file (`sasl.oauthbearer.jwks.endpoint.url`, a `file:` URL).
    pub jwks_path: PathBuf,
    /// `sasl.oauthbearer.expected.audience`: the token's `aud` must name one of these
    /// (empty: `aud` is not checked).
    pub audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`): the claim naming the principal.
    pub sub_claim: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30, at most 86400): leeway for
    /// `exp` and `nbf`, s.
    pub clock_skew_s: u64,
}

/// An accepted token: who it names and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The principal's name (the principal is `User:<name>`).
    pub user: String,
    /// The token's `exp`, ms since the Unix epoch.
    pub expires_at_ms: i64,
}

/// Validates OAUTHBEARER tokens against the key set in [`OAuthSettings::jwks_path`].
pub struct Validator {
    settings: OAuthSettings,
    /// The key set and the modification time of the file it was read from.
    keys: Mutex<(Option<SystemTime>, Arc<JwkSet>)>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Validator {
    /// Reads the key set. Errors (for start-up) when the file cannot be read, is not a
    /// JWKS, or holds no key that can verify a signature.
    pub fn new(settings: OAuthSettings) -> Result<Self, String> {
        let (mtime, keys) = read_jwks(&settings.jwks_path)?;
        Ok(Self {
            settings,
            keys: Mutex::new((mtime, Arc::new(keys))),
        })
    }

    /// The key set, re-read first if its file changed. A file that no longer reads as a
    /// key set keeps the last good one in use (and is logged).
    fn keys(&self) -> Arc<JwkSet> {
        let mut held = self.keys.lock();
        let mtime = std::fs::metadata(&self.settings.jwks_path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime != held.0 {
            match read_jwks(&self.settings.jwks_path) {
                Ok((mtime, keys)) => {
                    tracing::info!(path = %self.settings.jwks_path.display(), keys = keys.keys.len(), "OAUTHBEARER: JWKS re-read");
                    *held = (mtime, Arc::new(keys));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OAUTHBEARER: the changed JWKS file is unusable; keeping the last good key set");
                    held.0 = mtime;
                }
            }
        }
        held.1.clone()
    }

    /// Validates the compact JWT `token` (see the module doc). Errors say why it was
    /// refused, for the log.
    pub fn validate(&self, token: &str) -> Result<Accepted, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!(
                "token signed with {:?}, a symmetric algorithm",
                header.alg
            ));
        }
        let keys = self.keys();
        // The keys that may have signed it: those with the token's `kid`, else (or for a
        // token without one) those that name no `kid`, else, without a `kid`, any;
        // never one marked for encryption only.
        let signing = |k: &&jsonwebtoken::jwk::Jwk| {
            !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        };
        let with_kid: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => keys
                .keys
                .iter()
                .filter(signing)
                .filter(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = if !with_kid.is_empty() {
            with_kid
        } else {
            let unnamed: Vec<_> = keys
                .keys
                .iter()
                .filter(signing)
                .filter(|k| k.common.key_id.is_none())
                .collect();
            if !unnamed.is_empty() || header.kid.is_some() {
                unnamed
            } else {
                keys.keys.iter().filter(signing).collect()
            }
        };
        if candidates.is_empty() {
            return Err(format!(
                "no key in the JWKS for the token's kid {:?}",
                header.kid
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew_s;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.settings.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.audience);
            required.push("aud");
        }
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let mut refused = String::new();
        let mut verified = None;
        for jwk in candidates {
            if let Some(alg) = jwk.common.key_algorithm {
                if format!("{alg:?}") != format!("{:?}", header.alg) {
                    refused = format!("token signed with {:?}, its key is for {alg:?}", header.alg);
                    continue;
                }
            }
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    refused = format!("unusable JWK: {e}");
                    continue;
                }
            };
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key,
                &validation,
            ) {
                Ok(data) => {
                    verified = Some(data);
                    break;
                }
                Err(e) => refused = format!("token refused: {e}"),
            }
        }
        let data = verified.ok_or(refused)?;
        if !data
            .claims
            .get("iat")
            .is_some_and(serde_json::Value::is_number)
        {
            return Err("token refused: it has no iat (issued-at) claim".into());
        }
        let claim = &self.settings.sub_claim;
        let user = data
            .claims
            .get(claim)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the token has no {claim:?} claim naming its principal"))?;
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .ok_or("the token's exp is not a number")?;
        Ok(Accepted {
            user: user.to_owned(),
            expires_at_ms: (exp * 1000.0) as i64,
        })
    }
}

/// The file behind a `sasl.oauthbearer.jwks.endpoint.url`: `file:/path` or
/// `file:///path`. Other schemes are refused (Moldau does not fetch key sets).
pub fn jwks_file(url: &str) -> Result<PathBuf, String> {
    let Some(rest) = url.strip_prefix("file:") else {
        return Err(
            "Moldau reads the JWKS from a file (file:/path/jwks.json); it does not fetch it \
             over HTTP: save the identity provider's key set to a file"
                .into(),
        );
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err("a file: URL needs an absolute path (file:/path/jwks.json)".into());
    }
    Ok(PathBuf::from(path))
}

fn read_jwks(path: &std::path::Path) -> Result<(Option<SystemTime>, JwkSet), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
    let keys: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON Web Key Set: {e}", path.display()))?;
    if !keys.keys.iter().any(|k| DecodingKey::from_jwk(k).is_ok()) {
        return Err(format!(
            "{} holds no key that can verify signatures",
            path.display()
        ));
    }
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((mtime, keys))
}

/// The client's first message (RFC 7628 §3.1): a GS2 header `n,[a=<authzid>],`, then
/// `\x01`-separated `key=value` pairs with `auth=Bearer <token>`, ended by `\x01\x01`.
/// Returns the authorization id (if any) and the token; other keys (SASL extensions,
/// KIP-342) are ignored.
pub fn parse_client_first(message: &[u8]) -> Result<(Option<String>, String), String> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or("no \\x01 after the GS2 header")?;
    let mut parts = gs2.split(',');
    if parts.next() != Some("n") {
        return Err("the GS2 header must start with n (no channel binding)".into());
    }
    let authzid = match parts.next() {
        Some("") | None => None,
        Some(a) => Some(
            a.strip_prefix("a=")
                .ok_or("malformed authorization id in the GS2 header")?
                .to_owned(),
        ),
    };
    if !rest.ends_with("\x01\x01") && rest != "\x01" {
        return Err("the message does not end with \\x01\\x01".into());
    }
    let auth = rest
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .ok_or("no auth=Bearer <token> pair")?;
    let (scheme, token) = auth.split_once(' ').ok_or("malformed auth value")?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(format!("auth scheme {scheme:?} is not Bearer"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err("empty bearer token".into());
    }
    Ok((authzid, token.to_owned()))
}

/// The server's error challenge (RFC 7628 §3.2.2): the client answers it with `\x01`
/// and the exchange then fails.
pub fn error_challenge() -> Vec<u8> {
    br#"{"status":"invalid_token"}"#.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_messages() {
        let (a, t) = parse_client_first(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").expect("parsed");
        assert_eq!((a, t.as_str()), (None, "abc.def.ghi"));
        let (a, t) =
            parse_client_first(b"n,a=alice,\x01host=h\x01auth=bearer x.y.z\x01ext=1\x01\x01")
                .expect("parsed");
        assert_eq!((a.as_deref(), t.as_str()), (Some("alice"), "x.y.z"));
        for bad in [
            &b"y,,\x01auth=Bearer t\x01\x01"[..],
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01host=h\x01\x01",
            b"n,,auth=Bearer t",
            b"n,,\x01auth=Bearer t",
            b"\xff",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jwks_urls() {
        assert_eq!(
            jwks_file("file:///etc/k.json").expect("parsed"),
            PathBuf::from("/etc/k.json")
        );
        assert_eq!(
            jwks_file("file:/k.json").expect("parsed"),
            PathBuf::from("/k.json")
        );
        assert!(jwks_file("https://idp/jwks").is_err());
        assert!(jwks_file("file:k.json").is_err());
    }
}
