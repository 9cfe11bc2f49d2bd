//! Project secrets at rest: AES-256-GCM with a random 96-bit nonce per value, the project and
//! secret name as associated data (a sealed value copied to another name does not open), and a
//! key id beside each ciphertext. The key is 32 random bytes kept in the data directory
//! (`secret.key`, mode 0600) or given as 64 hex digits in `KILN_SECRET_KEY`.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, aead};
use kiln_store::SealedSecret;
use sha2::{Digest, Sha256};

/// Why a key could not be loaded or a secret not opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or creating the key file failed.
    #[error("secret key file `{path}`: {source}")]
    KeyFile {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The key is not 64 hex digits.
    #[error("{0}: expected 64 hex digits (32 bytes)")]
    BadKey(String),
    /// The secret was sealed with another key.
    #[error("sealed with key {found}, but this server has key {expected}")]
    WrongKey {
        /// The key id stored with the secret.
        found: String,
        /// This server's key id.
        expected: String,
    },
    /// Encryption or decryption failed (tampered data, wrong name or project).
    #[error("cannot decrypt: the value was altered or belongs to another project or name")]
    Crypto,
    /// No randomness.
    #[error("no randomness available: {0}")]
    Entropy(String),
}

/// Seals and opens secret values with the server's key.
pub struct SecretBox {
    cipher: Aes256Gcm,
    key_id: String,
    /// The key, for [`SecretBox::derive_key`] only.
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SecretBox {
    /// A box over a 32-byte key.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        let cipher = Aes256Gcm::new_from_slice(key).expect("32 bytes is an AES-256 key");
        let key_id = hex::encode(&Sha256::digest(key)[..4]);
        SecretBox { cipher, key_id, key: *key }
    }

    /// The key from `KILN_SECRET_KEY` if set, else from `dir/secret.key`, created with a
    /// random key on first use.
    pub fn load_or_create(dir: &Path) -> Result<SecretBox, SecretError> {
        if let Ok(hexkey) = std::env::var("KILN_SECRET_KEY") {
            return Ok(SecretBox::new(&parse_key(hexkey.trim(), "KILN_SECRET_KEY")?));
        }
        let path = dir.join("secret.key");
        let shown = path.display().to_string();
        let err = |source| SecretError::KeyFile { path: shown.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(SecretBox::new(&parse_key(text.trim(), &shown)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| SecretError::Entropy(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(err)?;
                file.write_all(hex::encode(key).as_bytes()).map_err(err)?;
                file.sync_all().map_err(err)?;
                Ok(SecretBox::new(&key))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A key for `purpose` derived from this one (HMAC-SHA256 of the purpose): other
    /// purposes, such as signing tokens, never use the sealing key itself, and what they
    /// sign stays valid as long as the server keeps its key.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key)
            .expect("any key length");
        mac.update(format!("kiln-derive/v1/{purpose}").as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// This key's id (stored beside every value it seals).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Encrypts `value` for secret `name` of `project`.
    pub fn seal(
        &self,
        project: &str,
        name: &str,
        value: &str,
    ) -> Result<SealedSecret, SecretError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Entropy(e.to_string()))?;
        let aad = aad(project, name);
        let n = aead::Nonce::<Aes256Gcm>::try_from(&nonce[..]).expect("12 bytes");
        let ciphertext = self
            .cipher
            .encrypt(&n, Payload { msg: value.as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| SecretError::Crypto)?;
        Ok(SealedSecret { key_id: self.key_id.clone(), nonce: nonce.to_vec(), ciphertext })
    }

    /// Decrypts a value sealed by [`SecretBox::seal`] for the same project and name.
    pub fn open(
        &self,
        project: &str,
        name: &str,
        sealed: &SealedSecret,
    ) -> Result<String, SecretError> {
        if sealed.key_id != self.key_id {
            return Err(SecretError::WrongKey {
                found: sealed.key_id.clone(),
                expected: self.key_id.clone(),
            });
        }
        let n = aead::Nonce::<Aes256Gcm>::try_from(&sealed.nonce[..])
            .map_err(|_| SecretError::Crypto)?;
        let aad = aad(project, name);
        let plain = self
            .cipher
            .decrypt(&n, Payload { msg: &sealed.ciphertext, aad: aad.as_bytes() })
            .map_err(|_| SecretError::Crypto)?;
        String::from_utf8(plain).map_err(|_| SecretError::Crypto)
    }
}

fn aad(project: &str, name: &str) -> String {
    format!("kiln-secret/v1/{project}/{name}")
}

fn parse_key(text: &str, what: &str) -> Result<[u8; 32], SecretError> {
    let bytes = hex::decode(text).map_err(|_| SecretError::BadKey(what.to_string()))?;
    bytes.try_into().map_err(|_| SecretError::BadKey(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_project_and_name() {
        let b = SecretBox::new(&[7u8; 32]);
        let s = b.seal("api", "DB_PASSWORD", "hunter22").unwrap();
        assert!(!s.ciphertext.windows(8).any(|w| w == b"hunter22"));
        assert_eq!(b.open("api", "DB_PASSWORD", &s).unwrap(), "hunter22");
        assert!(matches!(b.open("web", "DB_PASSWORD", &s), Err(SecretError::Crypto)));
        assert!(matches!(b.open("api", "OTHER", &s), Err(SecretError::Crypto)));
        let other = SecretBox::new(&[8u8; 32]);
        assert!(matches!(other.open("api", "DB_PASSWORD", &s), Err(SecretError::WrongKey { .. })));
        let again = b.seal("api", "DB_PASSWORD", "hunter22").unwrap();
        assert_ne!(again.nonce, s.nonce, "every value gets its own nonce");
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load_or_create(dir.path()).unwrap();
        let sealed = a.seal("p", "N", "v").unwrap();
        let b = SecretBox::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open("p", "N", &sealed).unwrap(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                std::fs::metadata(dir.path().join("secret.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
