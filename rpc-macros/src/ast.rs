//! A model of the service, parsed from the trait. Keeps the original syn nodes
//! for spans; no rule is enforced here beyond what parsing needs (see
//! `validate.rs`), and no code is generated here.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemTrait, LitStr, TraitItem, TraitItemFn, Type};

/// The service: one annotated trait.
pub(crate) struct Service<'a> {
    pub(crate) item: &'a ItemTrait,
    /// The name on the wire: the trait's name unless pinned with `name = "..."`.
    pub(crate) wire_name: String,
    pub(crate) methods: Vec<Method<'a>>,
    /// Trait items that are not methods (refused by validation).
    pub(crate) others: Vec<&'a TraitItem>,
}

/// One `fn` of the trait.
pub(crate) struct Method<'a> {
    pub(crate) item: &'a TraitItemFn,
    pub(crate) ident: &'a Ident,
    /// `"Service.method"`, as hashed into the method id.
    pub(crate) full_name: String,
    /// Where the wire name comes from (the `name = "..."` literal, or the ident).
    pub(crate) name_span: Span,
    pub(crate) args: Vec<Arg<'a>>,
    /// The return type; `None` for `()`.
    pub(crate) output: Option<&'a Type>,
    /// `#[doc]`, `#[cfg]`, `#[allow]`... carried to the generated items.
    pub(crate) attrs: Vec<&'a Attribute>,
}

/// One argument after the receiver.
pub(crate) struct Arg<'a> {
    pub(crate) pat: &'a syn::Pat,
    pub(crate) ty: &'a Type,
    pub(crate) kind: ArgKind<'a>,
}

/// How an argument travels: the client may lend it; the server always decodes
/// owned data and lends that to the handler.
pub(crate) enum ArgKind<'a> {
    /// Passed by value.
    Owned,
    /// `&str`: decoded as `String`.
    Str,
    /// `&[T]`: decoded as `Vec<T>`.
    Slice(&'a Type),
    /// `&T`: decoded as `T`.
    Ref(&'a Type),
    /// `&mut T` (refused by validation).
    RefMut,
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

impl<'a> Service<'a> {
    pub(crate) fn parse(args: TokenStream, item: &'a ItemTrait) -> syn::Result<Self> {
        let mut wire_name = item.ident.unraw_string();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                wire_name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta
                    .error("unknown #[rpc::service] option: the only option is `name = \"...\"`"))
            }
        });
        syn::parse::Parser::parse2(parser, args)?;
        let mut methods = Vec::new();
        let mut others = Vec::new();
        let mut errors = Errors::default();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => match Method::parse(&wire_name, f) {
                    Ok(m) => methods.push(m),
                    Err(e) => errors.push(e),
                },
                other => others.push(other),
            }
        }
        errors.finish()?;
        Ok(Service {
            item,
            wire_name,
            methods,
            others,
        })
    }
}

impl<'a> Method<'a> {
    fn parse(service: &str, item: &'a TraitItemFn) -> syn::Result<Self> {
        let ident = &item.sig.ident;
        let mut wire = ident.unraw_string();
        let mut name_span = ident.span();
        for attr in item.attrs.iter().filter(|a| a.path().is_ident("rpc")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit = meta.value()?.parse::<LitStr>()?;
                    wire = lit.value();
                    name_span = lit.span();
                    Ok(())
                } else {
                    Err(meta.error("unknown #[rpc] option: the only option is `name = \"...\"`"))
                }
            })?;
        }
        let args = item
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(t) => Some(Arg {
                    pat: &t.pat,
                    ty: &t.ty,
                    kind: ArgKind::of(&t.ty),
                }),
                syn::FnArg::Receiver(_) => None,
            })
            .collect();
        let output = match &item.sig.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(&**ty),
        };
        let attrs = item
            .attrs
            .iter()
            .filter(|a| CARRIED.iter().any(|name| a.path().is_ident(name)))
            .collect();
        Ok(Method {
            item,
            ident,
            full_name: format!("{service}.{wire}"),
            name_span,
            args,
            output,
            attrs,
        })
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

    /// Only the `#[doc]` attributes.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &&'a Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("doc"))
    }

    /// Every carried attribute but `#[doc]`.
    pub(crate) fn non_doc_attrs(&self) -> impl Iterator<Item = &&'a Attribute> {
        self.attrs.iter().filter(|a| !a.path().is_ident("doc"))
    }
}

impl<'a> ArgKind<'a> {
    fn of(ty: &'a Type) -> Self {
        let Type::Reference(r) = ty else {
            return ArgKind::Owned;
        };
        if r.mutability.is_some() {
            return ArgKind::RefMut;
        }
        match &*r.elem {
            Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => ArgKind::Str,
            Type::Slice(s) => ArgKind::Slice(&s.elem),
            elem => ArgKind::Ref(elem),
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

    pub(crate) fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
