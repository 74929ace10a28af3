//! The fuzz targets' seed corpus, replayed through their properties on stable
//! (`cargo fuzz` itself needs nightly and is not part of `make test`). Every
//! input the fuzzer kept for new coverage is checked again on each change.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod props;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| property(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks the property",
            path.display()
        );
        count += 1;
    }
    assert!(
        count >= 10,
        "{target}: only {count} seed inputs in {}",
        dir.display()
    );
}

#[test]
fn return_to_seeds() {
    replay("return_to", props::return_to);
}

#[test]
fn callback_query_seeds() {
    replay("callback_query", props::callback_query);
}

#[test]
fn csrf_decision_seeds() {
    replay("csrf_decision", props::csrf_decision);
}

#[test]
fn logout_token_seeds() {
    replay("logout_token", props::logout_token);
}
