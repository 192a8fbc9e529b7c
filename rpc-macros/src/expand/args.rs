//! The arguments: the client sends them as one tuple (borrowed where the
//! trait borrows); the server decodes the same tuple as owned values. A
//! stream argument is not in the tuple: its items follow the call.
//!
//! Each side writes a small struct with its own `Serialize`/`Deserialize`
//! impl, as serde_derive does, rather than using a tuple: every element is
//! then its own call, spanned on the user's type, so "`Foo: Serialize` is not
//! satisfied" lands under `Foo` in the user's method, once, instead of under
//! `#[rpc::service]`. The encoding is exactly a tuple's (`serialize_tuple`,
//! `deserialize_tuple`), so it does not depend on the codec.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Index};

use super::wire::{Generated, arg_ident, decoded_type, sent_type};
use crate::ast::{Arg, ArgKind, Method};

/// Client side: a struct borrowing every argument, serialized as a tuple, and
/// the expression `&__RpcArgs(..)` to pass to `Channel::call`.
pub(super) fn encode_args(method: &Method) -> Generated {
    let args: Vec<&Arg> = method.tuple_args().collect();
    if args.is_empty() {
        return Generated {
            items: TokenStream::new(),
            expr: quote!(&()),
        };
    }
    let len = args.len();
    let fields = args.iter().map(|arg| {
        let ty = sent_type(arg);
        quote!(&'__rpc #ty)
    });
    let values = args.iter().map(|arg| {
        let name = arg_ident(arg);
        match arg.kind {
            ArgKind::Owned | ArgKind::Bytes | ArgKind::RefMut => quote!(&#name),
            _ => quote!(#name),
        }
    });
    let elements = args.iter().copied().enumerate().map(serialize_element);
    let items = quote! {
        struct __RpcArgs<'__rpc>(#(#fields),*);

        impl ::rpc::__private::serde::Serialize for __RpcArgs<'_> {
            fn serialize<__S: ::rpc::__private::serde::Serializer>(
                &self,
                __rpc_serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                let mut __rpc_tuple =
                    ::rpc::__private::serde::Serializer::serialize_tuple(__rpc_serializer, #len)?;
                #(#elements)*
                ::rpc::__private::serde::ser::SerializeTuple::end(__rpc_tuple)
            }
        }
    };
    Generated {
        items,
        expr: quote!(&__RpcArgs(#(#values),*)),
    }
}

/// The primitive scalar types (by their plain names): arguments of only
/// these are decoded as a tuple without the guard against deep or huge input
/// (`rpc::__private::FlatArgs`, which also checks at compile time that the
/// names mean the primitives).
const SCALARS: &[&str] = &[
    "bool", "char", "f32", "f64", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32",
    "u64", "u128", "usize",
];

/// The decoded types of the arguments, if every one is a primitive scalar
/// (by value or by reference).
fn scalar_types<'a>(method: &Method<'a>) -> Option<Vec<&'a syn::Type>> {
    method
        .tuple_args()
        .map(|arg| match arg.kind {
            ArgKind::Owned | ArgKind::Ref => {
                let ty = arg.kind.referent(arg.ty);
                is_scalar(ty).then_some(ty)
            }
            _ => None,
        })
        .collect()
}

pub(super) fn is_scalar(ty: &syn::Type) -> bool {
    let syn::Type::Path(path) = crate::ast::ungroup(ty) else {
        return false;
    };
    path.qself.is_none()
        && path.path.leading_colon.is_none()
        && path.path.segments.len() == 1
        && path.path.segments[0].arguments.is_none()
        && SCALARS.iter().any(|s| path.path.segments[0].ident == s)
}

/// Server side: the type `__RpcArgs` owning every decoded argument, and
/// whether it is a tuple of scalars, to decode with `Call::flat_args`.
/// Otherwise it is a struct deserialized as a tuple (the same bytes), decoded
/// with `Call::args`.
pub(super) fn decode_args(method: &Method) -> (TokenStream, bool) {
    if let Some(types) = scalar_types(method) {
        return (quote!(type __RpcArgs = (#(#types,)*);), true);
    }
    (decode_struct_args(method), false)
}

/// A struct `__RpcArgs` owning every decoded argument, deserialized as a
/// tuple.
fn decode_struct_args(method: &Method) -> TokenStream {
    let args: Vec<&Arg> = method.tuple_args().collect();
    let len = args.len();
    let expecting = format!("the arguments of `{}`", method.full_name);
    let types = args.iter().copied().map(decoded_type);
    let names: Vec<Ident> = (0..len).map(|i| format_ident!("__rpc_{}", i)).collect();
    let reads = args
        .iter()
        .copied()
        .zip(&names)
        .enumerate()
        .map(read_element);
    let items = quote! {
        struct __RpcArgs(#(#types),*);

        impl<'de> ::rpc::__private::serde::Deserialize<'de> for __RpcArgs {
            fn deserialize<__D: ::rpc::__private::serde::Deserializer<'de>>(
                __rpc_deserializer: __D,
            ) -> ::core::result::Result<Self, __D::Error> {
                struct __RpcVisitor;

                impl<'de> ::rpc::__private::serde::de::Visitor<'de> for __RpcVisitor {
                    type Value = __RpcArgs;

                    fn expecting(
                        &self,
                        __rpc_f: &mut ::core::fmt::Formatter<'_>,
                    ) -> ::core::fmt::Result {
                        ::core::fmt::Formatter::write_str(__rpc_f, #expecting)
                    }

                    fn visit_seq<__A: ::rpc::__private::serde::de::SeqAccess<'de>>(
                        self,
                        mut __rpc_seq: __A,
                    ) -> ::core::result::Result<__RpcArgs, __A::Error> {
                        #(#reads)*
                        ::core::result::Result::Ok(__RpcArgs(#(#names),*))
                    }
                }

                ::rpc::__private::serde::Deserializer::deserialize_tuple(
                    __rpc_deserializer, #len, __RpcVisitor,
                )
            }
        }
    };
    items
}

/// The expressions that lend the fields of `__rpc_args` to the handler, in
/// the trait's order: the stream argument is `__rpc_stream` (see
/// [`stream_arg`]), and takes no place in the tuple.
pub(super) fn handler_values(method: &Method) -> Vec<TokenStream> {
    let mut position = 0;
    method
        .args
        .iter()
        .map(|arg| {
            if let ArgKind::Stream(_) = arg.kind {
                return quote!(__rpc_stream);
            }
            let index = Index::from(position);
            position += 1;
            match arg.kind {
                ArgKind::Owned | ArgKind::RefMut => quote!(__rpc_args.#index),
                ArgKind::Bytes => quote!(__rpc_args.#index.0),
                ArgKind::BytesRef => quote!(&__rpc_args.#index.0),
                ArgKind::Str | ArgKind::Slice(_) | ArgKind::Ref => quote!(&__rpc_args.#index),
                ArgKind::Stream(_) => unreachable!("handled above"),
            }
        })
        .collect()
}

/// Server side: `let __rpc_stream = ..;`, the stream argument's items as
/// they arrive, if the method takes one. A missing `Deserialize` on the
/// item type is reported under it.
pub(super) fn stream_arg(method: &Method) -> TokenStream {
    match method.stream_arg() {
        Some((_, item)) => quote_spanned! {item.span()=>
            let __rpc_stream = __rpc_call.stream_arg::<#item>();
        },
        None => TokenStream::new(),
    }
}

/// Serializes field `i` of `__RpcArgs`; a missing `Serialize` is reported
/// under the argument's type.
fn serialize_element((i, arg): (usize, &Arg)) -> TokenStream {
    let index = Index::from(i);
    let (ty, value) = match arg.kind {
        ArgKind::Bytes | ArgKind::BytesRef => (
            quote!(::rpc::__private::BytesRef<'_>),
            quote!(&::rpc::__private::BytesRef(self.#index)),
        ),
        _ => (sent_type(arg), quote!(self.#index)),
    };
    quote_spanned! {arg.span()=>
        ::rpc::__private::serde::ser::SerializeTuple::serialize_element::<#ty>(
            &mut __rpc_tuple, #value,
        )?;
    }
}

/// Reads argument `i` into `name`; a missing `Deserialize` is reported under
/// the argument's type.
fn read_element((i, (arg, name)): (usize, (&Arg, &Ident))) -> TokenStream {
    let ty = decoded_type(arg);
    quote_spanned! {arg.span()=>
        let #name = match ::rpc::__private::serde::de::SeqAccess::next_element::<#ty>(
            &mut __rpc_seq,
        )? {
            ::core::option::Option::Some(__rpc_value) => __rpc_value,
            ::core::option::Option::None => {
                return ::core::result::Result::Err(
                    ::rpc::__private::serde::de::Error::invalid_length(#i, &self),
                );
            }
        };
    }
}
