//! Progress of long operations: a sink the caller gives, reachable from deep steps through a
//! task-local, so nothing in between passes it along.

use std::sync::Arc;

/// A callback for progress of long steps: `(key, text)`, where the key names the step so a
/// channel can update one message in place.
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Fn(String, String) + Send + Sync>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

tokio::task_local! {
    /// The running invocation's progress sink, so deep steps can report without every
    /// function in between passing it along.
    pub(super) static PROGRESS: ProgressSink;
}

/// Reports progress of the running operation, if its caller listens.
pub(crate) fn report_progress(key: &str, text: String) {
    let _ = PROGRESS.try_with(|sink| (sink.0)(key.to_string(), text));
}
