//! Session records sealed at rest (`SESSION_ENCRYPTION_KEY`): what the
//! SQLite file or Redis holds for a session is XChaCha20-Poly1305 ciphertext
//! of the whole encoded record (tokens, DPoP key, name, e-mail, IP, user
//! agent), so a copy of the data — a backup, a replica, a stolen dump —
//! yields no usable token without the key, which lives only in the
//! deployment's configuration. The owner index (`sub`, `sid`) stays beside
//! it in the clear: back-channel logout and "end all sessions" look it up.
//!
//! Layout: `gh1\0`, the key's id (8 bytes: the start of the key's SHA-256),
//! a random 24-byte nonce, the ciphertext with its tag; the prefix and key id
//! are authenticated as associated data. Keys rotate: the first listed key
//! seals, every listed key opens, so a new key goes first and an old one
//! stays listed until the sessions it sealed have expired (at most the
//! absolute session lifetime) or been written again. A record sealed with a
//! key no longer listed, or altered, does not open: the session is gone
//! (fail closed). A record in the clear (written before a key was set)
//! still reads and is sealed at its next write; with no key set, a sealed
//! record does not read.
//!
//! The memory store keeps records in this process only and does not seal.

use std::borrow::Cow;

use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use crate::server::config::EncryptionKey;

const MAGIC: &[u8; 4] = b"gh1\0";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;

/// Seals and opens stored records; [`Sealer::off`] does neither.
#[derive(Default)]
pub struct Sealer {
    /// Newest first: `(key id, cipher)`.
    keys: Vec<([u8; KEY_ID_LEN], XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

/// Why a stored record did not open.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// Sealed with a key that is not listed (or none is).
    UnknownKey,
    /// Altered, truncated, or sealed for another session.
    Invalid,
}

impl Sealer {
    pub fn off() -> Self {
        Self::default()
    }

    pub fn new(keys: &[EncryptionKey]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|key| {
                    let digest = Sha256::digest(key.bytes());
                    let mut id = [0; KEY_ID_LEN];
                    id.copy_from_slice(&digest[..KEY_ID_LEN]);
                    (id, XChaCha20Poly1305::new(key.bytes().into()))
                })
                .collect(),
        }
    }

    pub fn is_on(&self) -> bool {
        !self.keys.is_empty()
    }

    /// `plain` sealed with the newest key for session `id` (the id is
    /// associated data: a sealed record copied to another session's key in
    /// the store does not open there); unchanged when sealing is off.
    pub fn seal(&self, plain: Vec<u8>, id: &str) -> Vec<u8> {
        let Some((key_id, cipher)) = self.keys.first() else {
            return plain;
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand_core::OsRng);
        let aad = associated(key_id, id);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message this size");
        let mut out = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The record bytes of `stored`, the stored form of session `id`.
    pub fn open<'a>(&self, stored: &'a [u8], id: &str) -> Result<Cow<'a, [u8]>, Unsealed> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            // In the clear: written before sealing was on.
            return Ok(Cow::Borrowed(stored));
        };
        if rest.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(Unsealed::Invalid);
        }
        let (key_id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id.as_slice() == key_id)
            .ok_or(Unsealed::UnknownKey)?;
        let key_id: [u8; KEY_ID_LEN] = key_id.try_into().map_err(|_| Unsealed::Invalid)?;
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &associated(&key_id, id),
                },
            )
            .map(Cow::Owned)
            .map_err(|_| Unsealed::Invalid)
    }
}

impl Sealer {
    /// A session record as the SQLite and Redis stores keep it: MessagePack
    /// (as tower-sessions' stores encode records), sealed.
    pub fn seal_record(&self, record: &Record) -> session_store::Result<Vec<u8>> {
        let plain =
            rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        Ok(self.seal(plain, &record.id.to_string()))
    }

    /// The record stored for session `id`; `None` when it does not open
    /// (a key no longer listed, or altered: the session is gone, and the
    /// log says why without any of it).
    pub fn open_record(&self, stored: &[u8], id: &Id) -> session_store::Result<Option<Record>> {
        let plain = match self.open(stored, &id.to_string()) {
            Ok(plain) => plain,
            Err(why) => {
                tracing::warn!(?why, "a stored session did not open: treated as ended");
                return Ok(None);
            }
        };
        rmp_serde::from_slice(&plain)
            .map(Some)
            .map_err(|e| session_store::Error::Decode(e.to_string()))
    }
}

fn associated(key_id: &[u8; KEY_ID_LEN], id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + id.len());
    aad.extend_from_slice(MAGIC);
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes([byte; 32])
    }

    #[test]
    fn sealed_records_open_with_a_listed_key_for_their_own_session_only() {
        let old = Sealer::new(&[key(1)]);
        let sealed = old.seal(b"the record".to_vec(), "session-a");
        assert!(!sealed.windows(6).any(|w| w == b"record"), "no plaintext");
        assert_eq!(
            old.open(&sealed, "session-a").unwrap().as_ref(),
            b"the record"
        );
        assert_ne!(
            sealed,
            old.seal(b"the record".to_vec(), "session-a"),
            "fresh nonce"
        );

        // Rotation: the new key seals, the old one still opens.
        let rotated = Sealer::new(&[key(2), key(1)]);
        assert_eq!(
            rotated.open(&sealed, "session-a").unwrap().as_ref(),
            b"the record"
        );
        let resealed = rotated.seal(b"the record".to_vec(), "session-a");
        assert_eq!(old.open(&resealed, "session-a"), Err(Unsealed::UnknownKey));
        // The old key dropped: what it sealed is gone.
        assert_eq!(
            Sealer::new(&[key(2)]).open(&sealed, "session-a"),
            Err(Unsealed::UnknownKey)
        );
        assert_eq!(
            Sealer::off().open(&sealed, "session-a"),
            Err(Unsealed::UnknownKey)
        );

        // Moved to another session, altered, or cut short: does not open.
        assert_eq!(old.open(&sealed, "session-b"), Err(Unsealed::Invalid));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(old.open(&altered, "session-a"), Err(Unsealed::Invalid));
        assert_eq!(old.open(&sealed[..20], "session-a"), Err(Unsealed::Invalid));
    }

    #[test]
    fn without_a_key_records_stay_in_the_clear_and_clear_ones_still_read() {
        let off = Sealer::off();
        assert_eq!(off.seal(b"plain".to_vec(), "s"), b"plain");
        let on = Sealer::new(&[key(1)]);
        assert_eq!(on.open(b"plain", "s").unwrap().as_ref(), b"plain");
        assert_eq!(format!("{on:?}"), "Sealer(1 keys)");
    }
}
