//! The rules a service trait must follow, one function per rule, each saying
//! why it exists. Independent mistakes are reported together. The rules for
//! streams are in `validate/streams.rs`.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, TraitItem, Type};

use crate::ast::{ArgKind, Errors, Method, Service, stream_item, ungroup};

mod streams;

/// Names of inherent methods on the generated `{Trait}Client` (and `clone`,
/// which an inherent method would shadow).
const RESERVED: &[&str] = &[
    "connect",
    "new",
    "with_timeout",
    "with_metadata",
    "channel",
    "clone",
];

/// Checks every rule, adding each mistake found to `errors`.
pub(crate) fn service(service: &Service, errors: &mut Errors) {
    trait_is_plain(service, errors);
    trait_is_not_generic(service, errors);
    where_clause_is_marker(service, errors);
    no_supertraits(service, errors);
    only_methods(service, errors);
    wire_name_is_valid(&service.wire_name, service.name_span, errors);
    for method in &service.methods {
        is_async(method, errors);
        blocking_is_sync(method, errors);
        one_key(method, errors);
        is_plain_fn(method, errors);
        takes_shared_self(method, errors);
        not_generic(method, errors);
        args_are_named(method, errors);
        no_mut_refs(method, errors);
        borrows_only_at_top(method, errors);
        returns_owned(method, errors);
        no_trait_types(method, errors);
        no_self_type(method, errors);
        streams::method(method, errors);
        not_reserved(service, method, errors);
        wire_name_is_valid(&method.wire_name, method.name_span, errors);
    }
    wire_ids_are_unique(service, errors);
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
    if !generics.params.is_empty() {
        errors.spanned(
            generics,
            "generic service traits are not supported: every type on the wire must be concrete; \
             use concrete types (an enum can cover several)",
        );
    }
}

/// A `where` clause would constrain the implementation, not the wire; only
/// marker bounds on `Self` (`where Self: Send + Sync`) are harmless.
fn where_clause_is_marker(service: &Service, errors: &mut Errors) {
    let Some(clause) = &service.item.generics.where_clause else {
        return;
    };
    for predicate in &clause.predicates {
        if !is_marker_predicate(predicate) {
            errors.spanned(
                predicate,
                "a service trait's `where` clause may only ask `Self` for marker traits \
                 (`Send`, `Sync`, `Sized`, `Unpin`, `'static`): the wire carries concrete types",
            );
        }
    }
}

/// The client is generated from this trait's methods alone; a supertrait's
/// methods would exist locally but not over the wire. Marker traits have no
/// methods, so `trait Svc: Send + Sync + 'static` is fine.
fn no_supertraits(service: &Service, errors: &mut Errors) {
    for bound in service.item.supertraits.iter().filter(|b| !is_marker(b)) {
        errors.spanned(
            bound,
            "supertraits are not supported on a service trait: the client could not call their \
             methods; make the supertrait a service of its own and add both to the server \
             (marker traits such as `Send + Sync + 'static` are fine)",
        );
    }
}

/// Associated types and consts have no wire form; macros in a trait cannot be
/// inspected.
fn only_methods(service: &Service, errors: &mut Errors) {
    for item in &service.others {
        let message = match item {
            TraitItem::Type(_) => {
                "associated types are not supported in a service trait: every type on the wire \
                 must be concrete; name the concrete type in the methods"
            }
            TraitItem::Const(_) => {
                "associated consts are not supported in a service trait: a client cannot call a \
                 const; make it an `async fn` or a const outside the trait"
            }
            _ => "a service trait may contain only `async fn` methods",
        };
        errors.spanned(item, message);
    }
}

/// A wire name is the key old and new peers agree on; a `.` would make
/// `"Service.method"` ambiguous, and an empty name is surely a slip.
fn wire_name_is_valid(name: &str, span: Span, errors: &mut Errors) {
    if name.is_empty() || name.contains('.') || name.chars().any(char::is_whitespace) {
        errors.error(
            span,
            "a wire name must be non-empty, without `.` or whitespace (the wire names a method \
             `Service.method`)",
        );
    }
}

/// A handler runs on the server's async runtime: a plain `fn` there would
/// block a worker thread, and every connection served by it, while it runs.
/// A plain `fn` is fine where it is said to block: it then runs on the
/// blocking pool (the client's method is `async` either way).
fn is_async(method: &Method, errors: &mut Errors) {
    let sig = &method.item.sig;
    if sig.asyncness.is_some() || method.options.blocking.is_some() {
        return;
    }
    let message = if returns_impl_trait(&sig.output) {
        "rpc methods must be `async fn`: write `async fn name(..) -> T` instead of returning \
         `impl Future` (the macro makes the future `Send` itself)"
    } else {
        "rpc methods must be `async fn`: a remote call waits on the network; for blocking or \
         CPU-bound work, mark a plain `fn` with #[rpc(blocking)] to run it on tokio's blocking \
         thread pool"
    };
    errors.error(sig.fn_token.span(), message);
}

/// A call has one affinity key: with two, which one decides the server
/// would be a guess.
fn one_key(method: &Method, errors: &mut Errors) {
    for span in method.args.iter().filter_map(|a| a.key).skip(1) {
        errors.push(syn::Error::new(
            span,
            "only one argument can be `#[rpc(key)]`: it decides the server the call goes to",
        ));
    }
}

/// `blocking` moves a synchronous body off the async workers. An `async fn`
/// has no such body: it would hold a blocking thread while it awaits, and
/// whatever in it blocks belongs in `rpc::context::spawn_blocking` instead.
fn blocking_is_sync(method: &Method, errors: &mut Errors) {
    if let (Some(_), Some(a)) = (method.options.blocking, &method.item.sig.asyncness) {
        errors.error(
            a.span(),
            "#[rpc(blocking)] runs a plain `fn` on tokio's blocking thread pool: remove `async` \
             (or keep an `async fn` without #[rpc(blocking)], and move what blocks in it into \
             `rpc::context::spawn_blocking`)",
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
        errors.spanned(abi, "rpc methods cannot have an ABI (`extern`)");
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "rpc methods cannot be variadic");
    }
}

/// The server shares one instance across concurrent calls, so handlers get
/// `&self`: never exclusive access, never ownership.
fn takes_shared_self(method: &Method, errors: &mut Errors) {
    match method.item.sig.inputs.first() {
        Some(FnArg::Receiver(r)) if is_ref_mut(&r.ty) => errors.spanned(
            r,
            "`&mut self` is not supported: the server shares one instance across concurrent \
             calls; take `&self` and use interior mutability (a Mutex or atomics)",
        ),
        Some(FnArg::Receiver(r)) if is_ref_self(&r.ty) => {}
        Some(FnArg::Receiver(r)) => errors.spanned(
            r,
            "rpc methods must take `&self`: the server shares one instance across concurrent \
             calls, so a handler can neither own it nor take it boxed or pinned",
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
        if !matches!(param, GenericParam::Lifetime(_)) {
            errors.spanned(
                param,
                "generic methods are not supported: the server must know the concrete type to \
                 decode; use a concrete type (an enum can cover several)",
            );
        }
    }
    let predicates = method.item.sig.generics.where_clause.iter();
    for predicate in predicates.flat_map(|c| &c.predicates) {
        if !is_marker_predicate(predicate) {
            errors.spanned(
                predicate,
                "an rpc method's `where` clause may only ask `Self` for marker traits \
                 (`Send`, `Sync`, ...): its types are concrete",
            );
        }
    }
}

/// Arguments are sent as a tuple of named values; a pattern has no name to
/// give the client's parameter.
fn args_are_named(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        let ok = matches!(arg.pat, syn::Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none());
        if !ok {
            errors.spanned(
                arg.pat,
                "argument patterns are not supported in rpc methods: name the argument \
                 (`point: Point`) and destructure it in the body",
            );
        }
    }
}

/// A handler's writes through `&mut` could not travel back to the caller.
fn no_mut_refs(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        // A borrowed stream is refused by the stream rules, which say why.
        if matches!(arg.kind, ArgKind::RefMut) && stream_item(arg.kind.referent(arg.ty)).is_none() {
            errors.spanned(
                arg.ty,
                "`&mut` arguments are not supported: the server's changes could not travel back; \
                 return the new value instead",
            );
        }
    }
}

/// The server decodes owned values and can lend the handler only the whole
/// argument; a borrow inside (`Option<&str>`) would have nothing to point to.
fn borrows_only_at_top(method: &Method, errors: &mut Errors) {
    for arg in &method.args {
        if !matches!(arg.kind, ArgKind::RefMut) {
            let inner = arg.kind.referent(arg.ty);
            find_borrows(
                inner,
                errors,
                "a borrow is supported only as the whole argument (`&str`, `&[T]`, `&T`): the \
                 server decodes owned values; use an owned type here (`String`, `Vec<T>`)",
            );
        }
    }
}

/// The client decodes the reply into a value the caller owns: nothing is left
/// for a returned borrow to point into.
fn returns_owned(method: &Method, errors: &mut Errors) {
    if let Some(ty) = method.output.ty() {
        find_borrows(
            ty,
            errors,
            "rpc methods cannot return a borrow: the caller receives a decoded copy; \
             return an owned type (`String`, `Vec<T>`)",
        );
    }
}

/// The wire needs one concrete type for every argument and return value.
fn no_trait_types(method: &Method, errors: &mut Errors) {
    struct Find<'e>(&'e mut Errors);
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.spanned(
                t,
                "`impl Trait` is not supported in rpc methods: the wire needs a concrete type",
            );
        }
        fn visit_type_trait_object(&mut self, t: &'ast syn::TypeTraitObject) {
            self.0.spanned(
                t,
                "trait objects are not supported in rpc methods: the wire needs a concrete type \
                 (an enum can cover several)",
            );
        }
    }
    let mut find = Find(errors);
    for arg in &method.args {
        find.visit_type(arg.ty);
    }
    // A non-async method returning `impl Future` is already told to be async.
    let told = method.item.sig.asyncness.is_none() && method.options.blocking.is_none();
    if !told && let Some(output) = method.output.ty() {
        find.visit_type(output);
    }
}

/// `Self` is the server's implementing type: the client has no such type to
/// send or receive.
fn no_self_type(method: &Method, errors: &mut Errors) {
    struct Find<'e>(&'e mut Errors);
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            match path.segments.first() {
                Some(first) if path.leading_colon.is_none() && first.ident == "Self" => {
                    self.0.spanned(
                        path,
                        "`Self` cannot travel over the wire: it is the server's type, unknown to \
                         the client; name a concrete type",
                    );
                }
                _ => syn::visit::visit_path(self, path),
            }
        }
    }
    let mut find = Find(errors);
    for arg in &method.args {
        find.visit_type(arg.ty);
    }
    if let Some(output) = method.output.ty() {
        find.visit_type(output);
    }
}

/// The generated client has inherent methods of its own; an rpc method of the
/// same name would be unreachable or clash.
fn not_reserved(service: &Service, method: &Method, errors: &mut Errors) {
    let name = method.name();
    if RESERVED.contains(&name.as_str()) {
        errors.error(
            method.ident.span(),
            format!(
                "`{name}` is the name of a method of the generated `{}Client`; rename the rust \
                 method and keep the wire name with #[rpc(name = \"{name}\")]",
                service.item.ident
            ),
        );
    }
}

/// Two methods with one id could not be told apart by the server. Methods
/// that both carry `#[cfg]` may be alternatives that are never compiled
/// together; the server still refuses a duplicate id when it starts.
fn wire_ids_are_unique(service: &Service, errors: &mut Errors) {
    let mut seen: HashMap<u64, &Method> = HashMap::new();
    for method in &service.methods {
        let Some(first) = seen.get(&method.id()) else {
            seen.insert(method.id(), method);
            continue;
        };
        if first.cfgs().next().is_some() && method.cfgs().next().is_some() {
            continue;
        }
        let why = if first.full_name == method.full_name {
            format!("both are named `{}` on the wire", method.full_name)
        } else {
            format!(
                "the hashes of `{}` and `{}` collide",
                first.full_name, method.full_name
            )
        };
        errors.error(
            method.name_span,
            format!(
                "`{}` has the same wire id as `{}` ({why}); give one of them another wire name \
                 with #[rpc(name = \"...\")]",
                method.ident, first.ident
            ),
        );
    }
}

/// Reports every reference and non-`'static` lifetime inside `ty`, but for
/// a borrowed stream: the stream rules refuse that one, and say why.
fn find_borrows(ty: &Type, errors: &mut Errors, message: &str) {
    struct Find<'e, 'm>(&'e mut Errors, &'m str);
    impl<'ast> Visit<'ast> for Find<'_, '_> {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            match stream_item(ungroup(&r.elem)) {
                Some(item) => self.visit_type(item),
                None => self.0.spanned(r, self.1),
            }
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if l.ident != "static" {
                self.0.spanned(l, self.1);
            }
        }
        // `impl Trait + 'a` and `dyn Trait + 'a` are reported as trait types.
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {}
        fn visit_type_trait_object(&mut self, _: &'ast syn::TypeTraitObject) {}
    }
    Find(errors, message).visit_type(ty);
}

fn returns_impl_trait(output: &syn::ReturnType) -> bool {
    matches!(output, syn::ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)))
}

/// `&self`, `&'a self` or `self: &Self` (syn gives the short forms a type too).
fn is_ref_self(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_none() && is_self(&r.elem))
}

fn is_ref_mut(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_some() && is_self(&r.elem))
}

fn is_self(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
}

/// `Self: Send + Sync + 'static` and the like.
fn is_marker_predicate(predicate: &syn::WherePredicate) -> bool {
    matches!(predicate, syn::WherePredicate::Type(p)
        if is_self(&p.bounded_ty) && p.lifetimes.is_none() && p.bounds.iter().all(is_marker))
}

/// A lifetime, or a trait without methods whose meaning is the same on both
/// sides of the wire.
fn is_marker(bound: &syn::TypeParamBound) -> bool {
    const MARKERS: &[&str] = &["Send", "Sync", "Sized", "Unpin"];
    match bound {
        syn::TypeParamBound::Lifetime(_) => true,
        syn::TypeParamBound::Trait(t) => {
            matches!(t.modifier, syn::TraitBoundModifier::None)
                && t.lifetimes.is_none()
                && t.path.segments.last().is_some_and(|last| {
                    last.arguments.is_none() && MARKERS.iter().any(|m| last.ident == m)
                })
        }
        _ => false,
    }
}
