//! The return value: the server encodes it and the client decodes it through
//! newtypes whose impls name the user's type, so a missing `Serialize` or
//! `Deserialize` is reported under the return type. `Vec<u8>` travels as one
//! block of bytes. A returned stream is the runtime's to send and receive,
//! item by item; it is named here by its item (and error) type.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wire::{Generated, arg_ident};
use crate::ast::{Method, Output};

/// Client side: the channel's call that sends `call` (the method's spec and
/// its arguments' tuple) and the stream argument, if any, and gives the
/// reply as the method's return type.
pub(super) fn client_call(method: &Method, call: TokenStream) -> Generated {
    let reply = match method.output {
        Output::Stream { item, .. } => {
            let (c, outbound) = outbound(method);
            return Generated {
                items: TokenStream::new(),
                expr: quote!(self.channel.stream::<_, #c, #item>(#call, #outbound)),
            };
        }
        Output::StreamResult { item, error, .. } => {
            let (c, outbound) = outbound(method);
            return Generated {
                items: TokenStream::new(),
                expr: quote!(
                    self.channel.stream_result::<_, #c, #item, #error>(#call, #outbound)
                ),
            };
        }
        Output::Unit => Reply::flat(quote!(|(): ()| ())),
        // A primitive scalar, decoded as a 1-tuple (the same bytes) without
        // the guard (`rpc::__private::FlatArgs` checks the name at compile
        // time).
        Output::Value(ty) if super::args::is_scalar(ty) => {
            Reply::flat(quote!(|(__rpc_out,): (#ty,)| __rpc_out))
        }
        Output::Bytes(_) => Reply::unwrap(quote!(::rpc::__private::ByteBuf)),
        Output::Value(ty) => Reply::newtype(ty),
    };
    let map = &reply.map;
    let expr = match method.stream_arg() {
        // The item type is named so that a missing `Serialize` is reported
        // under it rather than under the argument's name.
        Some((arg, item)) => {
            let stream = arg_ident(arg);
            quote!(self.channel.upload::<_, #item, _, _>(#call, #stream, #map))
        }
        None if reply.flat => quote!(self.channel.call_flat(#call, #map)),
        None => quote!(self.channel.call(#call, #map)),
    };
    Generated {
        items: reply.items,
        expr,
    }
}

/// The stream argument's item type and `Option` of it, for the channel's
/// streaming calls; `()` and `None` for a method without one.
fn outbound(method: &Method) -> (TokenStream, TokenStream) {
    match method.stream_arg() {
        Some((arg, item)) => {
            let stream = arg_ident(arg);
            (quote!(#item), quote!(::core::option::Option::Some(#stream)))
        }
        None => (
            quote!(()),
            quote!(::core::option::Option::<::rpc::Stream<()>>::None),
        ),
    }
}

/// How the client decodes a unary reply: the `map` from what is decoded to
/// the return type, given to the channel's call, which applies it inside
/// the call's own future (an `async` block around the call would double its
/// size).
struct Reply {
    items: TokenStream,
    map: TokenStream,
    /// Whether the decoded value is primitive scalars only, which
    /// `Channel::call_flat` decodes without the guard against deep input.
    flat: bool,
}

impl Reply {
    fn flat(map: TokenStream) -> Self {
        Reply {
            items: TokenStream::new(),
            map,
            flat: true,
        }
    }

    /// Decodes the newtype `wrapper`, then unwraps it.
    fn unwrap(wrapper: TokenStream) -> Self {
        Reply {
            items: TokenStream::new(),
            map: quote!(|__rpc_out: #wrapper| __rpc_out.0),
            flat: false,
        }
    }

    /// Decodes `ty` through a newtype whose impl names it, so that a missing
    /// `Deserialize` is reported under the user's return type.
    fn newtype(ty: &syn::Type) -> Self {
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
        Reply {
            items,
            ..Reply::unwrap(quote!(__RpcOut))
        }
    }
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
        // The item and error types are named, so that a missing `Serialize`
        // is reported under them.
        Output::Stream { item, .. } => Generated {
            items: TokenStream::new(),
            expr: quote_spanned!(item.span()=> __rpc_call.reply_stream::<#item>(__rpc_out)),
        },
        Output::StreamResult { item, error, .. } => Generated {
            items: TokenStream::new(),
            expr: quote!(__rpc_call.reply_stream_result::<#item, #error>(__rpc_out)),
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
