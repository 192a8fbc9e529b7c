//! [`Format`]: how a connection's values are serialized, chosen by the
//! client and accepted (or refused) by the server at the handshake.

use crate::Error;
use crate::protocol::features;

/// The serialization format of the values a connection carries: arguments,
/// return values (an application's `Err(E)` included) and stream items,
/// both ways. Status messages and the frame layout do not change with it.
///
/// A channel uses one format for all its connections
/// ([`client::Builder::format`](crate::client::Builder::format)); a server
/// answers each connection in the format its client chose, if it accepts
/// it ([`server::Builder::accept_formats`](crate::server::Builder::accept_formats)),
/// and refuses the handshake otherwise, with an error both sides read:
/// "the client asked for the JSON format; this server accepts only bincode".
///
/// ```no_run
/// # #[cfg(feature = "json")]
/// # async fn run() -> Result<(), rpc::Error> {
/// // With `rpc = { features = ["json"] }` in Cargo.toml.
/// let channel = rpc::Channel::builder()
///     .format(rpc::Format::Json)
///     .connect("127.0.0.1:7878")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Format {
    /// bincode 2 (the default): compact and fast.
    #[default]
    Bincode,
    /// JSON (feature `json`): self-describing and readable by any tool,
    /// larger and slower. Each value is one JSON text: arguments are an
    /// array of one element per argument (`null` for a method without
    /// any), enums are externally tagged (`{"Err": ..}`), byte buffers are
    /// arrays of numbers.
    #[cfg(feature = "json")]
    Json,
}

impl Format {
    /// The Hello feature bit that names it (0 for bincode, the default).
    pub(crate) fn feature(self) -> u32 {
        match self {
            Format::Bincode => 0,
            #[cfg(feature = "json")]
            Format::Json => features::JSON,
        }
    }

    /// The format a Hello's features name, if this build has it.
    pub(crate) fn of_features(bits: u32) -> Option<Format> {
        if bits & features::JSON == 0 {
            return Some(Format::Bincode);
        }
        #[cfg(feature = "json")]
        return Some(Format::Json);
        #[cfg(not(feature = "json"))]
        None
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(name_of(self.feature()))
    }
}

/// The name of the format a Hello's features name, whether or not this
/// build has it.
fn name_of(bits: u32) -> &'static str {
    if bits & features::JSON == 0 {
        "bincode"
    } else {
        "JSON"
    }
}

/// The formats a server accepts: a set of [`Format`]s (never empty once
/// [`check`](Self::check)ed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Formats {
    bincode: bool,
    json: bool,
}

impl Formats {
    /// Every format this build has: what a server accepts unless told.
    pub(crate) const BUILT: Formats = Formats {
        bincode: true,
        json: cfg!(feature = "json"),
    };

    /// The formats in `formats` (see [`check`](Self::check)).
    pub(crate) fn of(formats: impl IntoIterator<Item = Format>) -> Formats {
        let mut set = Formats {
            bincode: false,
            json: false,
        };
        for format in formats {
            match format {
                Format::Bincode => set.bincode = true,
                #[cfg(feature = "json")]
                Format::Json => set.json = true,
            }
        }
        set
    }

    /// `Ok` unless the set is empty: a server must accept some format.
    pub(crate) fn check(self) -> Result<(), Error> {
        if self.bincode || self.json {
            return Ok(());
        }
        Err(Error::Config(
            "`accept_formats` was given no format: a server must accept at least one".into(),
        ))
    }

    /// The server's answer to a client whose Hello has `asked` features:
    /// `Ok` with the format's bit if it accepts that format, else `Err`
    /// with the bit of the one format it accepts (a set of two formats
    /// that refuses one holds only the other).
    pub(crate) fn answer(self, asked: u32) -> Result<u32, u32> {
        if asked & features::JSON != 0 {
            if self.json {
                Ok(features::JSON)
            } else {
                Err(0)
            }
        } else if self.bincode {
            Ok(0)
        } else {
            Err(features::JSON)
        }
    }
}

/// The handshake's error when the server's format (`answered`, its Hello's
/// features) is not the one the client `asked` for (its Hello's): the same
/// words on both sides.
pub(crate) fn refused(asked: u32, answered: u32) -> Error {
    Error::protocol(format!(
        "the client asked for the {} format; this server accepts only {}",
        name_of(asked),
        name_of(answered)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_in_the_asked_format_or_names_the_one_it_accepts() {
        let bincode_only = Formats::of([Format::Bincode]);
        assert_eq!(bincode_only.answer(0), Ok(0));
        assert_eq!(bincode_only.answer(features::JSON), Err(0));
        assert_eq!(
            refused(features::JSON, 0).to_string(),
            "protocol error: the client asked for the JSON format; this server accepts only bincode"
        );
        assert!(Formats::of([]).check().is_err());
        assert!(bincode_only.check().is_ok());
        assert_eq!(Format::of_features(0), Some(Format::Bincode));
        assert_eq!(Format::default().to_string(), "bincode");
    }

    #[cfg(feature = "json")]
    #[test]
    fn a_json_only_server_refuses_bincode_by_naming_json() {
        let json_only = Formats::of([Format::Json]);
        assert_eq!(json_only.answer(features::JSON), Ok(features::JSON));
        assert_eq!(json_only.answer(0), Err(features::JSON));
        assert_eq!(Formats::BUILT.answer(0), Ok(0));
        assert_eq!(Formats::BUILT.answer(features::JSON), Ok(features::JSON));
        assert_eq!(Format::of_features(features::JSON), Some(Format::Json));
        assert_eq!(Format::Json.to_string(), "JSON");
    }
}
