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
}
