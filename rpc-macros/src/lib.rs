//! The `#[service]` attribute macro. Use it through the `rpc` crate
//! (`#[rpc::service]`), whose docs list what it generates.
//!
//! Stages: [`ast`] parses the trait into a model of the service, [`validate`]
//! checks one rule per function, [`expand`] writes the trait, the wire ids, the
//! client and the server.

mod ast;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait into an RPC service. See the `rpc` crate for the full docs.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::ItemTrait>(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let span = proc_macro2::TokenStream::from(input);
            return syn::Error::new_spanned(span, "#[rpc::service] goes on a trait")
                .into_compile_error()
                .into();
        }
    };
    let expanded = ast::Service::parse(args.into(), &item).and_then(|service| {
        validate::service(&service)?;
        Ok(expand::service(&service))
    });
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // Still emit the user's trait, so one mistake does not cascade into
            // "cannot find trait" errors everywhere it is used.
            let mut tokens = expand::plain_trait(item);
            tokens.extend(err.into_compile_error());
            tokens.into()
        }
    }
}
