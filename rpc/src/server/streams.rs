//! The streaming calls open on one connection, by call id: the driver hands
//! each the client's StreamItem, StreamEnd and StreamCredit frames, and a
//! server shutting down ends them. A call is registered when its request
//! arrives (its items may follow at once, before a handler is free) and
//! leaves when the last part of it that runs (the handler, then the pump
//! sending its stream) is gone, however that ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::id_map::IdMap;
use crate::protocol::Status;
use crate::stream::Flow;

#[derive(Debug, Default)]
pub(crate) struct Streams {
    open: Mutex<IdMap<Arc<Open>>>,
}

/// One open streaming call.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) flow: Arc<Flow>,
    pub(crate) method: &'static str,
    pub(crate) budget: Duration,
    /// The Response went out and the server's stream follows it.
    replying: AtomicBool,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdMap<Arc<Open>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open call `id`, if there is one.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Open>> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Registers a call; it stays until the registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        flow: Flow,
        method: &'static str,
        budget: Duration,
    ) -> Arc<Registration> {
        let open = Arc::new(Open {
            flow: Arc::new(flow),
            method,
            budget,
            replying: AtomicBool::new(false),
        });
        self.lock().insert(open.flow.id(), open.clone());
        Arc::new(Registration {
            streams: self.clone(),
            open,
        })
    }

    /// The server is stopping now: each stream being sent ends with
    /// `ShuttingDown` (its handler is dropped next). Returns how many did.
    pub(crate) fn shut_down(&self) -> usize {
        let open: Vec<Arc<Open>> = self.lock().values().cloned().collect();
        let end = Status::ShuttingDown.end_payload("the server shut down");
        open.iter()
            .filter(|call| call.replying.load(Ordering::Acquire) && call.flow.finish(&end))
            .count()
    }
}

/// A call's place among the open streams; dropping the last clone removes
/// it (and not a later call that reused its id).
#[derive(Debug)]
pub(crate) struct Registration {
    streams: Arc<Streams>,
    pub(crate) open: Arc<Open>,
}

impl Registration {
    /// The Response went out: the stream follows.
    pub(crate) fn replying(&self) {
        self.open.replying.store(true, Ordering::Release);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        let id = self.open.flow.id();
        if open.get(&id).is_some_and(|o| Arc::ptr_eq(o, &self.open)) {
            open.remove(&id);
        }
        drop(open);
        // The handler and its stream are gone: the client's items are no
        // longer taken.
        self.open.flow.close();
    }
}
