//! The `#[service]` attribute macro. Use it through the `rpc` crate
//! (`#[rpc::service]`).
//!
//! Stages: [`ast`] parses the trait into a model of the service, [`validate`]
//! checks one rule per function, [`expand`] writes the trait, the wire ids, the
//! client and the server.

mod ast;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait into an RPC service.
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
