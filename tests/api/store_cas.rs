//! The compare-and-set rule itself, on each real store, with two copies of
//! one session in flight at once (what two concurrent requests hold): the
//! end-of-response save of the older copy writes nothing, and a save after
//! the session was ended never brings it back.

use std::time::Duration;

use gatehouse::{
    auth::session::index_entry,
    server::{clock::Clock, config::Config, store::AnyStore},
};
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    SessionStore,
};

use crate::{helpers::*, on_every_store};

async fn open(kind: StoreKind) -> (TestStore, AnyStore) {
    let store = TestStore::start(kind).await;
    let url = store.url.clone();
    let config = Config::from_lookup(&move |k: &str| (k == "SESSION_STORE").then(|| url.clone()))
        .expect("test config");
    let any = AnyStore::open(
        &config.session.store,
        Duration::from_secs(3600),
        index_entry,
        Clock::system(),
    )
    .await
    .unwrap();
    (store, any)
}

fn with(record: &Record, key: &str, value: &str) -> Record {
    let mut copy = record.clone();
    copy.data.insert(key.to_string(), Value::from(value));
    copy
}

async fn a_stale_copy_never_overwrites_or_recreates(kind: StoreKind) {
    let (_store, store) = open(kind).await;
    let mut record = Record {
        id: Id::default(),
        data: [("k".to_string(), Value::from("created"))].into(),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(5),
    };
    store.create(&mut record).await.unwrap();
    // Two requests load the same session.
    let first = store.load(&record.id).await.unwrap().unwrap();
    let second = store.load(&record.id).await.unwrap().unwrap();
    // The second saves first (say, a refresh); the first's save comes later.
    store.save(&with(&second, "k", "newer")).await.unwrap();
    store.save(&with(&first, "k", "older")).await.unwrap();
    let stored = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(
        stored.data["k"], "newer",
        "{kind:?}: an older copy overwrote a newer one"
    );
    // The session ends while a request holding the current copy is in flight.
    store.delete(&record.id).await.unwrap();
    store
        .save(&with(&stored, "k", "after the end"))
        .await
        .unwrap();
    assert!(
        store.load(&record.id).await.unwrap().is_none(),
        "{kind:?}: an ended session came back"
    );
}

on_every_store!(a_stale_copy_never_overwrites_or_recreates);
