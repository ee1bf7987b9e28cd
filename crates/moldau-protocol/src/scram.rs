//! SCRAM's primitives (RFC 5802 section 3) for the two mechanisms Kafka serves,
//! SCRAM-SHA-256 and SCRAM-SHA-512 (KIP-84): the broker derives and checks stored keys
//! with them, the client computes proofs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SHA-256 (`SCRAM-SHA-256`, RFC 7677).
    Sha256,
    /// SHA-512 (`SCRAM-SHA-512`).
    Sha512,
}

/// `HMAC(key, data)`.
pub fn hmac(h: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    match h {
        ScramHash::Sha256 => match <Hmac<Sha256>>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        ScramHash::Sha512 => match <Hmac<Sha512>>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    }
}

/// `H(data)`.
pub fn hash(h: ScramHash, data: &[u8]) -> Vec<u8> {
    match h {
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// `Hi(password, salt, iterations)`: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(h: ScramHash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match h {
        ScramHash::Sha256 => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
        ScramHash::Sha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }
}

/// `ClientKey := HMAC(SaltedPassword, "Client Key")`.
pub fn client_key(h: ScramHash, salted_password: &[u8]) -> Vec<u8> {
    hmac(h, salted_password, b"Client Key")
}

/// `ServerKey := HMAC(SaltedPassword, "Server Key")`.
pub fn server_key(h: ScramHash, salted_password: &[u8]) -> Vec<u8> {
    hmac(h, salted_password, b"Server Key")
}

/// Encodes a user name as a `saslname` (`,` as `=2C`, `=` as `=3D`).
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// XOR of two equally long byte strings (`ClientProof := ClientKey XOR ClientSignature`).
pub fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}
