//! The group writer: commits shared, failures kept apart, syncs only where needed.

use crate::domain::{ChatRef, Role};
use crate::store::{Conversation, NewMessage, Store};

/// A fresh store in a directory of its own (kept while the test runs).
async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_and_migrate(dir.path()).await.unwrap();
    (dir, store)
}

/// The console chat's conversation with Operator.
async fn conversation(store: &Store) -> Conversation {
    let chat = ChatRef::new("console", "1");
    store.open_conversation(&chat, "operator").await.unwrap()
}

/// Writes queued together share a commit; one that fails (a message for a conversation that
/// does not exist) gets its own error and takes no other write with it.
#[tokio::test]
async fn writes_share_a_commit_and_a_failing_one_fails_alone() {
    let (_dir, store) = store().await;
    let conversation = conversation(&store).await;
    let (_, commits_before) = crate::store::counters::totals();
    // On this single-threaded runtime every write is queued before the writer task runs.
    let writes = (0..40).map(|i| {
        let store = store.clone();
        let id = if i == 17 { 9_999_999 } else { conversation.id };
        async move {
            store
                .append_message(id, Role::Assistant, &NewMessage::text(format!("m{i}")))
                .await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    let (_, commits_after) = crate::store::counters::totals();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), i != 17, "write {i}: {result:?}");
    }
    let stored = store.messages_after(conversation.id, 0).await.unwrap();
    let texts: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
    let expected: Vec<String> = (0..40)
        .filter(|i| *i != 17)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(texts, expected, "every good write landed, in order");
    // The batch was rolled back and its writes run one by one: 39 commits at most; without
    // the failing write they would have shared one (checked next).
    assert!(commits_after - commits_before <= 39);
    let (_, before) = crate::store::counters::totals();
    let writes = (0..40).map(|i| {
        let store = store.clone();
        async move {
            let text = NewMessage::text(format!("n{i}"));
            store
                .append_message(conversation.id, Role::User, &text)
                .await
        }
    });
    for result in futures_util::future::join_all(writes).await {
        result.unwrap();
    }
    let (_, after) = crate::store::counters::totals();
    assert!(
        after - before <= 2,
        "40 writes took {} commits",
        after - before
    );
    store.close().await;
}

/// How commits are synced, seen from inside a write: 2 is FULL, 1 NORMAL.
fn synchronous(_: &(), db: &mut super::Db) -> crate::store::Result<Option<i64>> {
    db.query_i64("PRAGMA synchronous", &[])
}

/// A write nobody waits for whose place does not matter (an activity entry) waits past a
/// visible write's unsynced commit for a synced one; one that keeps its place (a received
/// update) joins the visible write's batch, which is then synced for it.
#[tokio::test]
async fn writes_of_any_place_wait_past_an_unsynced_commit() {
    let (_dir, store) = store().await;
    let writer = &store.writer;
    let alone = super::Alone::OneStatement;
    let any = writer.submit_lazily(super::Place::Any, alone, (), synchronous);
    assert_eq!(
        writer.write_visible(alone, (), synchronous).await.unwrap(),
        Some(1),
        "an activity entry made a person's message sync"
    );
    assert_eq!(writer.write(alone, (), synchronous).await.unwrap(), Some(2));
    assert_eq!(any.await.unwrap(), Some(2), "it is committed synced");

    let kept = writer.submit_lazily(super::Place::Kept, alone, (), synchronous);
    assert_eq!(
        writer.write_visible(alone, (), synchronous).await.unwrap(),
        Some(2)
    );
    assert_eq!(kept.await.unwrap(), Some(2));
    store.close().await;
}

/// A write that only needs to be visible commits without its own sync, and the connection
/// goes back to syncing every commit; sharing a batch with a durable write, it is synced
/// with it. A person's message, stored this way, is visible at once.
#[tokio::test]
async fn visible_writes_skip_the_sync_and_leave_commits_synced() {
    let (_dir, store) = store().await;
    let writer = &store.writer;
    let alone = super::Alone::OneStatement;
    assert_eq!(
        writer.write_visible(alone, (), synchronous).await.unwrap(),
        Some(1)
    );
    assert_eq!(writer.write(alone, (), synchronous).await.unwrap(), Some(2));
    // Queued together on this single-threaded runtime: one batch, synced for the durable one.
    let (visible, durable) = tokio::join!(
        writer.write_visible(alone, (), synchronous),
        writer.write(alone, (), synchronous)
    );
    assert_eq!((visible.unwrap(), durable.unwrap()), (Some(2), Some(2)));
    assert_eq!(
        writer.write_visible(alone, (), synchronous).await.unwrap(),
        Some(1)
    );
    let through_sqlx: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.write)
        .await
        .unwrap();
    assert_eq!(
        through_sqlx, 2,
        "the connection is handed back syncing every commit"
    );

    let conversation = conversation(&store).await;
    let fresh = store
        .append_user_message(conversation.id, "hello", Some(7), &[])
        .await
        .unwrap();
    let again = store
        .append_user_message(conversation.id, "hello", Some(7), &[])
        .await
        .unwrap();
    assert!(fresh && !again, "stored once per receipt");
    let stored = store.messages_after(conversation.id, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].content, "hello");
    store.close().await;
}

/// A commit that skipped its fsync is synced within 50 ms: by the WAL's own sync when no synced
/// commit follows, and not again when one does.
#[tokio::test]
async fn an_unsynced_commit_is_synced_soon_after() {
    let (_dir, store) = store().await;
    let conversation = conversation(&store).await;
    let syncs = super::unsynced::wal_syncs;
    let before = syncs();
    store
        .append_user_message(conversation.id, "hello", None, &[])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while syncs() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the WAL was never synced after a commit without its fsync"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(syncs(), before + 1, "synced once");

    // A durable write right after: its synced commit covers the earlier one (a WAL sync that
    // came first, on a slow machine, is counted before the durable write returns).
    store
        .append_user_message(conversation.id, "again", None, &[])
        .await
        .unwrap();
    store
        .append_message(conversation.id, Role::Assistant, &NewMessage::text("ok"))
        .await
        .unwrap();
    let after_durable = syncs();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        syncs(),
        after_durable,
        "a synced commit left nothing to sync"
    );
    store.close().await;
}

/// A write queued lazily is committed, synced, at once when the writes are hurried (someone
/// now waits for it), however far off its due time.
#[tokio::test]
async fn hurried_writes_commit_at_once() {
    let (_dir, store) = store().await;
    let writer = &store.writer;
    let due = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let wait = super::Wait::Lazy {
        due,
        place: super::Place::Any,
    };
    let alone = super::Alone::OneStatement;
    let lazily = writer.submit(alone, wait, super::Needs::Durable, (), synchronous);
    writer.hurry();
    let committed = tokio::time::timeout(std::time::Duration::from_secs(20), lazily)
        .await
        .expect("a hurried write waited for its due time");
    assert_eq!(committed.unwrap(), Some(2), "committed synced");
    store.close().await;
}
