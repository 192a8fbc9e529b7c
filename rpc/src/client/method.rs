//! What a call says about its method: its name, its id on the wire, and
//! whether running it twice is harmless.

/// A method as generated clients name it to [`Channel::call`](super::Channel).
/// Not a public API: it changes without notice.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// `"Service.method"`.
    pub name: &'static str,
    /// Its id on the wire.
    pub id: u64,
    /// `#[rpc(idempotent)]`: a balanced channel may send it again after it
    /// may have run (a retry on another server, or a hedge).
    pub idempotent: bool,
    /// `#[rpc(key)]`: the hash of the call's key argument, which a balanced
    /// channel's `Affinity` policy maps to a server.
    pub key: Option<u64>,
    /// `#[rpc(no_deadline)]`: a call through a handle whose timeout was not
    /// set with `with_timeout` has no deadline (a watch may live for hours).
    pub no_deadline: bool,
    /// The FNV-1a hash of `shape`, sent with every request to a server
    /// that checks it (see the protocol docs); 0 sends none
    /// (a raw call by a tool, which knows no shape).
    pub fingerprint: u64,
    /// `method(T1, T2) -> R`, normalised: what this client was built with,
    /// named in a [`SchemaMismatch`](crate::Error::SchemaMismatch).
    pub shape: &'static str,
}

/// A [`Method::fingerprint`] that asks for no schema check. (No shape
/// hashes to it: the macro never emits it.)
pub(crate) const UNCHECKED: u64 = 0;

/// The hash of an affinity key: FNV-1a over what `Hash` feeds it, the same
/// in every process and every build (std's default hasher promises neither),
/// so every client sends a key to the same server.
#[doc(hidden)]
pub fn key_of<K: std::hash::Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut hasher);
    std::hash::Hasher::finish(&hasher)
}

struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
