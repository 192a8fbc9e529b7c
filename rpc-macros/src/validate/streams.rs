//! The rules for streams (`rpc::Stream<T>`): where one may appear, and the
//! options that do or do not go with one.

use syn::visit::Visit;
use syn::{TypePath, TypeReference};

use crate::ast::{ArgKind, Errors, Method, Output, stream_item, stream_path_item, ungroup};

/// Checks every stream rule for `method`.
pub(super) fn method(method: &Method, errors: &mut Errors) {
    one_stream_arg(method, errors);
    stream_is_not_key(method, errors);
    streams_are_whole(method, errors);
    blocking_does_not_stream(method, errors);
    no_deadline_needs_a_stream(method, errors);
}

/// A call carries one stream each way: the items of two would share one
/// sequence of frames, and which one an item belongs to would be lost.
fn one_stream_arg(method: &Method, errors: &mut Errors) {
    let streams = method
        .args
        .iter()
        .filter(|a| matches!(a.kind, ArgKind::Stream(_)));
    for arg in streams.skip(1) {
        errors.spanned(
            arg.ty,
            "only one argument can be a stream: a call sends one stream; merge them into one \
             `rpc::Stream` of an enum",
        );
    }
}

/// The key is hashed from the argument's value when the call is made, to
/// choose the server; a stream has no value then, only items to come.
fn stream_is_not_key(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        if let (ArgKind::Stream(_), Some(span)) = (&arg.kind, arg.key) {
            errors.error(
                span,
                "a stream cannot be `#[rpc(key)]`: the key is hashed when the call is made, \
                 before any item is sent; make another argument the key",
            );
        }
    }
}

/// A stream travels as frames of its own after the call starts, so it can
/// only be a whole argument or the whole reply (or the reply's `Ok`): inside
/// another value it would have to be encoded with it, and a borrowed one
/// would have nothing to lend on the other side.
fn streams_are_whole(method: &Method, errors: &mut Errors) {
    let mut find = Find(errors);
    for arg in &method.args {
        match arg.kind {
            ArgKind::Stream(item) => find.visit_type(item),
            _ => find.visit_type(arg.ty),
        }
    }
    match method.output {
        Output::Unit => {}
        Output::Value(ty) | Output::Bytes(ty) => find.visit_type(ty),
        Output::Stream { item, .. } => find.visit_type(item),
        Output::StreamResult { item, error, .. } => {
            find.visit_type(item);
            find.visit_type(error);
        }
    }
}

/// Reports each stream it visits: it is called only on types in which no
/// stream may be.
struct Find<'e>(&'e mut Errors);

impl<'ast> Visit<'ast> for Find<'_> {
    fn visit_type_reference(&mut self, r: &'ast TypeReference) {
        match stream_item(ungroup(&r.elem)) {
            Some(item) => {
                self.0.spanned(
                    r,
                    "a stream cannot be borrowed: its items are taken as they are sent or \
                     received; take or return `rpc::Stream<T>` by value",
                );
                self.visit_type(item);
            }
            None => syn::visit::visit_type_reference(self, r),
        }
    }

    fn visit_type_path(&mut self, p: &'ast TypePath) {
        match stream_path_item(p) {
            Some(item) => {
                self.0.spanned(
                    p,
                    "a stream cannot be inside another type: it must be a whole argument \
                     (`chunks: rpc::Stream<T>`) or the whole return type (`rpc::Stream<T>` or \
                     `Result<rpc::Stream<T>, E>`)",
                );
                self.visit_type(item);
            }
            None => syn::visit::visit_type_path(self, p),
        }
    }
}

/// A streaming handler awaits its stream's items or its reader; the blocking
/// pool runs a plain `fn` to its end, with nothing to await on.
fn blocking_does_not_stream(method: &Method, errors: &mut Errors) {
    if let Some(span) = method.options.blocking
        && method.is_streaming()
    {
        errors.error(
            span,
            "#[rpc(blocking)] cannot be used on a method with a stream: a stream is read or \
             written by async code; make it an `async fn` and move what blocks into \
             `rpc::context::spawn_blocking`",
        );
    }
}

/// The option lifts the default deadline from a reply that may go on for as
/// long as the caller reads it; a unary reply has no such reason.
fn no_deadline_needs_a_stream(method: &Method, errors: &mut Errors) {
    if let Some(span) = method.options.no_deadline
        && !method.returns_stream()
    {
        errors.error(
            span,
            "no_deadline applies to methods that return a stream (`rpc::Stream<T>` or \
             `Result<rpc::Stream<T>, E>`); a unary call keeps the channel's deadline",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::ast::{Errors, Service};

    /// The messages for a trait with one method, as `validate` gives them.
    fn errors(method: syn::TraitItemFn) -> Vec<String> {
        let item: syn::ItemTrait = syn::parse_quote!(trait Svc { #method });
        let mut errors = Errors::default();
        let service = Service::parse(quote::quote!(), &item, &mut errors);
        super::super::service(&service, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn starts(errors: &[String]) -> Vec<&str> {
        errors.iter().map(|e| &e[..e.find(':').unwrap()]).collect()
    }

    #[test]
    fn every_supported_stream_shape_passes() {
        for method in [
            syn::parse_quote!(
                async fn a(&self, x: u8, s: rpc::Stream<u8>) -> rpc::Stream<u8>;
            ),
            syn::parse_quote!(
                async fn b(&self, s: ::rpc::Stream<u8>) -> Result<u64, E>;
            ),
            syn::parse_quote!(
                async fn c(&self) -> std::result::Result<Stream<u8>, E>;
            ),
            syn::parse_quote!(
                #[rpc(no_deadline)]
                async fn d(&self) -> Stream<u8>;
            ),
            syn::parse_quote!(
                async fn e(&self, #[rpc(key)] k: u8, s: Stream<u8>);
            ),
        ] {
            assert_eq!(errors(method), Vec::<String>::new());
        }
    }

    #[test]
    fn a_misplaced_stream_is_reported_once() {
        let borrowed = "a stream cannot be borrowed";
        let nested = "a stream cannot be inside another type";
        for (method, expected) in [
            (
                syn::parse_quote!(
                    async fn a(&self, s: &mut rpc::Stream<u8>);
                ),
                borrowed,
            ),
            (
                syn::parse_quote!(
                    async fn b(&self, s: Vec<&rpc::Stream<u8>>);
                ),
                borrowed,
            ),
            (
                syn::parse_quote!(
                    async fn c(&self, s: Stream<Stream<u8>>);
                ),
                nested,
            ),
            (
                syn::parse_quote!(
                    async fn d(&self) -> Result<Stream<u8>, Stream<u8>>;
                ),
                nested,
            ),
            (
                syn::parse_quote!(
                    async fn e(&self) -> io::Result<Stream<u8>>;
                ),
                nested,
            ),
            (
                syn::parse_quote!(
                    async fn f(&self, s: Result<Stream<u8>, E>);
                ),
                nested,
            ),
        ] {
            assert_eq!(starts(&errors(method)), [expected]);
        }
    }

    #[test]
    fn a_borrow_in_a_stream_item_is_a_borrow() {
        let found = errors(syn::parse_quote!(
            async fn a(&self, s: Stream<&str>) -> u8;
        ));
        assert_eq!(
            starts(&found),
            ["a borrow is supported only as the whole argument (`&str`, `&[T]`, `&T`)"]
        );
    }
}
