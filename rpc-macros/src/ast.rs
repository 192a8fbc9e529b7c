//! A model of the service, parsed from the trait. Keeps the original syn nodes
//! for spans; no rule is enforced here beyond what parsing needs (see
//! `validate.rs`), and no code is generated here.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Item, ItemTrait, LitStr, TraitItem, TraitItemFn, Type};

mod options;
mod shapes;

pub(crate) use options::MethodOptions;
use shapes::{is_byte_vec, is_primitive, is_u8, stream_result};
pub(crate) use shapes::{stream_item, stream_path_item, ungroup};

/// The service: one annotated trait.
pub(crate) struct Service<'a> {
    pub(crate) item: &'a ItemTrait,
    /// The name on the wire: the trait's name unless pinned with `name = "..."`.
    pub(crate) wire_name: String,
    /// Where the wire name comes from (the `name = "..."` literal, or the ident).
    pub(crate) name_span: Span,
    pub(crate) methods: Vec<Method<'a>>,
    /// Trait items that are not methods (refused by validation).
    pub(crate) others: Vec<&'a TraitItem>,
}

/// One `fn` of the trait.
pub(crate) struct Method<'a> {
    pub(crate) item: &'a TraitItemFn,
    pub(crate) ident: &'a Ident,
    /// The method's own part of the wire name.
    pub(crate) wire_name: String,
    /// `"Service.method"`, as hashed into the method id.
    pub(crate) full_name: String,
    /// Where the wire name comes from (the `name = "..."` literal, or the ident).
    pub(crate) name_span: Span,
    /// `wire_name(T1, T2) -> R`, normalised (see `shape.rs`): what the
    /// schema fingerprint hashes.
    pub(crate) shape: String,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) output: Output<'a>,
    /// `#[doc]`, `#[cfg]`, `#[allow]`... carried to the generated items.
    pub(crate) attrs: Vec<&'a Attribute>,
    /// What its `#[rpc(..)]` attributes say.
    pub(crate) options: MethodOptions,
}

/// One argument after the receiver.
pub(crate) struct Arg<'a> {
    pub(crate) pat: &'a syn::Pat,
    pub(crate) ty: &'a Type,
    pub(crate) kind: ArgKind<'a>,
    /// `#[rpc(key)]`: the call's affinity key. The word's span.
    pub(crate) key: Option<proc_macro2::Span>,
}

/// How an argument travels: the client may lend it; the server always decodes
/// owned data and lends that to the handler.
pub(crate) enum ArgKind<'a> {
    /// `T` by value.
    Owned,
    /// `Vec<u8>` by value: one block of bytes, not a sequence of `u8`s.
    Bytes,
    /// `&str`: decoded as `String`.
    Str,
    /// `&[u8]` or `&Vec<u8>`: one block of bytes, lent to the handler.
    BytesRef,
    /// `&[T]`: decoded as `Vec<T>`.
    Slice(&'a Type),
    /// `&T`: decoded as `T`.
    Ref,
    /// `&mut T` (refused by validation).
    RefMut,
    /// `rpc::Stream<T>` by value, with its item type: sent item by item
    /// after the call starts, not in the arguments' tuple.
    Stream(&'a Type),
}

/// How the return value travels.
pub(crate) enum Output<'a> {
    /// No return type: `()`.
    Unit,
    /// Any other type, serialized as itself.
    Value(&'a Type),
    /// `Vec<u8>`: one block of bytes.
    Bytes(&'a Type),
    /// `rpc::Stream<T>`: the reply is a stream of `item`s.
    Stream { ty: &'a Type, item: &'a Type },
    /// `Result<rpc::Stream<T>, E>`: a stream of `item`s, or the
    /// application's `error` instead of one.
    StreamResult {
        ty: &'a Type,
        item: &'a Type,
        error: &'a Type,
    },
}

/// Attributes that describe an item and are copied to generated items.
const CARRIED: &[&str] = &[
    "doc",
    "cfg",
    "cfg_attr",
    "allow",
    "expect",
    "warn",
    "deny",
    "deprecated",
];

/// The annotated item, if it is a trait.
pub(crate) fn trait_item(input: TokenStream) -> syn::Result<ItemTrait> {
    const MESSAGE: &str = "#[rpc::service] goes on a trait: \
        `pub trait Name { async fn method(&self, ..) -> T; }`";
    let item = syn::parse2::<Item>(input)?;
    let keyword = match &item {
        Item::Trait(t) => return Ok(t.clone()),
        Item::Struct(s) => s.struct_token.span,
        Item::Enum(e) => e.enum_token.span,
        Item::Union(u) => u.union_token.span,
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Mod(m) => m.mod_token.span,
        Item::Type(t) => t.type_token.span,
        Item::TraitAlias(t) => t.trait_token.span,
        other => return Err(syn::Error::new_spanned(other, MESSAGE)),
    };
    Err(syn::Error::new(keyword, MESSAGE))
}

impl<'a> Service<'a> {
    /// Parses the service; mistakes go to `errors` and parsing goes on, so
    /// that validation can report its own findings in the same compile.
    pub(crate) fn parse(args: TokenStream, item: &'a ItemTrait, errors: &mut Errors) -> Self {
        let mut wire_name = item.ident.unraw_string();
        let mut name_span = item.ident.span();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let lit = meta.value()?.parse::<LitStr>()?;
                wire_name = lit.value();
                name_span = lit.span();
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[rpc::service] option: the only option is `name = \"...\"` \
                     (the service's name on the wire)",
                ))
            }
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, args) {
            errors.push(e);
        }
        let mut methods = Vec::new();
        let mut others = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => methods.push(Method::parse(&wire_name, f, errors)),
                other => others.push(other),
            }
        }
        Service {
            item,
            wire_name,
            name_span,
            methods,
            others,
        }
    }
}

impl<'a> Method<'a> {
    fn parse(service: &str, item: &'a TraitItemFn, errors: &mut Errors) -> Self {
        let ident = &item.sig.ident;
        let options = MethodOptions::parse(&item.attrs, errors);
        let (wire_name, name_span) = match &options.name {
            Some(lit) => (lit.value(), lit.span()),
            None => (ident.unraw_string(), ident.span()),
        };
        let args: Vec<Arg<'a>> = item
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(t) => Some(Arg {
                    pat: &t.pat,
                    ty: &t.ty,
                    kind: ArgKind::of(&t.ty),
                    key: options::parse_arg(&t.attrs, errors),
                }),
                syn::FnArg::Receiver(_) => None,
            })
            .collect();
        let attrs = item
            .attrs
            .iter()
            .filter(|a| CARRIED.iter().any(|name| a.path().is_ident(name)))
            .collect();
        let shape =
            crate::shape::method_shape(&wire_name, args.iter().map(|a| a.ty), &item.sig.output);
        Method {
            item,
            ident,
            full_name: format!("{service}.{wire_name}"),
            shape,
            wire_name,
            name_span,
            args,
            output: Output::of(&item.sig.output),
            attrs,
            options,
        }
    }

    /// The 64-bit FNV-1a hash of the full name: the method's id on the wire.
    /// Must match `rpc::protocol::method_id`.
    pub(crate) fn id(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.full_name.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }

    /// The shape's fingerprint: what a client sends and a server checks.
    pub(crate) fn fingerprint(&self) -> u64 {
        crate::shape::fingerprint(&self.shape)
    }

    /// The Rust name without `r#`.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw_string()
    }

    /// Only the `#[doc]` attributes.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &&'a Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("doc"))
    }

    /// Every carried attribute but `#[doc]`.
    pub(crate) fn non_doc_attrs(&self) -> impl Iterator<Item = &&'a Attribute> {
        self.attrs.iter().filter(|a| !a.path().is_ident("doc"))
    }

    /// The `#[cfg]` attributes, which gate everything generated for the method.
    pub(crate) fn cfgs(&self) -> impl Iterator<Item = &&'a Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("cfg"))
    }

    /// The arguments that travel in the call's tuple: all but the stream.
    pub(crate) fn tuple_args(&self) -> impl Iterator<Item = &Arg<'a>> {
        self.args
            .iter()
            .filter(|a| !matches!(a.kind, ArgKind::Stream(_)))
    }

    /// The stream argument and its item type (the first one: validation
    /// refuses a second).
    pub(crate) fn stream_arg(&self) -> Option<(&Arg<'a>, &'a Type)> {
        self.args.iter().find_map(|a| match a.kind {
            ArgKind::Stream(item) => Some((a, item)),
            _ => None,
        })
    }

    /// Whether the reply is a stream (possibly inside a `Result`).
    pub(crate) fn returns_stream(&self) -> bool {
        matches!(
            self.output,
            Output::Stream { .. } | Output::StreamResult { .. }
        )
    }

    /// Whether anything of the call travels as a stream.
    pub(crate) fn is_streaming(&self) -> bool {
        self.returns_stream() || self.stream_arg().is_some()
    }
}

impl<'a> ArgKind<'a> {
    fn of(ty: &'a Type) -> Self {
        let Type::Reference(r) = ungroup(ty) else {
            return if let Some(item) = stream_item(ty) {
                ArgKind::Stream(item)
            } else if is_byte_vec(ty) {
                ArgKind::Bytes
            } else {
                ArgKind::Owned
            };
        };
        if r.mutability.is_some() {
            return ArgKind::RefMut;
        }
        match ungroup(&r.elem) {
            elem if is_primitive(elem, "str") => ArgKind::Str,
            Type::Slice(s) if is_u8(&s.elem) => ArgKind::BytesRef,
            Type::Slice(s) => ArgKind::Slice(&s.elem),
            elem if is_byte_vec(elem) => ArgKind::BytesRef,
            _ => ArgKind::Ref,
        }
    }

    /// The type inside the top-level borrow, or the whole type when there is
    /// none: what the server decodes (before the fast paths).
    pub(crate) fn referent<'t>(&self, ty: &'t Type) -> &'t Type {
        match ungroup(ty) {
            Type::Reference(r) => &r.elem,
            _ => ty,
        }
    }
}

impl<'a> Output<'a> {
    fn of(output: &'a syn::ReturnType) -> Self {
        match output {
            syn::ReturnType::Default => Output::Unit,
            syn::ReturnType::Type(_, ty) => {
                if let Some(item) = stream_item(ty) {
                    Output::Stream { ty, item }
                } else if let Some((item, error)) = stream_result(ty) {
                    Output::StreamResult { ty, item, error }
                } else if is_byte_vec(ty) {
                    Output::Bytes(ty)
                } else {
                    Output::Value(ty)
                }
            }
        }
    }

    /// The declared return type, if any.
    pub(crate) fn ty(&self) -> Option<&'a Type> {
        match *self {
            Output::Unit => None,
            Output::Value(ty)
            | Output::Bytes(ty)
            | Output::Stream { ty, .. }
            | Output::StreamResult { ty, .. } => Some(ty),
        }
    }
}

impl Arg<'_> {
    /// The span to report problems with this argument's type at.
    pub(crate) fn span(&self) -> Span {
        self.ty.span()
    }
}

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    /// `r#type` is `type` on the wire.
    fn unraw_string(&self) -> String {
        let s = self.to_string();
        s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
    }
}

/// Collects independent errors to report them together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// An error at one token.
    pub(crate) fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error covering `tokens` from first to last.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_kind(ty: &str) -> &'static str {
        let ty: Type = syn::parse_str(ty).unwrap();
        match ArgKind::of(&ty) {
            ArgKind::Owned => "owned",
            ArgKind::Bytes => "bytes",
            ArgKind::Str => "str",
            ArgKind::BytesRef => "bytes-ref",
            ArgKind::Slice(_) => "slice",
            ArgKind::Ref => "ref",
            ArgKind::RefMut => "ref-mut",
            ArgKind::Stream(_) => "stream",
        }
    }

    #[test]
    fn byte_buffers_take_the_fast_path_only_when_written_as_bytes() {
        assert_eq!(arg_kind("Vec<u8>"), "bytes");
        assert_eq!(arg_kind("std::vec::Vec<u8>"), "bytes");
        assert_eq!(
            arg_kind("::alloc::vec::Vec<::core::primitive::u8>"),
            "bytes"
        );
        assert_eq!(arg_kind("&[u8]"), "bytes-ref");
        assert_eq!(arg_kind("&'a Vec<u8>"), "bytes-ref");
        assert_eq!(arg_kind("Vec<i8>"), "owned");
        assert_eq!(arg_kind("Vec<Vec<u8>>"), "owned");
        assert_eq!(arg_kind("Option<Vec<u8>>"), "owned");
        assert_eq!(arg_kind("my::Vec<u8>"), "owned");
        assert_eq!(arg_kind("&[u16]"), "slice");
    }

    #[test]
    fn borrows_are_classified_by_referent() {
        assert_eq!(arg_kind("&str"), "str");
        assert_eq!(arg_kind("&'a ::core::primitive::str"), "str");
        assert_eq!(arg_kind("&String"), "ref");
        assert_eq!(arg_kind("&[String]"), "slice");
        assert_eq!(arg_kind("&mut u32"), "ref-mut");
        assert_eq!(arg_kind("String"), "owned");
    }

    #[test]
    fn only_a_stream_by_value_is_a_stream_argument() {
        assert_eq!(arg_kind("rpc::Stream<Chunk>"), "stream");
        assert_eq!(arg_kind("Stream<Vec<u8>>"), "stream");
        assert_eq!(arg_kind("&rpc::Stream<Chunk>"), "ref");
        assert_eq!(arg_kind("Vec<rpc::Stream<Chunk>>"), "owned");
    }

    #[test]
    fn method_ids_match_the_runtime_and_honour_pinned_names() {
        let item: ItemTrait = syn::parse_quote! {
            trait Calc {
                async fn add(&self);
                #[rpc(name = "sub")]
                async fn subtract(&self);
                async fn r#type(&self);
            }
        };
        let mut errors = Errors::default();
        let args = quote::quote!(name = "Calculator");
        let service = Service::parse(args, &item, &mut errors);
        assert!(errors.finish().is_ok());
        let names: Vec<_> = service
            .methods
            .iter()
            .map(|m| m.full_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["Calculator.add", "Calculator.sub", "Calculator.type"]
        );
        for m in &service.methods {
            assert_eq!(m.id(), rpc::protocol::method_id(&m.full_name));
        }
    }

    #[test]
    fn parsing_goes_on_after_a_bad_option() {
        let item: ItemTrait = syn::parse_quote! {
            trait Svc {
                #[rpc(bogus)]
                async fn a(&self);
                #[rpc(name = 1)]
                async fn b(&self);
            }
        };
        let mut errors = Errors::default();
        let service = Service::parse(quote::quote!(nope = "x"), &item, &mut errors);
        assert_eq!(service.methods.len(), 2);
        let all = errors.finish().unwrap_err();
        assert_eq!(all.into_iter().count(), 3);
    }
}
