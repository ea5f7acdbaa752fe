//! Opening stores: URL forms, directories created, refusals that say what to do.

use dth_store::{Error, MasterKey};

#[tokio::test]
async fn sqlite_url_forms_create_the_file_and_its_directories() {
    let temp = tempfile::tempdir().unwrap();
    for (i, form) in ["sqlite://", "sqlite:", ""].iter().enumerate() {
        let file = temp.path().join(format!("d{i}")).join("sub").join("dth.db");
        let url = format!("{form}{}", file.display());
        let store = dth_store::open(&url, MasterKey::generate()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        assert!(file.is_file(), "{url} created {}", file.display());
        // Opening again applies no migration twice.
        drop(store);
        let again = dth_store::open(&url, MasterKey::generate()).await.unwrap();
        assert_eq!(again.count_users().await.unwrap(), 0);
    }
}

/// Several processes may open one new SQLite store at once (a hub and its workers, a `--state`
/// sync and a reader): each open migrates, and none may fail on a table the other just made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_sqlite_store_opened_at_once_by_many_migrates_once() {
    for round in 0..5 {
        let temp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", temp.path().join("dth.db").display());
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { dth_store::open(&url, MasterKey::generate()).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(store.count_users().await.unwrap(), 0);
        }
    }
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let err = match dth_store::open("mysql://localhost/db", MasterKey::generate()).await {
        Err(e) => e,
        Ok(_) => panic!("mysql:// must be refused"),
    };
    assert!(matches!(err, Error::Db(_)));
    assert!(
        err.to_string()
            .contains("neither a postgres:// URL nor a SQLite file"),
        "{err}"
    );
}
