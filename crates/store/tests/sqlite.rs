//! What only the SQLite backend does: its files on disk.

use std::os::unix::fs::PermissionsExt;

use sipsim_core::Store;
use sipsim_store::SqliteStore;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_and_its_wal_and_shm_files_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sipsim.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // A write, so the WAL and its index exist.
    store.create_account("Acme").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("sipsim.db{suffix}"));
        assert!(file.exists(), "{} exists", file.display());
        assert_eq!(mode(&file), 0o600, "{} is 0600", file.display());
    }
    store.close().await;
}
