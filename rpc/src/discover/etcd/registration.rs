//! [`Registration`]: a server's key in etcd, under a lease kept alive.

use super::{connect, within};
use crate::Error;
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use std::fmt;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the keep-alive errors say was being done.
const KEEP_ALIVE: &str = "keeping the lease alive";

/// A server's key in etcd, present while the server lives.
///
/// [`register`](Self::register) grants a lease of the given TTL, puts the
/// key with it, and keeps the lease alive from a background task every
/// TTL/3, so two keep-alives can be lost before the key goes. If etcd is
/// unreachable for a while, the task keeps trying (reconnecting each time);
/// if the lease expired meanwhile (etcd down longer than the TTL, or this
/// process paused), it grants a new one and puts the key again, so a server
/// that outlives an etcd outage is listed again once etcd is back.
///
/// [`deregister`](Self::deregister) revokes the lease, which deletes the
/// key at once: call it on graceful shutdown *before*
/// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown), so clients
/// stop picking this server while it drains. Dropping the registration does
/// the same in the background, best effort. A server that dies without
/// either (SIGKILL, a lost machine) is removed by etcd when its lease
/// expires: at most one TTL after its last keep-alive.
///
/// See the [module docs](super) for an example.
#[must_use = "dropping a Registration removes the key again"]
pub struct Registration {
    key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl Registration {
    /// Puts `key` = `value` in the etcd cluster at `endpoints`, under a
    /// lease of `ttl` (whole seconds, rounded up, at least 1; etcd may
    /// raise a very short TTL to its own minimum, about 2 s by default), and
    /// keeps it alive until deregistered. `value` is the server's address
    /// in the [format](super#the-value-of-a-key) the
    /// [`Etcd`](super::Etcd) source reads ([`value`](super::value) writes
    /// it). Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if etcd cannot be reached or refuses the lease or the
    /// put; nothing is left registered then.
    pub async fn register(
        endpoints: Vec<String>,
        key: impl Into<String>,
        value: impl Into<String>,
        ttl: Duration,
    ) -> Result<Registration, Error> {
        let mut lease = Lease {
            endpoints,
            key: key.into(),
            value: value.into(),
            ttl_secs: i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
                .unwrap_or(i64::MAX)
                .max(1),
            client: None,
            id: 0,
        };
        lease.grant_and_put().await?;
        let key = lease.key.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(lease.keep_alive_until(stopped));
        Ok(Registration {
            key,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The key registered.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops the keep-alives and revokes the lease, deleting the key.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if etcd could not be told; the key then goes when its
    /// lease expires, within one TTL.
    pub async fn deregister(mut self) -> Result<(), Error> {
        self.stop.take().map(|stop| stop.send(()));
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The task sees the sender go and revokes the lease by itself; it is
        // not aborted, so that it can.
        self.stop.take();
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The registration's state, owned by its background task.
struct Lease {
    endpoints: Vec<String>,
    key: String,
    value: String,
    ttl_secs: i64,
    /// The connection, with its keep-alive stream once opened; `None` after
    /// a failure, so the next round reconnects.
    client: Option<(Client, Option<(LeaseKeeper, LeaseKeepAliveStream)>)>,
    /// The lease the key is under.
    id: i64,
}

impl Lease {
    /// Grants a new lease and puts the key under it.
    async fn grant_and_put(&mut self) -> Result<(), Error> {
        let client = connected(&mut self.client, &self.endpoints).await?;
        let granted = within(
            "granting a lease",
            &self.endpoints,
            client.lease_grant(self.ttl_secs, None),
        )
        .await?;
        let options = PutOptions::new().with_lease(granted.id());
        let put = within(
            "putting the key",
            &self.endpoints,
            client.put(self.key.clone(), self.value.clone(), Some(options)),
        )
        .await;
        if let Err(e) = put {
            // No key without its lease, and no lease without its key.
            let _ = client.lease_revoke(granted.id()).await;
            return Err(e);
        }
        self.id = granted.id();
        // A keep-alive stream is for one lease: the next round opens one
        // for the new lease.
        if let Some((_, keeper)) = &mut self.client {
            *keeper = None;
        }
        Ok(())
    }

    /// Keeps the lease alive every TTL/3 until told to stop (or the
    /// registration is dropped), then revokes it.
    async fn keep_alive_until(mut self, mut stop: oneshot::Receiver<()>) -> Result<(), Error> {
        let period = Duration::from_secs(self.ttl_secs as u64) / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A round in progress is dropped on stop: revoking ends the
            // lease whatever that round had got to.
            tokio::select! {
                _ = &mut stop => break,
                _ = async { tick.tick().await; self.refresh(period).await } => {}
            }
        }
        self.revoke().await
    }

    /// One keep-alive; on failure, the connection is dropped so the next
    /// round starts afresh. A lease etcd no longer knows is replaced.
    async fn refresh(&mut self, wait: Duration) {
        let outcome = async {
            if self.keep_alive_once(wait).await? <= 0 {
                tracing::warn!(key = %self.key, "etcd registration: the lease expired; registering again");
                self.grant_and_put().await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(key = %self.key, "etcd registration: keep-alive failed, will retry: {e}");
            self.client = None;
        }
    }

    /// Sends one keep-alive and reads its answer: the lease's remaining TTL,
    /// 0 if etcd no longer knows it. No answer within `wait` is a failure:
    /// the next round reconnects rather than trust a silent connection.
    async fn keep_alive_once(&mut self, wait: Duration) -> Result<i64, Error> {
        if self.client.is_none() {
            let client = connect(&self.endpoints).await?;
            self.client = Some((client, None));
        }
        let Some((client, keeper)) = &mut self.client else {
            unreachable!("connected above")
        };
        let (keeper, stream) = match keeper {
            Some(k) => k,
            None => keeper.insert(
                within(
                    KEEP_ALIVE,
                    &self.endpoints,
                    client.lease_keep_alive(self.id),
                )
                .await?,
            ),
        };
        within(KEEP_ALIVE, &self.endpoints, keeper.keep_alive()).await?;
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(answer))) => Ok(answer.ttl()),
            Ok(Ok(None)) => Err(super::aborted(
                KEEP_ALIVE,
                &self.endpoints,
                "the stream ended",
            )),
            Ok(Err(e)) => Err(super::etcd_error(KEEP_ALIVE, &self.endpoints, e)),
            Err(_) => Err(super::timed_out(KEEP_ALIVE, &self.endpoints)),
        }
    }

    /// Revokes the lease, which deletes the key.
    async fn revoke(&mut self) -> Result<(), Error> {
        let client = connected(&mut self.client, &self.endpoints).await?;
        within(
            "revoking the lease",
            &self.endpoints,
            client.lease_revoke(self.id),
        )
        .await
        .map(drop)
    }
}

/// The connection to etcd in `slot`, made if there is none.
async fn connected<'a>(
    slot: &'a mut Option<(Client, Option<(LeaseKeeper, LeaseKeepAliveStream)>)>,
    endpoints: &[String],
) -> Result<&'a mut Client, Error> {
    Ok(match slot {
        Some((client, _)) => client,
        None => &mut slot.insert((connect(endpoints).await?, None)).0,
    })
}
