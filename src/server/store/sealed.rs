//! Session records sealed at rest. Two keys, either or both:
//!
//! - **the session's own key (`SESSION_KEY_IN_COOKIE`, on by default).** The
//!   cookie id, 128 random bits that only the browser keeps, is the secret:
//!   HKDF (RFC 5869) derives from it the key the store files the session
//!   under and the XChaCha20-Poly1305 key its record is sealed with. The
//!   store never holds the cookie id, so a copy of the SQLite file or of
//!   Redis — a backup, a replica, a stolen dump, even with the deployment's
//!   configuration — holds no cookie to present and no token to read (the
//!   design of oauth2-proxy's session tickets, with the id itself as the
//!   secret). Beside the sealed record, the store keeps what listing a
//!   user's sessions needs (`/sessions`, `/admin`: the session's handle,
//!   start, browser, IP and expiry), which is all the server can read of a
//!   session whose browser is not asking. The price: a session ended from
//!   elsewhere (back-channel logout, `/admin`, another device) cannot have
//!   its refresh token revoked at the IdP, since nobody can read it any
//!   more (README, Security).
//! - **a deployment key (`SESSION_ENCRYPTION_KEY`).** Wraps what is stored
//!   for each session — all of it, or with the session's own key on, the
//!   listing facts and the already sealed record — so that even those facts
//!   need the deployment's key. Keys rotate: the first listed key seals,
//!   every listed key opens, so a new key goes first and an old one stays
//!   listed until the sessions it sealed have expired (at most the absolute
//!   session lifetime) or been written again.
//!
//! Layouts: with the session's own key, `gh2\0`, the length of the facts
//! part (4 bytes, big-endian), the facts part (`(expiry, facts)` in
//! MessagePack), then the record part: a random 24-byte nonce and the
//! ciphertext of the record; each part is then wrapped by the deployment
//! key if one is set. The deployment key's wrapping is `gh1\0`, the key's id
//! (8 bytes: the start of the key's SHA-256), a random 24-byte nonce and the
//! ciphertext. The session's store key and the layout's prefix are
//! associated data throughout (and the facts part for the record part), so
//! nothing sealed for one session opens as another's. A record sealed with a key no longer listed, or altered, does
//! not open: the session is gone (fail closed). With no key at all, a record
//! is kept in the clear; one in the clear still reads once a deployment key
//! is set, and is sealed at its next write.
//!
//! The memory store keeps records in this process only and seals nothing.

use std::borrow::Cow;
use std::sync::Mutex;

use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use hkdf::Hkdf;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::{cache::CAPACITY, insert_bounded, IdMap};
use crate::server::config::EncryptionKey;

const MAGIC: &[u8; 4] = b"gh1\0";
const COOKIE_KEYED: &[u8; 4] = b"gh2\0";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;

/// Seals and opens stored records; [`Sealer::off`] does neither.
#[derive(Default)]
pub struct Sealer {
    /// The deployment's keys, newest first: `(key id, cipher)`.
    keys: Vec<([u8; KEY_ID_LEN], XChaCha20Poly1305)>,
    /// Whether each session's record is sealed with its own key, derived
    /// from its cookie id.
    cookie_keyed: bool,
    /// What [`Sealer::at_rest`] derived lately, by cookie id: its store key
    /// and record key. HKDF is a pure function of the id, so a remembered
    /// pair is never stale, and every signed-in request needs it before it
    /// can even look in the store's cache (without SHA extensions, e.g.
    /// under valgrind, deriving cost more than the rest of a cached read).
    /// It holds nothing this process does not already see on each request
    /// (the cookie) or keep in the store's cache (the opened record).
    derived: Mutex<IdMap<(Id, [u8; 32])>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealer({} keys, cookie keyed: {})",
            self.keys.len(),
            self.cookie_keyed
        )
    }
}

/// Where and how one session is kept at rest, from its cookie id.
pub struct AtRest {
    /// What the store files the session under: the cookie id itself, or with
    /// the session's own key, a key derived from it.
    pub key: Id,
    /// The session's own record key.
    cipher: Option<XChaCha20Poly1305>,
}

impl AtRest {
    /// Filed under its cookie id, sealed with no key of its own.
    pub fn plain(id: &Id) -> Self {
        Self {
            key: *id,
            cipher: None,
        }
    }
}

/// What the store can read of a session without its cookie: the facts the
/// auth core listed for it (`Indexer`), its expiry, and the whole record
/// when it is not sealed with its own key.
pub struct Listing {
    pub expiry_date: OffsetDateTime,
    pub facts: Option<Value>,
    pub record: Option<Record>,
}

/// Why a stored record did not open.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// Sealed with a key that is not listed (or none is).
    UnknownKey,
    /// Altered, truncated, or sealed for another session.
    Invalid,
    /// Sealed with a session's own key, which this store does not use.
    OwnKeyed,
    /// Not sealed with the session's own key, which this store requires.
    NotOwnKeyed,
}

impl Sealer {
    pub fn off() -> Self {
        Self::default()
    }

    /// Seals with the deployment's `keys` (none: no wrapping) and, when
    /// `cookie_keyed`, with each session's own key.
    pub fn new(keys: &[EncryptionKey], cookie_keyed: bool) -> Self {
        Self {
            cookie_keyed,
            keys: keys
                .iter()
                .map(|key| {
                    let digest = Sha256::digest(key.bytes());
                    let mut id = [0; KEY_ID_LEN];
                    id.copy_from_slice(&digest[..KEY_ID_LEN]);
                    (id, XChaCha20Poly1305::new(key.bytes().into()))
                })
                .collect(),
            derived: Mutex::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Where session `id` is kept and with which key of its own. HKDF with
    /// SHA-256 (RFC 5869 §3.3: the id is already uniformly random, the salt
    /// names this use) expands it into the store key and the record key;
    /// neither says anything of the other, nor of the id.
    pub fn at_rest(&self, id: &Id) -> AtRest {
        if !self.cookie_keyed {
            return AtRest::plain(id);
        }
        let remembered = self.remembered().get(id).copied();
        let (key, record_key) = remembered.unwrap_or_else(|| {
            let derived = derive(id);
            // An evicted one is derived again if it comes back.
            insert_bounded(&mut self.remembered(), CAPACITY, *id, derived);
            derived
        });
        AtRest {
            key,
            cipher: Some(XChaCha20Poly1305::new(&record_key.into())),
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, IdMap<(Id, [u8; 32])>> {
        // A poisoned map still holds only correct derivations.
        self.derived.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `plain` sealed with the newest key for session `id` (the id is
    /// associated data: a sealed record copied to another session's key in
    /// the store does not open there); unchanged when sealing is off.
    pub fn seal(&self, plain: Vec<u8>, id: &str) -> Vec<u8> {
        let Some((key_id, cipher)) = self.keys.first() else {
            return plain;
        };
        let sealed = encrypt(cipher, &plain, &associated(key_id, id));
        let mut out = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(key_id);
        out.extend_from_slice(&sealed);
        out
    }

    /// The record bytes of `stored`, the stored form of session `id`.
    pub fn open<'a>(&self, stored: &'a [u8], id: &str) -> Result<Cow<'a, [u8]>, Unsealed> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            // In the clear: written before sealing was on.
            return Ok(Cow::Borrowed(stored));
        };
        let (key_id, sealed) = rest
            .split_first_chunk::<KEY_ID_LEN>()
            .ok_or(Unsealed::Invalid)?;
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or(Unsealed::UnknownKey)?;
        decrypt(cipher, sealed, &associated(key_id, id))
            .map(Cow::Owned)
            .ok_or(Unsealed::Invalid)
    }
}

impl Sealer {
    /// A session record as the SQLite and Redis stores keep it: MessagePack
    /// (as tower-sessions' stores encode records), sealed; with the
    /// session's own key, beside the `facts` it is listed by.
    pub fn seal_record(
        &self,
        record: &Record,
        at: &AtRest,
        facts: Option<&Value>,
    ) -> session_store::Result<Vec<u8>> {
        let plain =
            rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let key = at.key.to_string();
        let Some(cipher) = &at.cipher else {
            return Ok(self.seal(plain, &key));
        };
        let listed = rmp_serde::to_vec(&(record.expiry_date.unix_timestamp(), facts))
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let listed = self.seal(listed, &facts_aad(&key));
        let own = self.seal(encrypt(cipher, &plain, &record_aad(&key, &listed)), &key);
        let mut out = Vec::with_capacity(COOKIE_KEYED.len() + 4 + listed.len() + own.len());
        out.extend_from_slice(COOKIE_KEYED);
        out.extend_from_slice(&(listed.len() as u32).to_be_bytes());
        out.extend_from_slice(&listed);
        out.extend_from_slice(&own);
        Ok(out)
    }

    /// The record stored for the session at `at`; `None` when it does not
    /// open (a key no longer listed, altered, or sealed with another
    /// session's key or with none while sessions have their own: the
    /// session is gone, and the log says why without any of it).
    pub fn open_record(&self, stored: &[u8], at: &AtRest) -> session_store::Result<Option<Record>> {
        let key = at.key.to_string();
        let plain = match (&at.cipher, split_cookie_keyed(stored)) {
            (Some(cipher), Some((listed, own))) => self.open(own, &key).and_then(|own| {
                decrypt(cipher, &own, &record_aad(&key, listed)).ok_or(Unsealed::Invalid)
            }),
            (Some(_), None) => Err(Unsealed::NotOwnKeyed),
            (None, Some(_)) => Err(Unsealed::OwnKeyed),
            (None, None) => self.open(stored, &key).map(Cow::into_owned),
        };
        let plain = match plain {
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

    /// What can be read of the session stored at `key` without its cookie
    /// (`None` when not even that opens).
    pub fn open_listing(&self, stored: &[u8], key: &Id) -> Option<Listing> {
        let key = key.to_string();
        let Some((listed, _)) = split_cookie_keyed(stored) else {
            let plain = self.open(stored, &key).ok()?;
            let record: Record = rmp_serde::from_slice(&plain).ok()?;
            return Some(Listing {
                expiry_date: record.expiry_date,
                facts: None,
                record: Some(record),
            });
        };
        let listed = self.open(listed, &facts_aad(&key)).ok()?;
        let (expiry, facts): (i64, Option<Value>) = rmp_serde::from_slice(&listed).ok()?;
        Some(Listing {
            expiry_date: OffsetDateTime::from_unix_timestamp(expiry).ok()?,
            facts,
            record: None,
        })
    }
}

/// Session `id`'s store key and record key (see [`Sealer::at_rest`]).
fn derive(id: &Id) -> (Id, [u8; 32]) {
    let kdf = Hkdf::<Sha256>::new(Some(b"gatehouse session v1"), &id.0.to_be_bytes());
    let mut key = [0; 16];
    let mut record_key = [0; 32];
    kdf.expand(b"store key", &mut key)
        .and_then(|()| kdf.expand(b"record key", &mut record_key))
        .expect("HKDF-SHA256 expands to 48 bytes");
    (Id(i128::from_be_bytes(key)), record_key)
}

/// The facts part and the record part of a `gh2` layout.
fn split_cookie_keyed(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = stored.strip_prefix(COOKIE_KEYED.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// `msg` sealed with `cipher`: a random 24-byte nonce, then the ciphertext
/// with its tag; `aad` is authenticated, not stored. Both keys seal this way.
fn encrypt(cipher: &XChaCha20Poly1305, msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut rand_core::OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg, aad })
        .expect("XChaCha20-Poly1305 seals any message this size");
    [nonce.as_slice(), &sealed].concat()
}

/// What [`encrypt`] sealed; `None` when cut short, altered, or sealed with
/// another key or other associated data.
fn decrypt(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let (nonce, msg) = sealed.split_first_chunk::<NONCE_LEN>()?;
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        .ok()
}

/// The record part authenticates the facts part beside it too (which
/// without a deployment key is in the clear): neither is altered or
/// swapped without the record failing to open.
fn record_aad(key: &str, listed: &[u8]) -> Vec<u8> {
    [COOKIE_KEYED.as_slice(), key.as_bytes(), b"\0", listed].concat()
}

/// The deployment key wraps the facts part under another name than the
/// record part, so neither opens as the other.
fn facts_aad(key: &str) -> String {
    format!("facts:{key}")
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
        let old = Sealer::new(&[key(1)], false);
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
        let rotated = Sealer::new(&[key(2), key(1)], false);
        assert_eq!(
            rotated.open(&sealed, "session-a").unwrap().as_ref(),
            b"the record"
        );
        let resealed = rotated.seal(b"the record".to_vec(), "session-a");
        assert_eq!(old.open(&resealed, "session-a"), Err(Unsealed::UnknownKey));
        // The old key dropped: what it sealed is gone.
        assert_eq!(
            Sealer::new(&[key(2)], false).open(&sealed, "session-a"),
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
        let on = Sealer::new(&[key(1)], false);
        assert_eq!(on.open(b"plain", "s").unwrap().as_ref(), b"plain");
        assert_eq!(format!("{on:?}"), "Sealer(1 keys, cookie keyed: false)");
    }

    /// Derivations are remembered for the sessions seen lately, at most
    /// [`CAPACITY`] of them, and a remembered one is the derivation itself.
    #[test]
    fn derived_keys_are_remembered_within_bounds_and_never_differ() {
        let sealer = Sealer::new(&[], true);
        let first = Id::default();
        let at = sealer.at_rest(&first);
        for _ in 0..CAPACITY {
            sealer.at_rest(&Id::default());
        }
        assert_eq!(sealer.remembered().len(), CAPACITY);
        for id in [first, Id::default()] {
            let (key, record_key) = derive(&id);
            let at = sealer.at_rest(&id);
            assert_eq!(at.key, key);
            assert_eq!(sealer.remembered().get(&id), Some(&(key, record_key)));
        }
        assert_eq!(sealer.at_rest(&first).key, at.key);
    }

    fn signed_in(id: Id) -> Record {
        Record {
            id,
            data: [("tokens".to_string(), Value::from("refresh-token-secret"))].into(),
            expiry_date: OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap(),
        }
    }

    /// With the session's own key, the store's copy names neither the
    /// cookie id nor any token; only that id opens it, and the listing
    /// facts read without it (with the deployment key, only with that).
    #[test]
    fn records_sealed_with_their_own_key_open_only_with_their_cookie_id() {
        let facts = serde_json::json!({"handle": "h1", "ip": "192.0.2.1"});
        for deployment in [vec![], vec![key(1)]] {
            let sealer = Sealer::new(&deployment, true);
            let id = Id::default();
            let record = signed_in(id);
            let at = sealer.at_rest(&id);
            assert_ne!(at.key, id, "filed under a key derived from the id");
            assert_eq!(sealer.at_rest(&id).key, at.key, "the same key every time");
            assert_eq!(
                Sealer::new(&deployment, true).at_rest(&id).key,
                at.key,
                "the same key in another process, or after a restart"
            );
            let stored = sealer.seal_record(&record, &at, Some(&facts)).unwrap();
            let text = String::from_utf8_lossy(&stored);
            assert!(!text.contains("refresh-token-secret"));
            assert!(!text.contains(&id.to_string()) && !text.contains(&at.key.to_string()));
            assert_eq!(text.contains("192.0.2.1"), deployment.is_empty());

            let opened = sealer.open_record(&stored, &at).unwrap().expect("opens");
            assert_eq!(opened.data, record.data);
            assert_eq!(opened.id, id);
            // Another session's id (its key, its store key) does not open it,
            // nor does this id when the record is filed under another key.
            let other = sealer.at_rest(&Id::default());
            assert!(sealer.open_record(&stored, &other).unwrap().is_none());
            let misfiled = AtRest {
                key: other.key,
                cipher: at.cipher.clone(),
            };
            assert!(sealer.open_record(&stored, &misfiled).unwrap().is_none());
            // Altered anywhere: does not open.
            for at_byte in [10, stored.len() - 1] {
                let mut altered = stored.clone();
                altered[at_byte] ^= 1;
                assert!(sealer.open_record(&altered, &at).unwrap().is_none());
            }

            let listing = sealer.open_listing(&stored, &at.key).expect("listed");
            assert_eq!(listing.facts, Some(facts.clone()));
            assert_eq!(listing.expiry_date, record.expiry_date);
            assert!(listing.record.is_none(), "the record needs the cookie");
            if !deployment.is_empty() {
                assert!(sealer.open_listing(&stored, &other.key).is_none());
            }
            // A store that does not key by cookie reads none of it.
            let server_only = Sealer::new(&deployment, false);
            assert!(server_only
                .open_record(&stored, &AtRest::plain(&at.key))
                .unwrap()
                .is_none());
        }
        // Sealed without the session's own key: refused where it is required.
        let plain = Sealer::off();
        let id = Id::default();
        let stored = plain
            .seal_record(&signed_in(id), &AtRest::plain(&id), None)
            .unwrap();
        let keyed = Sealer::new(&[], true);
        assert!(keyed
            .open_record(&stored, &keyed.at_rest(&id))
            .unwrap()
            .is_none());
        let listing = keyed
            .open_listing(&stored, &id)
            .expect("a readable record lists");
        assert!(listing.record.is_some() && listing.facts.is_none());
    }
}
