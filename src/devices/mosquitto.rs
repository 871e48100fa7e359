//! Device secrets in Mosquitto's password-file format, so that a Mosquitto broker can check
//! device credentials itself (`homeward admin export-mosquitto`).
//!
//! Mosquitto 2.0 stores a password as `$7$<iterations>$<base64 salt>$<base64 hash>`: type 7 is
//! PBKDF2-HMAC-SHA512 with a 64-byte output, and `mosquitto_passwd` uses 101 iterations and a
//! 12-byte random salt (standard base64 with padding). A hash is made once, when a secret is
//! created or rotated, because Homeward keeps no secret it could hash later. The low iteration
//! count is Mosquitto's own default and costs nothing here: a device secret is 256 random
//! bits, which no guessing reaches however cheap each guess is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pbkdf2::sha2::Sha512;
use rand::RngCore;

/// Mosquitto's hash type for PBKDF2-HMAC-SHA512.
const HASH_TYPE: u32 = 7;
/// `mosquitto_passwd`'s default number of iterations.
pub const ITERATIONS: u32 = 101;
/// Bytes of random salt, as `mosquitto_passwd` makes them.
const SALT_LEN: usize = 12;
/// SHA-512's output, the length Mosquitto derives and compares.
const HASH_LEN: usize = 64;

/// `secret` hashed for a Mosquitto password file, with a fresh random salt.
pub fn hash(secret: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    hash_with(secret, &salt, ITERATIONS)
}

fn hash_with(secret: &str, salt: &[u8], iterations: u32) -> String {
    let derived =
        pbkdf2::pbkdf2_hmac_array::<Sha512, HASH_LEN>(secret.as_bytes(), salt, iterations);
    format!(
        "${HASH_TYPE}${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(derived)
    )
}

/// Does `stored` (a type-7 Mosquitto hash) match `secret`? Checked as Mosquitto checks it:
/// derive with the stored salt and iterations, compare with the stored hash.
pub fn verify(stored: &str, secret: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let ["", "7", iterations, salt, expected] = parts[..] else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(expected),
    ) else {
        return false;
    };
    if iterations == 0 || expected.len() != HASH_LEN {
        return false;
    }
    let derived =
        pbkdf2::pbkdf2_hmac_array::<Sha512, HASH_LEN>(secret.as_bytes(), &salt, iterations);
    crate::secret::hashes_equal(&derived, &expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Pinned against an independent PBKDF2 (Python's `hashlib.pbkdf2_hmac("sha512", ...)`)
    /// with salt bytes 1 to 12.
    #[test]
    fn the_format_is_mosquittos() {
        let salt: Vec<u8> = (1..=12).collect();
        assert_eq!(
            hash_with(SECRET, &salt, 101),
            "$7$101$AQIDBAUGBwgJCgsM$uwypYxxZVPGdjoGUyNN1Zhg/npuVxwdRJg1+Dp8KvEvKfIwlbF1sbmy25jCa\
             iQEo0pVR4qFUO3otLSL03+S39g=="
        );
    }

    /// A line `mosquitto_passwd -b` (Mosquitto 2.0.11) wrote for the same secret.
    #[test]
    fn mosquitto_passwd_hashes_verify() {
        let written =
            "$7$101$/xocbkA6Ok+HFTnC$o/fJpF9q7BUpWbvr1SdsjKzouh7FC+zyinS937orDBPvtYIoQH5B+\
                       F8yFXMrbL58Ex8p1Yb1jL8mhj4mfqfIkA==";
        assert!(verify(written, SECRET));
        assert!(!verify(written, "0123"));
    }

    #[test]
    fn each_hash_has_its_own_salt_and_verifies() {
        let (a, b) = (hash(SECRET), hash(SECRET));
        assert_ne!(a, b);
        assert!(a.starts_with("$7$101$"));
        let parts: Vec<&str> = a.split('$').collect();
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), SALT_LEN);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), HASH_LEN);
        assert!(verify(&a, SECRET) && verify(&b, SECRET));
        assert!(!verify(&a, "another secret"));
        for bad in [
            "",
            "$7$101$x",
            "$6$abc$def",
            "$7$0$AQID$AAAA",
            "$7$101$!!$AAAA",
        ] {
            assert!(!verify(bad, SECRET), "{bad}");
        }
    }
}
