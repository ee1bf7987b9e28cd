//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), as Kafka serves
//! them (KIP-84): no channel binding, usernames in SASLprep-free form with `=2C`/`=3D`
//! escapes, credentials from the metadata log ([`ScramCredential`], KIP-554).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use moldau_metadata::{ScramCredential, ScramMechanism};
use moldau_protocol::scram::{self as primitives, ScramHash};
use subtle::ConstantTimeEq;

/// Kafka's bounds on Hi() iterations (`ScramMechanism.minIterations` /
/// `maxIterations`).
pub const MIN_ITERATIONS: i32 = 4096;
/// See [`MIN_ITERATIONS`].
pub const MAX_ITERATIONS: i32 = 16384;

fn hash_of(mechanism: ScramMechanism) -> ScramHash {
    match mechanism {
        ScramMechanism::Sha256 => ScramHash::Sha256,
        ScramMechanism::Sha512 => ScramHash::Sha512,
    }
}

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    primitives::hmac(hash_of(mechanism), key, data)
}

fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    primitives::hash(hash_of(mechanism), data)
}

/// The stored credential for a salted password (`Hi(password, salt, iterations)`, as
/// AlterUserScramCredentials carries it).
pub fn credential_from_salted(
    mechanism: ScramMechanism,
    salt: &[u8],
    salted_password: &[u8],
    iterations: i32,
) -> ScramCredential {
    let h = hash_of(mechanism);
    ScramCredential {
        mechanism,
        salt: salt.to_vec(),
        stored_key: primitives::hash(h, &primitives::client_key(h, salted_password)),
        server_key: primitives::server_key(h, salted_password),
        iterations,
    }
}

/// `Hi(password, salt, iterations)`: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    primitives::salted_password(hash_of(mechanism), password, salt, iterations)
}

/// Why an exchange failed. The message goes to the log; the client is told only that
/// authentication failed.
#[derive(Debug, PartialEq, Eq)]
pub struct ScramError(pub String);

/// Where an exchange stands after the client's first message.
#[derive(Debug)]
pub struct ServerFirst {
    mechanism: ScramMechanism,
    /// The authenticated-to-be user name (unescaped).
    pub user: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
    credential: Option<ScramCredential>,
}

/// Decodes a `saslname` (`=2C` is `,`, `=3D` is `=`; any other `=` is an error).
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError(format!("bad escape in user name {name:?}"))),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Handles `client-first-message`. `lookup` finds the user's credential for the
/// mechanism; a user without one still gets a server-first message (with a made-up salt)
/// and fails at the proof, so the exchange does not tell which users exist.
pub fn client_first(
    mechanism: ScramMechanism,
    message: &[u8],
    lookup: impl FnOnce(&str) -> Option<ScramCredential>,
) -> Result<(ServerFirst, Vec<u8>), ScramError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ScramError("client-first-message is not UTF-8".into()))?;
    // gs2-header: "n,," or "y,," (no channel binding), optionally with "a=authzid".
    let mut parts = text.splitn(3, ',');
    let cbind = parts.next().unwrap_or_default();
    let authzid = parts.next().unwrap_or_default();
    let bare = parts
        .next()
        .ok_or_else(|| ScramError("client-first-message lacks a gs2 header".into()))?;
    match cbind {
        "n" | "y" => {}
        _ => return Err(ScramError("channel binding is not supported".into())),
    }
    let mut user = None;
    let mut client_nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = Some(decode_saslname(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            client_nonce = Some(v.to_owned());
        } else if attr.starts_with("m=") {
            return Err(ScramError("mandatory extension not supported".into()));
        }
    }
    let user = user.ok_or_else(|| ScramError("no user name (n=)".into()))?;
    let client_nonce = client_nonce
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScramError("no client nonce (r=)".into()))?;
    if let Some(id) = authzid.strip_prefix("a=") {
        if decode_saslname(id)? != user {
            return Err(ScramError(
                "an authorization id different from the user name".into(),
            ));
        }
    }
    let credential = lookup(&user);
    // An unknown user gets the same made-up salt every time, so two attempts do not
    // tell it apart from a real one.
    let salt = match &credential {
        Some(c) => c.salt.clone(),
        None => fake_salt(&user),
    };
    let iterations = credential.as_ref().map_or(MIN_ITERATIONS, |c| c.iterations);
    // Alphanumeric, as Kafka's nonces are: some clients mishandle '=' or '/' in one.
    let server_nonce: String = random_bytes(24)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
    let reply = server_first.clone().into_bytes();
    Ok((
        ServerFirst {
            mechanism,
            user,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            gs2_header: format!("{cbind},{authzid},"),
            credential,
        },
        reply,
    ))
}

impl ServerFirst {
    /// Handles `client-final-message`: checks the channel binding echo, the nonce and
    /// the proof. Returns the `server-final-message` (`v=…`).
    pub fn client_final(self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message)
            .map_err(|_| ScramError("client-final-message is not UTF-8".into()))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| ScramError("client-final-message has no proof".into()))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if binding != Some(B64.encode(self.gs2_header.as_bytes()).as_str()) {
            return Err(ScramError(
                "channel binding does not match the gs2 header".into(),
            ));
        }
        // Kafka accepts a nonce that ends with the one it sent (librdkafka before 2.2
        // sends its client nonce twice); the proof still covers the message as sent.
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError("nonce does not match".into()));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError("proof is not base64".into()))?;
        let Some(credential) = self.credential else {
            return Err(ScramError(format!(
                "no {} credential for user {}",
                self.mechanism.name(),
                self.user
            )));
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hmac(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        if proof.len() != client_signature.len() {
            return Err(ScramError("proof has the wrong length".into()));
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let stored = hash(self.mechanism, &client_key);
        if !bool::from(stored.ct_eq(&credential.stored_key)) {
            return Err(ScramError(format!("wrong password for user {}", self.user)));
        }
        let server_signature = hmac(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// A salt for a user without a credential: HMAC of the name under a secret drawn once
/// per process.
fn fake_salt(user: &str) -> Vec<u8> {
    static SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let secret = SECRET.get_or_init(|| random_bytes(32));
    primitives::hmac(ScramHash::Sha256, secret, user.as_bytes())[..16].to_vec()
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut out = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example exchange (user "user", password "pencil").
    #[test]
    fn rfc_7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let salted = salted_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let credential = credential_from_salted(ScramMechanism::Sha256, &salt, &salted, 4096);
        let (mut first, _) = client_first(
            ScramMechanism::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| credential.clone()),
        )
        .expect("first");
        // Replay the RFC's server nonce so the RFC's proof applies.
        first.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        first.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", first.nonce);
        let reply = first
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .expect("proof accepted");
        assert_eq!(
            reply,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_at_the_proof() {
        let salt = b"salt".to_vec();
        let salted = salted_password(ScramMechanism::Sha512, b"right", &salt, 4096);
        let credential = credential_from_salted(ScramMechanism::Sha512, &salt, &salted, 4096);
        for (user, password) in [("alice", "wrong"), ("nobody", "right")] {
            let first_msg = format!("n,,n={user},r=abc");
            let (first, reply) = client_first(ScramMechanism::Sha512, first_msg.as_bytes(), |u| {
                (u == "alice").then(|| credential.clone())
            })
            .expect("first");
            let reply = String::from_utf8(reply).expect("utf8");
            let nonce = reply
                .split(',')
                .find_map(|a| a.strip_prefix("r="))
                .expect("nonce");
            let salted = salted_password(ScramMechanism::Sha512, password.as_bytes(), &salt, 4096);
            let client_key = hmac(ScramMechanism::Sha512, &salted, b"Client Key");
            let stored = hash(ScramMechanism::Sha512, &client_key);
            let without_proof = format!("c=biws,r={nonce}");
            let auth = format!("n={user},r=abc,{reply},{without_proof}");
            let sig = hmac(ScramMechanism::Sha512, &stored, auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let last = format!("{without_proof},p={}", B64.encode(proof));
            assert!(first.client_final(last.as_bytes()).is_err(), "{user}");
        }
    }

    #[test]
    fn names_and_headers() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").expect("ok"), "a,b=c");
        assert!(decode_saslname("a=2").is_err());
        assert!(client_first(ScramMechanism::Sha256, b"p=tls-unique,,n=u,r=x", |_| None).is_err());
        assert!(client_first(ScramMechanism::Sha256, b"n,,n=u", |_| None).is_err());
        assert!(client_first(ScramMechanism::Sha256, b"n,a=v,n=u,r=x", |_| None).is_err());
    }
}
