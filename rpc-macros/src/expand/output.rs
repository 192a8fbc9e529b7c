//! The return value: the server encodes it and the client decodes it through
//! newtypes whose impls name the user's type, so a missing `Serialize` or
//! `Deserialize` is reported under the return type. `Vec<u8>` travels as one
//! block of bytes.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::wire::Generated;
use crate::ast::{Method, Output};

/// Client side: what `Channel::call` decodes (`R`), and the expression that
/// turns the call future's `Result<R, _>` into the method's.
pub(super) fn decode_output(method: &Method, call: TokenStream) -> Generated {
    match method.output {
        Output::Unit => Generated {
            items: TokenStream::new(),
            expr: quote!(self.channel.call_flat(#call, |(): ()| ())),
        },
        // A primitive scalar, decoded as a 1-tuple (the same bytes) without
        // the guard (`rpc::__private::FlatArgs` checks the name at compile
        // time).
        Output::Value(ty) if super::args::is_scalar(ty) => Generated {
            items: TokenStream::new(),
            expr: quote!(self.channel.call_flat(#call, |(__rpc_out,): (#ty,)| __rpc_out)),
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

/// Decodes the reply as the newtype `wrapper`, then unwraps it: inside the
/// call's own future (an `async` block around it would double its size).
fn map_output(wrapper: TokenStream, call: TokenStream) -> TokenStream {
    quote! {
        self.channel.call(#call, |__rpc_out: #wrapper| __rpc_out.0)
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
