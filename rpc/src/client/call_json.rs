//! [`Channel::call_json`]: a call named and given its arguments at run
//! time, in JSON, for tools (feature `json`).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use super::Channel;
use super::method::Method;
use crate::{Error, Format};

impl Channel {
    /// Calls `method` (`"Service.method"`, the trait's name and the
    /// method's, or the names pinned with `#[rpc(name = "..")]`) with
    /// `args`, a JSON array of one element per argument, and returns the
    /// method's return value as JSON: what a command-line tool needs to
    /// call any method without its Rust types. The channel must be built
    /// with [`Format::Json`] (`Channel::builder().format(rpc::Format::Json)`).
    ///
    /// Values are as serde_json writes the Rust types: structs are objects,
    /// enums externally tagged (a `Result` is `{"Ok": ..}` or
    /// `{"Err": ..}`), `()` is `null`, byte buffers are arrays of numbers.
    ///
    /// Unary methods only: the server sees an ordinary call and cannot tell
    /// a tool's call from a generated client's. A method that returns a
    /// stream answers `null` (the stream's head) and its items are dropped
    /// by this client; one that takes a stream waits for items that never
    /// come, until the call's deadline. The call is never retried on
    /// another server after it may have run (as a method that is not
    /// `#[rpc(idempotent)]`).
    ///
    /// Each distinct method name is kept for the life of the process
    /// (errors name it as `&'static str`): call it with the names of a
    /// service, not with names made up without bound.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), rpc::Error> {
    /// let channel = rpc::Channel::builder()
    ///     .format(rpc::Format::Json)
    ///     .connect("127.0.0.1:7878")
    ///     .await?;
    /// let sum = channel
    ///     .call_json("Calculator.add", serde_json::json!([2, 3]))
    ///     .await?;
    /// assert_eq!(sum, serde_json::json!(5));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] on a channel built with another format;
    /// [`Error::Encode`] if `args` is not an array; [`Error::Decode`] (side
    /// `"request on the server"`) if the server cannot read the arguments
    /// as the method's (wrong types, too few); [`Error::UnknownMethod`] for
    /// a name the server does not serve; otherwise as any call.
    pub async fn call_json(&self, method: &str, args: Value) -> Result<Value, Error> {
        let name = intern(method);
        let format = self.config().format;
        if format != Format::Json {
            return Err(Error::Config(format!(
                "`call_json(\"{method}\", ..)` needs a channel built with \
                 `Channel::builder().format(rpc::Format::Json)`; this one speaks {format}"
            )));
        }
        let args = match args {
            // A method without arguments takes `()`, which is `null`.
            Value::Array(args) if args.is_empty() => Value::Null,
            args @ Value::Array(_) => args,
            other => {
                return Err(Error::Encode {
                    method: name,
                    message: format!(
                        "the arguments must be a JSON array of one element per argument, not {other}"
                    ),
                });
            }
        };
        let method = Method {
            name,
            id: crate::protocol::method_id(method),
            idempotent: false,
            key: None,
            no_deadline: false,
            // A tool knows no shape; JSON names what does not fit anyway.
            fingerprint: super::method::UNCHECKED,
            shape: "",
        };
        self.call(method, &args, |value: Value| value).await
    }
}

/// The name as `&'static str`, leaked once per distinct name.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}
