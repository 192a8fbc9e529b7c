//! The `#[service]` attribute macro. Use it through the `rpc` crate
//! (`#[rpc::service]`); its docs are on [`service`].
//!
//! Stages: `ast.rs` parses the trait into a model of the service,
//! `validate.rs` checks one rule per function, `expand/` writes the trait, the
//! client and the server. Tests: `tests/ui/` (trybuild, one shape or mistake
//! per file) and `tests/hygiene.rs`.

mod ast;
mod expand;
mod shape;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait into an RPC service: the trait is the whole schema.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// pub enum MathError { DivideByZero }
///
/// #[rpc::service]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
///     /// Borrowed arguments stay borrows on the client.
///     async fn sum(&self, label: &str, xs: &[i64]) -> String;
/// }
///
/// struct Calc;
/// impl Calculator for Calc {
///     async fn add(&self, a: i64, b: i64) -> i64 { a + b }
///     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
///         a.checked_div(b).ok_or(MathError::DivideByZero)
///     }
///     async fn sum(&self, label: &str, xs: &[i64]) -> String {
///         format!("{label}: {}", xs.iter().sum::<i64>())
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
/// let server = rpc::Server::builder()
///     .add_service(CalculatorServer::new(Calc))
///     .bind("127.0.0.1:0")
///     .await?;
/// let calc = CalculatorClient::connect(server.local_addr()).await?;
/// assert_eq!(calc.add(2, 3).await?, 5);
/// assert!(calc.div(1, 0).await?.is_err());
/// assert_eq!(calc.sum("total", &[1, 2, 3]).await?, "total: 6");
/// server.shutdown().await;
/// # Ok(()) }
/// ```
///
/// # What it generates
///
/// Next to the trait, with the trait's visibility:
///
/// - **The trait itself**, still a plain trait that can be implemented and
///   called in-process. Each `async fn m(&self, ..) -> T` is rewritten as
///   `fn m(&self, ..) -> impl Future<Output = T> + Send`; an `impl` still
///   writes `async fn`, and a handler whose future is not `Send` is reported
///   at that method in the impl. A default body becomes an `async move` block
///   and gains `where Self: Sync`. A `#[rpc(blocking)]` `fn` stays as written.
/// - **`{Trait}Client`**, `Clone + Debug + Send + Sync`; clones share one
///   multiplexed connection.
///   - `async fn connect(addr: impl ToSocketAddrs) -> Result<Self, rpc::Error>`
///     connects with default settings;
///   - `fn new(channel: rpc::Channel) -> Self` calls through a configured
///     channel (`rpc::Channel::builder()`);
///   - `fn with_timeout(&self, timeout: Duration) -> Self` is a handle on the
///     same connection whose calls have that deadline;
///   - `fn with_metadata(&self, key, value) -> Self` is a handle on the same
///     connection whose calls also carry that metadata pair;
///   - `fn channel(&self) -> &rpc::Channel`;
///   - one method per trait method, with the same name, arguments and doc
///     comment, returning
///     `impl Future<Output = Result<T, rpc::Error>> + Send + 'static`, where
///     `T` is the trait method's return type exactly (an application error
///     stays typed inside `T`). The arguments are encoded when the method is
///     called, so the future borrows nothing and can be spawned. A stream
///     argument is taken by value and its items are sent as it yields them;
///     a returned stream yields the server's items as they arrive.
/// - **`{Trait}Server<S>`**, which serves any
///   `S: Trait + Send + Sync + 'static`: `new(service: S)` and `from_arc(service: Arc<S>)` (to keep a
///   handle to the implementation), then
///   `rpc::Server::builder().add_service(..)`. It is `Clone` and `Debug`.
///
/// # Options
///
/// - `#[rpc::service(name = "Wire")]` on the trait pins the service's name on
///   the wire (by default the trait's name).
/// - `#[rpc(name = "wire")]` on a method pins the method's name on the wire
///   (by default its Rust name, without `r#`).
/// - `#[rpc(blocking)]` on a method declared as a plain `fn` (not `async`)
///   runs it on tokio's blocking thread pool (`spawn_blocking`), for
///   CPU-bound work or blocking calls that would otherwise hold up an async
///   worker thread and every connection it serves:
///   `#[rpc(blocking)] fn hash(&self, data: Vec<u8>) -> u64;`. The trait
///   keeps the plain `fn` (implemented and called in-process as one); the
///   client's method is `async` like every other. Inside it,
///   `rpc::context::current()` works and a panic is a `Panicked` reply. The
///   reply is dropped at the deadline or on Cancel, but a thread cannot be
///   interrupted: a function already running runs to its end.
/// - `#[rpc(no_deadline)]` on a method that returns a stream lifts the
///   channel's default timeout from its calls: a feed that is followed for
///   hours is not cut off after the timeout meant for unary calls.
///
/// Options combine, in one attribute or several: `#[rpc(blocking, name = "h")]`.
///
/// A method is identified on the wire by a hash of `"Service.method"`, so
/// methods may be reordered or added freely, and pinned names keep old peers
/// working when the Rust names change. Two methods with one wire name are a
/// compile error.
///
/// # Schema check
///
/// Each method also gets a *shape*, `wire_name(T1, T2) -> R` with the types
/// as the trait writes them, and the shape's 64-bit fingerprint, both
/// computed here and emitted as literals. A client sends the fingerprint
/// with every call; the server compares it with its own before it decodes
/// anything, and a different one fails the call with
/// `rpc::Error::SchemaMismatch` naming both shapes (the handler does not
/// run; the connection stays up). So a changed argument, return or stream
/// item type is reported as what it is, not as a Decode error or, worse, as
/// bytes that happen to decode as something else.
///
/// Shapes are normalised so that what encodes alike reads alike:
/// whitespace and lifetimes are dropped; every path is cut to its last
/// segment, in generic arguments too (`std::string::String` is `String`,
/// `rpc::Stream<feed::Event>` is `Stream<Event>`); `&str` is `String`,
/// `&[T]` is `Vec<T>`, `&T` and `&mut T` are `T`; no return type is `()`.
/// Argument names are not part of it (they are not on the wire), and
/// neither is the order of methods. So renaming an argument, taking `&str`
/// where the other side has `String`, or importing a type by another path
/// stays compatible.
///
/// What it cannot see: the macro sees the trait's tokens only, not the
/// items they name. A field added to or retyped in your own struct, a type
/// alias that now points elsewhere, or a changed `Serialize` impl leave the
/// shape as it was, and still give a Decode error (or, if the bytes happen
/// to fit, a wrong value). Seeing inside would take a derive on every type
/// that travels, each adding its own fingerprint transitively: a trait of
/// this crate forced on types that otherwise need only serde. The check is
/// conservative the other way: types that encode alike but are named
/// differently (`Vec<T>` and `VecDeque<T>`, `T` and `Box<T>`, a newtype and
/// its field) are different shapes.
///
/// # Supported method shapes
///
/// - `async fn` taking `&self` (or `&'a self`, `self: &Self`), with named
///   arguments of any concrete type that is `Serialize + DeserializeOwned`,
///   nested generics included (`HashMap<String, Vec<Option<u32>>>`), and
///   plain `fn`s of the same shapes marked `#[rpc(blocking)]`;
/// - borrowed arguments `&str`, `&[T]` and `&T`: the client method takes the
///   borrow; the server decodes owned data and lends it to the handler;
/// - any owned return type that is `Serialize + DeserializeOwned`, including
///   `Result<T, E>` with the application's own `E`, and no return type (`()`);
/// - streams, `rpc::Stream<T>` (also written `::rpc::Stream<T>`, or
///   `Stream<T>` after a `use`: the macro sees tokens, and takes any path
///   ending in `Stream` with one type argument for it), whose item type `T`
///   is `Serialize + DeserializeOwned + Send + 'static`:
///   - as the return type, `rpc::Stream<T>` or `Result<rpc::Stream<T>, E>`
///     (the application's error instead of a stream): server streaming;
///   - as one argument, by value, beside any other arguments:
///     client streaming (with any other return type) or both ways (with a
///     stream returned):
///     `async fn chat(&self, room: String, inbox: rpc::Stream<Msg>) -> rpc::Stream<Msg>;`;
/// - `Vec<u8>` and `&[u8]` arguments, and `Vec<u8>` returns, travel as one
///   block of bytes (same encoding as a sequence of `u8`, much faster). The
///   macro sees tokens: it recognizes `Vec<u8>`, `std::vec::Vec<u8>` and
///   `alloc::vec::Vec<u8>` as written. For byte fields inside your own types,
///   use `#[serde(with = "rpc::bytes")]`;
/// - lifetime parameters, default bodies, raw identifiers (`r#type` is `type`
///   on the wire), and attributes on methods: `#[cfg]` gates the method
///   everywhere; `#[doc]`, `#[deprecated]` and lint attributes are carried to
///   the client method.
///
/// # Refused, each with an error under the offending tokens
///
/// - methods that are not `async fn` (unless `#[rpc(blocking)]`), are
///   `async fn` with `#[rpc(blocking)]` (to block inside an `async fn`, use
///   `rpc::context::spawn_blocking`), or are `unsafe`, `const` or `extern`;
/// - receivers other than `&self` (`&mut self`, `self`, `self: Box<Self>`) and
///   methods without one: the server shares one instance across concurrent
///   calls (use interior mutability);
/// - generic traits, generic methods, associated types and consts: every type
///   on the wire must be concrete;
/// - supertraits and `where` bounds other than marker traits on `Self`
///   (`trait Svc: Send + Sync + 'static` is fine): the client could not call
///   a supertrait's methods;
/// - `impl Trait`, `dyn Trait` and `Self` in argument or return types;
/// - `&mut` arguments, borrows nested inside an argument type
///   (`Option<&str>`), and borrowed return types;
/// - patterns in arguments (`(a, b): (u32, u32)`): name the argument;
/// - a second stream argument, a stream argument marked `#[rpc(key)]`, a
///   borrowed stream (`&rpc::Stream<T>`), a stream inside another type
///   (`Vec<rpc::Stream<T>>`, `Option<rpc::Stream<T>>`), `#[rpc(blocking)]` on
///   a method with a stream, and `#[rpc(no_deadline)]` on a method that does
///   not return one;
/// - methods named `connect`, `new`, `with_timeout`, `with_metadata`,
///   `channel` or `clone`,
///   which the client has already (rename the method and keep the wire name
///   with `#[rpc(name = "connect")]`);
/// - unknown options, an option given twice, a value given to a flag
///   (`blocking = true`), empty wire names or wire names with `.`, and two
///   methods with one wire id.
///
/// Independent mistakes are reported together. A refused trait is still
/// emitted, so its uses elsewhere do not add errors. An argument or return
/// type that is not `Serialize`/`Deserialize` is reported under that type.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let item = match ast::trait_item(input.clone()) {
        Ok(item) => item,
        Err(err) => return expand::refused_item(input, err).into(),
    };
    let mut errors = ast::Errors::default();
    let service = ast::Service::parse(args.into(), &item, &mut errors);
    validate::service(&service, &mut errors);
    match errors.finish() {
        Ok(()) => expand::service(&service),
        Err(err) => expand::refused_service(&service, err),
    }
    .into()
}
