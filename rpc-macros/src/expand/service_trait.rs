//! The trait itself, rewritten so that every handler future is `Send`: an
//! `async fn` becomes `fn .. -> impl Future<Output = T> + Send`, which an impl
//! may still write as `async fn`, and a non-`Send` body is then reported at
//! the user's method in their impl. A `#[rpc(blocking)]` method is a plain
//! `fn` and stays one: it has no future, and runs on a thread of its own.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ReturnType, TraitItem, TraitItemFn};

use crate::ast::Service;

pub(super) fn expand(service: &Service) -> TokenStream {
    let mut item = service.item.clone();
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            f.attrs.retain(|a| !a.path().is_ident("rpc"));
            for input in &mut f.sig.inputs {
                if let FnArg::Typed(t) = input {
                    t.attrs.retain(|a| !a.path().is_ident("rpc"));
                }
            }
            quiet_patterns(f);
            make_send(f);
        }
    }
    quote!(#item)
}

/// The trait is the schema: a crate that only calls the service through the
/// client uses it, though nothing there implements it. An `allow(dead_code)`
/// item counts as used, and so do the trait and methods it names; without
/// it such a crate is warned that the trait is never used.
pub(super) fn mark_used(service: &Service) -> TokenStream {
    let trait_ident = &service.item.ident;
    let methods = service.methods.iter().map(|m| {
        let cfgs = m.cfgs();
        let ident = m.ident;
        quote!(#(#cfgs)* let _ = <__RpcT as #trait_ident>::#ident;)
    });
    quote! {
        const _: () = {
            #[allow(dead_code, deprecated)]
            fn __rpc_schema<__RpcT: #trait_ident + ::core::marker::Sync>() {
                #(#methods)*
            }
        };
    }
}

/// `async fn m(..) -> T` becomes `fn m(..) -> impl Future<Output = T> + Send`.
fn make_send(f: &mut TraitItemFn) {
    let Some(async_token) = f.sig.asyncness.take() else {
        return;
    };
    // "required by this bound" notes point at the declared return type.
    let (output, span) = match &f.sig.output {
        ReturnType::Default => (quote!(()), f.sig.ident.span()),
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
    };
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

/// A pattern argument is refused by validation; in a method without a body
/// rustc would refuse it too, so it becomes `_` to report it only once.
fn quiet_patterns(f: &mut TraitItemFn) {
    if f.default.is_some() {
        return;
    }
    for input in &mut f.sig.inputs {
        if let FnArg::Typed(t) = input
            && !matches!(*t.pat, syn::Pat::Ident(_))
        {
            let span: Span = t.pat.span();
            *t.pat = syn::parse_quote_spanned!(span=> _);
        }
    }
}
