//! Addresses as the sources take them, and turning names into targets with
//! the system resolver.

use super::Target;
use crate::Error;
use crate::transport::Address;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long one lookup may take. The system resolver (`getaddrinfo`, on a
/// blocking thread) can wait out several DNS timeouts in a row; past this
/// the source reports an error and tries again later rather than sit silent.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// One entry of an address list: a target known as it is, or a
/// `host:port` name to resolve. Made with `From` from a string, a
/// [`SocketAddr`], an [`Address`] or a [`Target`]; a string is read as the
/// [module docs](super#addresses-as-strings) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSpec(Spec);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Known(Target),
    Name { name: String, weight: u32 },
}

impl AddrSpec {
    /// Reads a string as an address: no lookup happens here.
    fn parse(s: &str) -> Self {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return AddrSpec(Spec::Known(addr.into()));
        }
        // The forms `Address`'s Display writes, so an address printed by
        // one process can be handed to another as it is.
        if let Some(path) = s.strip_prefix("unix:") {
            return Address::Unix(PathBuf::from(path)).into();
        }
        if let Some(name) = s.strip_prefix("memory:") {
            return Address::Memory(name.to_owned()).into();
        }
        AddrSpec(Spec::Name {
            name: s.to_owned(),
            weight: 1,
        })
    }

    /// The same entry, whose targets get this weight (at least 1): for the
    /// weights of etcd values.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn with_weight(self, weight: u32) -> Self {
        AddrSpec(match self.0 {
            Spec::Known(t) => Spec::Known(t.with_weight(weight)),
            Spec::Name { name, .. } => Spec::Name {
                name,
                weight: weight.max(1),
            },
        })
    }

    /// The entry's targets: itself, or every address its name resolves to
    /// (sorted, so that the same answer always gives the same set).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the name does not resolve, resolves to nothing, or
    /// its lookup takes over 10 s.
    pub(crate) async fn resolve(&self) -> Result<Vec<Target>, Error> {
        match &self.0 {
            Spec::Known(t) => Ok(vec![t.clone()]),
            Spec::Name { name, weight } => Ok(lookup(name)
                .await?
                .into_iter()
                .map(|a| Target::from(a).with_weight(*weight))
                .collect()),
        }
    }
}

impl From<&str> for AddrSpec {
    fn from(s: &str) -> Self {
        AddrSpec::parse(s)
    }
}

impl From<String> for AddrSpec {
    fn from(s: String) -> Self {
        AddrSpec::parse(&s)
    }
}

impl From<&String> for AddrSpec {
    fn from(s: &String) -> Self {
        AddrSpec::parse(s)
    }
}

impl From<SocketAddr> for AddrSpec {
    fn from(addr: SocketAddr) -> Self {
        AddrSpec(Spec::Known(addr.into()))
    }
}

impl From<Address> for AddrSpec {
    fn from(address: Address) -> Self {
        AddrSpec(Spec::Known(address.into()))
    }
}

impl From<Target> for AddrSpec {
    fn from(target: Target) -> Self {
        AddrSpec(Spec::Known(target))
    }
}

/// Every address `name` (`host:port`) resolves to, sorted and without
/// repeats.
pub(crate) async fn lookup(name: &str) -> Result<Vec<SocketAddr>, Error> {
    let failed = |source: io::Error| Error::Io {
        method: None,
        context: format!("resolving {name}"),
        source,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name))
        .await
        .map_err(|_| {
            failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {RESOLVE_TIMEOUT:?}"),
            ))
        })?
        .map_err(failed)?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(failed(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolved to no address",
        )));
    }
    Ok(addrs)
}

/// The targets of every entry, in the order given, without repeated
/// addresses.
///
/// # Errors
///
/// The first entry that fails to resolve: a list is taken whole or not at
/// all, so a mistyped name fails loudly instead of the channel running
/// quietly on part of its servers.
pub(crate) async fn resolve_all(specs: &[AddrSpec]) -> Result<Vec<Target>, Error> {
    let mut targets = Vec::with_capacity(specs.len());
    for spec in specs {
        targets.extend(spec.resolve().await?);
    }
    Ok(super::dedup_by_address(targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_read_as_addresses_or_names() {
        let tcp: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(AddrSpec::from("127.0.0.1:7001"), AddrSpec::from(tcp));
        assert_eq!(
            AddrSpec::from(" [::1]:7 "),
            AddrSpec::from("[::1]:7".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(
            AddrSpec::from("unix:/tmp/s.sock"),
            AddrSpec::from(Address::Unix("/tmp/s.sock".into()))
        );
        assert_eq!(
            AddrSpec::from("memory:calc"),
            AddrSpec::from(Address::Memory("calc".into()))
        );
        assert!(matches!(
            AddrSpec::from("localhost:7001").0,
            Spec::Name { ref name, weight: 1 } if name == "localhost:7001"
        ));
    }

    #[tokio::test]
    async fn a_name_resolves_to_all_its_addresses_sorted() {
        let targets = AddrSpec::from("localhost:7001")
            .with_weight(2)
            .resolve()
            .await
            .unwrap();
        assert!(targets.contains(
            &Target::from("127.0.0.1:7001".parse::<SocketAddr>().unwrap()).with_weight(2)
        ));
        let addrs: Vec<_> = targets.iter().map(|t| t.address.tcp().unwrap()).collect();
        assert!(addrs.is_sorted(), "{addrs:?}");
    }

    #[tokio::test]
    async fn an_unknown_name_is_an_io_error_naming_it() {
        let err = lookup("nonexistent.invalid:1").await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nonexistent.invalid:1"), "{err}");
    }
}
