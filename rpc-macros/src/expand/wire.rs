//! How each method's arguments and return value travel: the client sends the
//! arguments as one tuple (borrowed where the trait borrows), the server decodes
//! the same tuple as owned values. Also the compile-time checks that put a
//! "not `Serialize`" error under the user's type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use crate::ast::{Arg, ArgKind, Method, Service};

/// The argument's name (patterns are refused by validation).
pub(super) fn arg_ident(arg: &Arg) -> Ident {
    match arg.pat {
        syn::Pat::Ident(p) => p.ident.clone(),
        _ => format_ident!("__rpc_arg"),
    }
}

/// The type the server decodes an argument as.
pub(super) fn owned_type(arg: &Arg) -> TokenStream {
    let span = arg.span();
    match arg.kind {
        ArgKind::Owned | ArgKind::RefMut => {
            let ty = arg.ty;
            quote!(#ty)
        }
        ArgKind::Str => quote_spanned!(span=> ::rpc::__private::String),
        ArgKind::Slice(elem) => quote_spanned!(span=> ::rpc::__private::Vec<#elem>),
        ArgKind::Ref(elem) => quote!(#elem),
    }
}

/// The type the client serializes for an argument (the referent of a borrow).
fn sent_type(arg: &Arg) -> TokenStream {
    match arg.kind {
        ArgKind::Owned | ArgKind::RefMut => {
            let ty = arg.ty;
            quote!(#ty)
        }
        ArgKind::Str => quote!(str),
        ArgKind::Slice(elem) => quote!([#elem]),
        ArgKind::Ref(elem) => quote!(#elem),
    }
}

/// The return type, `()` when the method declares none.
pub(super) fn output_type(method: &Method) -> TokenStream {
    match method.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// The method id as a literal.
pub(super) fn id_literal(method: &Method) -> syn::LitInt {
    syn::LitInt::new(&format!("{:#018x}u64", method.id()), method.name_span)
}

/// Cfg attributes of the method, to gate everything generated for it.
pub(super) fn cfgs<'a>(method: &'a Method) -> impl Iterator<Item = &'a &'a syn::Attribute> {
    method
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
}

/// Checks, spanned on the user's tokens, that every argument can be sent and
/// received and so can the return value. Without them the error would point
/// at `#[rpc::service]`.
pub(super) fn type_checks(service: &Service) -> TokenStream {
    let checks = service.methods.iter().map(|method| {
        let cfgs = cfgs(method);
        let args = method.args.iter().map(|arg| {
            let span = arg.span();
            let sent = sent_type(arg);
            let owned = owned_type(arg);
            quote_spanned! {span=>
                ::rpc::__private::assert_serialize::<#sent>();
                ::rpc::__private::assert_deserialize::<#owned>();
            }
        });
        let output = method.output.map(|ty| {
            quote_spanned! {syn::spanned::Spanned::span(ty)=>
                ::rpc::__private::assert_serialize::<#ty>();
                ::rpc::__private::assert_deserialize::<#ty>();
            }
        });
        quote! {
            #(#cfgs)*
            {
                #(#args)*
                #output
            }
        }
    });
    quote! {
        const _: () = {
            #(#checks)*
        };
    }
}
