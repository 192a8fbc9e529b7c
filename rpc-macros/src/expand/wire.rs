//! How each method's arguments and return value travel.
//!
//! The client sends the arguments as one tuple (borrowed where the trait
//! borrows); the server decodes the same tuple as owned values. Each side
//! writes a small struct with its own `Serialize`/`Deserialize` impl, as
//! serde_derive does, rather than using a tuple: every element is then its own
//! spanned call, so "`Foo: Serialize` is not satisfied" lands under `Foo` in
//! the user's method, once, instead of under `#[rpc::service]`. The encoding
//! is exactly a tuple's (`serialize_tuple`/`deserialize_tuple`).
//!
//! `Vec<u8>` and `&[u8]` travel as one block of bytes (`BytesRef` out,
//! `ByteBuf` in), which encodes exactly like the element-by-element form.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Index};

use crate::ast::{Arg, ArgKind, Method, Output};

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

/// The type the client serializes for an argument: the referent of a borrow.
fn sent_type(arg: &Arg) -> TokenStream {
    match arg.kind {
        ArgKind::Bytes | ArgKind::BytesRef => quote!([::core::primitive::u8]),
        _ => {
            let ty = arg.kind.referent(arg.ty);
            quote!(#ty)
        }
    }
}

/// The type the server decodes an argument as.
fn decoded_type(arg: &Arg) -> TokenStream {
    let span = arg.span();
    match arg.kind {
        ArgKind::Bytes | ArgKind::BytesRef => quote_spanned!(span=> ::rpc::__private::ByteBuf),
        ArgKind::Str => quote_spanned!(span=> ::rpc::__private::String),
        ArgKind::Slice(elem) => quote_spanned!(span=> ::rpc::__private::Vec<#elem>),
        ArgKind::Owned | ArgKind::RefMut | ArgKind::Ref => {
            let ty = arg.kind.referent(arg.ty);
            quote!(#ty)
        }
    }
}

/// Client side: a struct borrowing every argument, serialized as a tuple, and
/// the expression `&__RpcArgs(..)` to pass to `Channel::request`.
pub(super) fn encode_args(method: &Method) -> Generated {
    if method.args.is_empty() {
        return Generated {
            items: TokenStream::new(),
            expr: quote!(&()),
        };
    }
    let len = method.args.len();
    let fields = method.args.iter().map(|arg| {
        let ty = sent_type(arg);
        quote!(&'__rpc #ty)
    });
    let values = method.args.iter().map(|arg| {
        let name = arg_ident(arg);
        match arg.kind {
            ArgKind::Owned | ArgKind::Bytes | ArgKind::RefMut => quote!(&#name),
            _ => quote!(#name),
        }
    });
    let elements = method.args.iter().enumerate().map(|(i, arg)| {
        let index = Index::from(i);
        let span = arg.span();
        let (ty, value) = match arg.kind {
            ArgKind::Bytes | ArgKind::BytesRef => (
                quote!(::rpc::__private::BytesRef<'_>),
                quote!(&::rpc::__private::BytesRef(self.#index)),
            ),
            _ => (sent_type(arg), quote!(self.#index)),
        };
        quote_spanned! {span=>
            ::rpc::__private::serde::ser::SerializeTuple::serialize_element::<#ty>(
                &mut __rpc_tuple, #value,
            )?;
        }
    });
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

/// Server side: a struct owning every decoded argument, deserialized as a
/// tuple, and the expressions that lend its fields to the handler.
pub(super) fn decode_args(method: &Method) -> (TokenStream, Vec<TokenStream>) {
    if method.args.is_empty() {
        return (
            quote!(
                type __RpcArgs = ();
            ),
            Vec::new(),
        );
    }
    let len = method.args.len();
    let expecting = format!("the arguments of `{}`", method.full_name);
    let types = method.args.iter().map(decoded_type);
    let names: Vec<Ident> = (0..len).map(|i| format_ident!("__rpc_{}", i)).collect();
    let reads = method
        .args
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (arg, name))| {
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
        });
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
    let pass = method
        .args
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            let index = Index::from(i);
            match arg.kind {
                ArgKind::Owned | ArgKind::RefMut => quote!(__rpc_args.#index),
                ArgKind::Bytes => quote!(__rpc_args.#index.0),
                ArgKind::BytesRef => quote!(&__rpc_args.#index.0),
                ArgKind::Str | ArgKind::Slice(_) | ArgKind::Ref => quote!(&__rpc_args.#index),
            }
        })
        .collect();
    (items, pass)
}

/// Client side: what `Channel::call` decodes (`R`), and the expression that
/// turns the call future's `Result<R, _>` into the method's.
pub(super) fn decode_output(method: &Method, call: TokenStream) -> Generated {
    match method.output {
        Output::Unit => Generated {
            items: TokenStream::new(),
            expr: quote!(self.channel.call::<()>(#call)),
        },
        Output::Bytes(_) => Generated {
            items: TokenStream::new(),
            expr: map_output(quote!(::rpc::__private::ByteBuf), call),
        },
        Output::Value(ty) => {
            let items = quote_spanned! {ty.span()=>
                struct __RpcOut(#ty);

                impl<'de> ::rpc::__private::serde::Deserialize<'de> for __RpcOut {
                    fn deserialize<__D: ::rpc::__private::serde::Deserializer<'de>>(
                        __rpc_deserializer: __D,
                    ) -> ::core::result::Result<Self, __D::Error> {
                        ::core::result::Result::map(
                            <#ty as ::rpc::__private::serde::Deserialize<'de>>::deserialize(
                                __rpc_deserializer,
                            ),
                            __RpcOut,
                        )
                    }
                }
            };
            Generated {
                items,
                expr: map_output(quote!(__RpcOut), call),
            }
        }
    }
}

/// Decodes the reply as the newtype `wrapper`, then unwraps it.
fn map_output(wrapper: TokenStream, call: TokenStream) -> TokenStream {
    quote! {{
        let __rpc_call = self.channel.call::<#wrapper>(#call);
        async move {
            ::core::result::Result::map(__rpc_call.await, |__rpc_out| __rpc_out.0)
        }
    }}
}

/// Server side: the reply frame for the handler's value `__rpc_out`.
pub(super) fn encode_output(method: &Method) -> Generated {
    match method.output {
        Output::Unit => Generated {
            items: TokenStream::new(),
            expr: quote!(__rpc_call.reply(&__rpc_out)),
        },
        Output::Bytes(_) => Generated {
            items: TokenStream::new(),
            expr: quote!(__rpc_call.reply(&::rpc::__private::BytesRef(&__rpc_out))),
        },
        Output::Value(ty) => {
            let items = quote_spanned! {ty.span()=>
                struct __RpcOut<'__rpc>(&'__rpc #ty);

                impl ::rpc::__private::serde::Serialize for __RpcOut<'_> {
                    fn serialize<__S: ::rpc::__private::serde::Serializer>(
                        &self,
                        __rpc_serializer: __S,
                    ) -> ::core::result::Result<__S::Ok, __S::Error> {
                        <#ty as ::rpc::__private::serde::Serialize>::serialize(
                            self.0,
                            __rpc_serializer,
                        )
                    }
                }
            };
            Generated {
                items,
                expr: quote!(__rpc_call.reply(&__RpcOut(&__rpc_out))),
            }
        }
    }
}
