//! The trait itself, rewritten so that every handler future is `Send`: an
//! `async fn` becomes `fn .. -> impl Future<Output = T> + Send`, which an impl
//! may still write as `async fn`, and a non-`Send` body is then reported at
//! the user's method in their impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, TraitItem};

use crate::ast::Service;

pub(super) fn expand(service: &Service) -> TokenStream {
    let mut item = service.item.clone();
    for trait_item in &mut item.items {
        let TraitItem::Fn(f) = trait_item else {
            continue;
        };
        f.attrs.retain(|a| !a.path().is_ident("rpc"));
        let Some(async_token) = f.sig.asyncness.take() else {
            continue;
        };
        let output = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        let span = f.sig.output.span();
        f.sig.output = syn::parse_quote_spanned! {span=>
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
        if let Some(body) = f.default.take() {
            // The default body borrows `&self` across awaits: `Self: Sync`
            // makes that future `Send`.
            f.sig
                .generics
                .make_where_clause()
                .predicates
                .push(syn::parse_quote!(Self: ::core::marker::Sync));
            let block = quote_spanned!(async_token.span()=> { async move #body });
            f.default = Some(syn::parse2(block).expect("an async block is a block"));
        }
    }
    quote!(#item)
}
