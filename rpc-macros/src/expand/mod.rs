//! Code generation: one file per generated item (the trait, the client, the
//! server) and per thing that travels (arguments, return value).
//! Nothing here parses or validates; it reads the model in `ast.rs`.

mod args;
mod client;
mod output;
mod server;
mod service_trait;
mod wire;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Service;

/// Everything the macro emits for a valid service.
pub(crate) fn service(service: &Service) -> TokenStream {
    let service_trait = service_trait::expand(service);
    let used = service_trait::mark_used(service);
    let client = client::expand(service);
    let server = server::expand(service);
    quote! {
        #service_trait
        #used
        #client
        #server
    }
}

/// The trait, rewritten as for a valid service, and the errors: one mistake
/// must not cascade into "cannot find trait" errors wherever the trait is used.
pub(crate) fn refused_service(service: &Service, errors: syn::Error) -> TokenStream {
    let service_trait = service_trait::expand(service);
    let errors = errors.into_compile_error();
    quote! {
        #service_trait
        #errors
    }
}

/// The item unchanged, and the error that says it should be a trait.
pub(crate) fn refused_item(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote! {
        #item
        #error
    }
}
