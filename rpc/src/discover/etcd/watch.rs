//! The [`Etcd`](super::Etcd) source's work: read the prefix, watch it from
//! the revision read, and start over when the watch breaks.

use super::{connect, parse_value, within};
use crate::Error;
use crate::discover::backoff::Backoff;
use crate::discover::{Target, dedup_by_address};
use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions, WatchStream};
use std::collections::BTreeMap;
use std::time::Duration;

/// The state of one source between the sets it yields.
pub(super) struct Watcher {
    endpoints: Vec<String>,
    prefix: String,
    /// Each key's targets, in key order so the set's order is stable.
    keys: BTreeMap<Vec<u8>, Vec<Target>>,
    /// The watch in progress, with the client it runs on; `None` until the
    /// first read, and after the watch broke.
    live: Option<(etcd_client::Client, WatchStream)>,
    backoff: Backoff,
    /// Whether the last attempt failed, so the next one waits first.
    failed: bool,
}

impl Watcher {
    pub(super) fn new(endpoints: Vec<String>, prefix: String) -> Self {
        Watcher {
            endpoints,
            prefix,
            keys: BTreeMap::new(),
            live: None,
            // Etcd is the control plane: a short first wait, so a restart
            // costs little, and at most 5 s, so the set is fresh again soon
            // after etcd is back.
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
            failed: false,
        }
    }

    /// Waits for the next set to yield: the whole set after a (re)read or
    /// after a change, or the error that broke the connection or the watch.
    pub(super) async fn next_set(&mut self) -> Result<Vec<Target>, Error> {
        loop {
            let Some((_, stream)) = self.live.as_mut() else {
                if self.failed {
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
                return match self.start().await {
                    Ok(()) => {
                        self.failed = false;
                        self.backoff.reset();
                        Ok(self.set())
                    }
                    Err(e) => self.broken(e),
                };
            };
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return self.broken(self.failure("the watch ended")),
                Err(e) => return self.broken(super::etcd_error("watching", &self.endpoints, e)),
            };
            if response.canceled() {
                // Compaction past our revision, or etcd dropped the watch:
                // reading the prefix again is the only way to be whole.
                let why = format!(
                    "the watch was cancelled (compacted to {}): {}",
                    response.compact_revision(),
                    response.cancel_reason()
                );
                return self.broken(self.failure(&why));
            }
            let mut changed = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                changed |= match event.event_type() {
                    EventType::Put => self.put(kv).await,
                    EventType::Delete => self.keys.remove(kv.key()).is_some(),
                };
            }
            if changed {
                return Ok(self.set());
            }
        }
    }

    /// Connects, reads the prefix whole, and watches it from the next
    /// revision.
    async fn start(&mut self) -> Result<(), Error> {
        let mut client = connect(&self.endpoints).await?;
        let read = within(
            "reading the prefix",
            &self.endpoints,
            client.get(self.prefix.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = read.header().map_or(0, |h| h.revision());
        let mut keys = BTreeMap::new();
        for kv in read.kvs() {
            if let Some(targets) = self.read_value(kv).await {
                keys.insert(kv.key().to_vec(), targets);
            }
        }
        // From the revision after the one read: every change made since the
        // read arrives as an event, none twice.
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let stream = within(
            "watching the prefix",
            &self.endpoints,
            client.watch(self.prefix.clone(), Some(options)),
        )
        .await?;
        self.keys = keys;
        self.live = Some((client, stream));
        Ok(())
    }

    /// Records a key's new value; whether the set changed.
    async fn put(&mut self, kv: &KeyValue) -> bool {
        match self.read_value(kv).await {
            Some(targets) => self.keys.insert(kv.key().to_vec(), targets.clone()) != Some(targets),
            // A value that cannot be used now: the key is no server.
            None => self.keys.remove(kv.key()).is_some(),
        }
    }

    /// A key's targets, or `None` (logged) if its value cannot be read or
    /// its name does not resolve.
    async fn read_value(&self, kv: &KeyValue) -> Option<Vec<Target>> {
        let key = String::from_utf8_lossy(kv.key());
        let value = String::from_utf8_lossy(kv.value());
        let spec = match parse_value(&value) {
            Ok(spec) => spec,
            Err(why) => {
                tracing::warn!(%key, %value, "etcd discovery: left out a key: {why}");
                return None;
            }
        };
        match spec.resolve().await {
            Ok(targets) => Some(targets),
            Err(e) => {
                tracing::warn!(%key, %value, "etcd discovery: left out a key: {e}");
                None
            }
        }
    }

    /// The current set: every key's targets, in key order, each address once.
    fn set(&self) -> Vec<Target> {
        dedup_by_address(self.keys.values().flatten().cloned().collect())
    }

    /// Drops the watch, so the next call reads again after a wait, and
    /// returns `e` to yield. The next read replaces the keys whole.
    fn broken(&mut self, e: Error) -> Result<Vec<Target>, Error> {
        self.live = None;
        self.failed = true;
        Err(e)
    }

    /// The watch ended or was cancelled: an error to yield.
    fn failure(&self, why: &str) -> Error {
        super::aborted(&format!("watching {}", self.prefix), &self.endpoints, why)
    }
}
