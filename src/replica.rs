//! A service whose servers say which one answered: for the balanced-channel
//! examples and tests, where a client must see where its calls went. Shared
//! here because the etcd tests run one of its servers in a child process
//! (`etcd-register --serve`), which needs the same definition.

/// One of several interchangeable servers.
#[rpc::service]
pub trait Replica {
    /// The answering server's name. Safe to run twice, so the balanced
    /// channel may retry it on another server, or hedge it.
    #[rpc(idempotent)]
    async fn name(&self) -> String;
}

/// A server answering `name`, after `delay` (to play a slow one).
#[derive(Debug, Clone)]
pub struct Named {
    /// What [`Replica::name`] answers.
    pub name: String,
    /// How long each call takes.
    pub delay: std::time::Duration,
}

impl Named {
    /// A server answering `name` at once.
    pub fn new(name: impl Into<String>) -> Named {
        Named {
            name: name.into(),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl Replica for Named {
    async fn name(&self) -> String {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.name.clone()
    }
}
