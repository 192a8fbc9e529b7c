//! [`Compression`]: which algorithm compresses the large payloads a side
//! sends, as negotiated at the handshake.
//!
//! Each algorithm is a cargo feature of `rpc` (`lz4`: pure Rust; `zstd`: a
//! C build), off by default. A side advertises in its Hello every
//! algorithm it was built with, and accepts those; it compresses only with
//! an algorithm the peer advertised, and only values of at least the
//! threshold (1 KiB by default) that shrink by at least an eighth. The wire
//! layout is in [`crate::protocol`].

use crate::Error;
use crate::protocol::features;

/// A payload compression algorithm, or none.
///
/// Choosing one whose cargo feature is off is refused with
/// [`Error::Config`] when the channel connects or the server binds, never
/// ignored.
///
/// ```no_run
/// # async fn run() -> Result<(), rpc::Error> {
/// // With `rpc = { features = ["lz4"] }` in Cargo.toml.
/// let channel = rpc::Channel::builder()
///     .compression(rpc::Compression::Lz4)
///     .connect("127.0.0.1:7878")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Send payloads as they are (the default).
    #[default]
    None,
    /// LZ4 (block format): fast, a modest ratio. Feature `lz4`.
    Lz4,
    /// zstd (level 3, its default): a better ratio for more CPU. Feature
    /// `zstd`.
    Zstd,
}

/// Values shorter than this are sent as they are, by default: below about
/// a kilobyte the saving rarely pays for the work (gRPC and most HTTP
/// servers draw the line there too).
pub(crate) const DEFAULT_THRESHOLD: usize = 1024;

impl Compression {
    /// The algorithm's byte in a compressed value (see [`crate::protocol`]).
    pub(crate) fn wire_id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The algorithm a compressed value's first byte names.
    pub(crate) fn from_wire(id: u8) -> Option<Compression> {
        match id {
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The Hello feature bit that advertises it (0 for `None`).
    pub(crate) fn feature(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => features::LZ4,
            Compression::Zstd => features::ZSTD,
        }
    }

    /// The cargo feature that builds it.
    fn cargo_feature(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Whether this build has it (`None` always).
    pub(crate) fn is_built(self) -> bool {
        self == Compression::None || built_features() & self.feature() != 0
    }

    /// `Ok` if this build has it; else the [`Error::Config`] naming the
    /// feature to turn on.
    pub(crate) fn check(self) -> Result<Self, Error> {
        if self.is_built() {
            return Ok(self);
        }
        Err(Error::Config(format!(
            "compression {self:?} needs the `{}` cargo feature of `rpc`, which this build lacks",
            self.cargo_feature()
        )))
    }

    /// This algorithm if the peer's Hello `features` advertised it, else
    /// `None`: what goes on the wire to that peer.
    pub(crate) fn if_accepted(self, peer_features: u32) -> Compression {
        if self != Compression::None && peer_features & self.feature() != 0 {
            self
        } else {
            Compression::None
        }
    }
}

/// `Ok` if every algorithm in `bits` (Hello feature bits) is built in.
pub(crate) fn check_features(bits: u32) -> Result<(), Error> {
    for c in [Compression::Lz4, Compression::Zstd] {
        if bits & c.feature() != 0 {
            c.check()?;
        }
    }
    Ok(())
}

/// The Hello feature bits of every algorithm this build has: what each side
/// advertises, and accepts.
pub(crate) fn built_features() -> u32 {
    let mut bits = 0;
    if cfg!(feature = "lz4") {
        bits |= features::LZ4;
    }
    if cfg!(feature = "zstd") {
        bits |= features::ZSTD;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for c in [Compression::Lz4, Compression::Zstd] {
            assert_eq!(Compression::from_wire(c.wire_id()), Some(c));
        }
        assert_eq!(Compression::from_wire(0), None);
        assert_eq!(Compression::from_wire(3), None);
    }

    #[test]
    fn only_what_the_peer_advertised_is_used() {
        assert_eq!(
            Compression::Zstd.if_accepted(features::LZ4),
            Compression::None
        );
        assert_eq!(
            Compression::Lz4.if_accepted(features::LZ4 | features::METADATA),
            Compression::Lz4
        );
        assert_eq!(Compression::None.if_accepted(u32::MAX), Compression::None);
    }

    #[test]
    fn an_algorithm_not_built_is_a_config_error_naming_the_feature() {
        assert!(Compression::None.check().is_ok());
        for c in [Compression::Lz4, Compression::Zstd] {
            match c.check() {
                Ok(_) => assert!(c.is_built()),
                Err(e) => {
                    assert!(matches!(e, Error::Config(_)));
                    assert!(e.to_string().contains(c.cargo_feature()), "{e}");
                }
            }
        }
    }
}
