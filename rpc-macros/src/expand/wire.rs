//! What travels for each method: the types each side encodes and decodes,
//! and the method id. `Vec<u8>` and `&[u8]` travel as one block of bytes
//! (`BytesRef` out, `ByteBuf` in), which encodes exactly like the
//! element-by-element form. `args.rs` and `output.rs` write the code.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use crate::ast::{Arg, ArgKind, Method};

/// Generated items, and the expression that uses them.
pub(super) struct Generated {
    pub(super) items: TokenStream,
    pub(super) expr: TokenStream,
}

/// The argument's name (patterns are refused by validation).
pub(super) fn arg_ident(arg: &Arg) -> Ident {
    match arg.pat {
        syn::Pat::Ident(p) => p.ident.clone(),
        _ => format_ident!("__rpc_arg"),
    }
}

/// The return type as the client's method declares it, `()` when the method
/// declares none.
pub(super) fn output_type(method: &Method) -> TokenStream {
    match method.output.ty() {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// The method id as a literal.
pub(super) fn id_literal(method: &Method) -> syn::LitInt {
    syn::LitInt::new(&format!("{:#018x}u64", method.id()), method.name_span)
}

/// The schema fingerprint as a literal (see `shape.rs`).
pub(super) fn fingerprint_literal(method: &Method) -> syn::LitInt {
    syn::LitInt::new(
        &format!("{:#018x}u64", method.fingerprint()),
        method.name_span,
    )
}

/// The type the client serializes for an argument of the tuple: the
/// referent of a borrow.
pub(super) fn sent_type(arg: &Arg) -> TokenStream {
    match arg.kind {
        ArgKind::Bytes | ArgKind::BytesRef => quote!([::core::primitive::u8]),
        _ => {
            let ty = arg.kind.referent(arg.ty);
            quote!(#ty)
        }
    }
}

/// The type the server decodes an argument of the tuple as (a stream
/// argument is not in it).
pub(super) fn decoded_type(arg: &Arg) -> TokenStream {
    let span = arg.span();
    match arg.kind {
        ArgKind::Bytes | ArgKind::BytesRef => quote_spanned!(span=> ::rpc::__private::ByteBuf),
        ArgKind::Str => quote_spanned!(span=> ::rpc::__private::String),
        ArgKind::Slice(elem) => quote_spanned!(span=> ::rpc::__private::Vec<#elem>),
        ArgKind::Owned | ArgKind::RefMut | ArgKind::Ref | ArgKind::Stream(_) => {
            let ty = arg.kind.referent(arg.ty);
            quote!(#ty)
        }
    }
}
