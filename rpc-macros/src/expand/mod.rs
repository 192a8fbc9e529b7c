//! Code generation: one file per generated item. Nothing here parses or
//! validates; it reads the model in `ast.rs`.

mod client;
mod server;
mod service_trait;
mod wire;

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::Service;

/// Everything the macro emits for a valid service.
pub(crate) fn service(service: &Service) -> TokenStream {
    let service_trait = service_trait::expand(service);
    let checks = wire::type_checks(service);
    let client = client::expand(service);
    let server = server::expand(service);
    quote! {
        #service_trait
        #checks
        #client
        #server
    }
}

/// The user's trait with our `#[rpc(..)]` attributes removed: emitted next to
/// the errors when the trait is refused, so one mistake does not cascade.
pub(crate) fn plain_trait(mut item: syn::ItemTrait) -> TokenStream {
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(f) = trait_item {
            f.attrs.retain(|a| !a.path().is_ident("rpc"));
        }
    }
    quote!(#item)
}
