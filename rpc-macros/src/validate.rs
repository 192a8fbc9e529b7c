//! The rules a service trait must follow, one function per rule, each saying
//! why it exists. Independent mistakes are reported together.

use std::collections::HashMap;

use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, TraitItem};

use crate::ast::{ArgKind, Errors, Method, Service};

/// Names of inherent methods on the generated `{Trait}Client`.
const RESERVED: &[&str] = &["connect", "new", "with_timeout", "channel", "clone"];

pub(crate) fn service(service: &Service) -> syn::Result<()> {
    let mut errors = Errors::default();
    trait_is_plain(service, &mut errors);
    trait_is_not_generic(service, &mut errors);
    no_supertraits(service, &mut errors);
    only_methods(service, &mut errors);
    for method in &service.methods {
        is_async(method, &mut errors);
        is_plain_fn(method, &mut errors);
        takes_shared_self(method, &mut errors);
        not_generic(method, &mut errors);
        args_are_named(method, &mut errors);
        no_mut_refs(method, &mut errors);
        no_impl_trait(method, &mut errors);
        not_reserved(service, method, &mut errors);
    }
    wire_ids_are_unique(service, &mut errors);
    errors.finish()
}

/// `unsafe trait` and `auto trait` have no meaning across a network.
fn trait_is_plain(service: &Service, errors: &mut Errors) {
    if let Some(u) = &service.item.unsafety {
        errors.error(
            u.span(),
            "a service trait cannot be `unsafe`: a remote caller cannot uphold its contract",
        );
    }
    if let Some(a) = &service.item.auto_token {
        errors.error(a.span(), "a service trait cannot be an `auto trait`");
    }
}

/// Every type on the wire must be concrete: the server decodes bytes into one
/// known type, and the method id names no type parameters.
fn trait_is_not_generic(service: &Service, errors: &mut Errors) {
    let generics = &service.item.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.error(
            generics.span(),
            "generic service traits are not supported: every type on the wire must be concrete; \
             use concrete types (an enum can cover several)",
        );
    }
}

/// The client is generated from this trait's methods alone; a supertrait's
/// methods would exist locally but not over the wire.
fn no_supertraits(service: &Service, errors: &mut Errors) {
    if !service.item.supertraits.is_empty() {
        errors.error(
            service.item.supertraits.span(),
            "supertraits are not supported on a service trait: the client could not call their methods; \
             make the supertrait a service of its own and add both to the server",
        );
    }
}

/// Associated types and consts have no wire form; macros in a trait cannot be
/// inspected.
fn only_methods(service: &Service, errors: &mut Errors) {
    for item in &service.others {
        let message = match item {
            TraitItem::Type(_) => {
                "associated types are not supported in a service trait: every type on the wire must be concrete"
            }
            TraitItem::Const(_) => {
                "associated consts are not supported in a service trait: a client cannot call a const; \
                 make it a method or a const outside the trait"
            }
            _ => "a service trait may contain only `async fn` methods",
        };
        errors.error(item.span(), message);
    }
}

/// A remote call is asynchronous; a blocking signature would hide the network.
fn is_async(method: &Method, errors: &mut Errors) {
    if method.item.sig.asyncness.is_none() {
        errors.error(
            method.item.sig.fn_token.span(),
            "rpc methods must be `async fn`: a remote call waits on the network",
        );
    }
}

/// `unsafe`, `const`, `extern` and variadic functions cannot be called remotely.
fn is_plain_fn(method: &Method, errors: &mut Errors) {
    let sig = &method.item.sig;
    if let Some(u) = &sig.unsafety {
        errors.error(
            u.span(),
            "rpc methods cannot be `unsafe`: a remote caller cannot uphold its contract",
        );
    }
    if let Some(c) = &sig.constness {
        errors.error(c.span(), "rpc methods cannot be `const`");
    }
    if let Some(abi) = &sig.abi {
        errors.error(abi.span(), "rpc methods cannot have an ABI (`extern`)");
    }
    if let Some(v) = &sig.variadic {
        errors.error(v.span(), "rpc methods cannot be variadic");
    }
}

/// The server shares one instance across concurrent calls, so handlers get
/// `&self`: never exclusive access, never ownership.
fn takes_shared_self(method: &Method, errors: &mut Errors) {
    match method.item.sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => errors.error(
            r.span(),
            "`&mut self` is not supported: the server shares one instance across concurrent calls; \
             take `&self` and use interior mutability (a Mutex or atomics)",
        ),
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => errors.error(
            r.span(),
            "rpc methods must take `&self`: the server shares one instance across concurrent calls, \
             so a handler cannot own or box it",
        ),
        _ => errors.error(
            method.item.sig.paren_token.span.join(),
            "rpc methods must take `&self` first: a handler runs on the server's shared instance",
        ),
    }
}

/// The server must know the concrete type to decode the arguments; lifetimes
/// are fine (they only concern borrows on each side).
fn not_generic(method: &Method, errors: &mut Errors) {
    for param in &method.item.sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            _ => errors.error(
                param.span(),
                "generic methods are not supported: the server must know the concrete type to decode; \
                 use a concrete type (an enum can cover several)",
            ),
        }
    }
}

/// Arguments are sent as a tuple of named values; a pattern has no name to
/// give the client's parameter.
fn args_are_named(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        let ok = matches!(arg.pat, syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none());
        if !ok {
            errors.error(
                arg.pat.span(),
                "argument patterns are not supported in rpc methods: name the argument \
                 (`point: Point`) and destructure it in the body",
            );
        }
    }
}

/// A handler's writes through `&mut` could not travel back to the caller.
fn no_mut_refs(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        if matches!(arg.kind, ArgKind::RefMut) {
            errors.error(
                arg.span(),
                "`&mut` arguments are not supported: the server's changes could not travel back; \
                 return the new value instead",
            );
        }
    }
}

/// The wire needs one concrete type for every argument and return value.
fn no_impl_trait(method: &Method, errors: &mut Errors) {
    struct Find<'e>(&'e mut Errors);
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.error(
                t.span(),
                "`impl Trait` is not supported in rpc methods: the wire needs a concrete type",
            );
        }
    }
    let mut find = Find(errors);
    for arg in &method.args {
        find.visit_type(arg.ty);
    }
    if let Some(output) = method.output {
        find.visit_type(output);
    }
}

/// The generated client has inherent methods of its own; an rpc method of the
/// same name would be unreachable or clash.
fn not_reserved(service: &Service, method: &Method, errors: &mut Errors) {
    let name = method.ident.to_string();
    if RESERVED.contains(&name.as_str()) {
        errors.error(
            method.ident.span(),
            format!(
                "`{name}` is the name of a method of the generated `{}Client`; rename the rust method \
                 and keep the wire name with #[rpc(name = \"{name}\")]",
                service.item.ident
            ),
        );
    }
}

/// Two methods with one id could not be told apart by the server.
fn wire_ids_are_unique(service: &Service, errors: &mut Errors) {
    let mut seen: HashMap<u64, &Method> = HashMap::new();
    for method in &service.methods {
        if let Some(first) = seen.insert(method.id(), method) {
            errors.error(
                method.name_span,
                format!(
                    "`{}` has the same wire id as `{}` (both are named `{}` on the wire, or their hashes collide); \
                     pin another name with #[rpc(name = \"...\")]",
                    method.ident, first.ident, method.full_name
                ),
            );
        }
    }
}
