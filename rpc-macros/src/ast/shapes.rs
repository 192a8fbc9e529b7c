//! Types the macro gives a meaning of its own: byte buffers, primitives and
//! streams. A macro sees tokens, not types, so each is recognized as written.

use syn::{GenericArgument, PathArguments, Type, TypePath};

/// Sees through the invisible groups that `macro_rules!` wraps around types.
pub(crate) fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        _ => ty,
    }
}

pub(super) fn is_u8(ty: &Type) -> bool {
    is_primitive(ty, "u8")
}

/// `name`, or `core::primitive::name` / `std::primitive::name`.
pub(super) fn is_primitive(ty: &Type, name: &str) -> bool {
    let Some(p) = plain_path(ty) else {
        return false;
    };
    if p.path.segments.iter().any(|s| !s.arguments.is_none()) {
        return false;
    }
    match segment_names(p).as_slice() {
        [only] => p.path.leading_colon.is_none() && only == name,
        [krate, module, last] => {
            (krate == "core" || krate == "std") && module == "primitive" && last == name
        }
        _ => false,
    }
}

/// `Vec<u8>`, `std::vec::Vec<u8>` or `alloc::vec::Vec<u8>`, as written: a
/// user type named `Vec` would be taken for the standard one (and give a
/// type error naming `ByteBuf`).
pub(super) fn is_byte_vec(ty: &Type) -> bool {
    let Some(p) = plain_path(ty) else {
        return false;
    };
    let known = match segment_names(p).as_slice() {
        [vec] => p.path.leading_colon.is_none() && vec == "Vec",
        [krate, module, vec] => {
            (krate == "std" || krate == "alloc") && module == "vec" && vec == "Vec"
        }
        _ => false,
    };
    known && matches!(type_args(p).as_deref(), Some([t]) if is_u8(t))
}

/// The item type `T` of `rpc::Stream<T>`, `::rpc::Stream<T>` or `Stream<T>`
/// (any path ending in `Stream` with one type argument, so that a `use` or a
/// re-export works): the runtime's stream of values, sent or received one by
/// one.
pub(crate) fn stream_item(ty: &Type) -> Option<&Type> {
    stream_path_item(plain_path(ty)?)
}

/// As [`stream_item`], for a path type.
pub(crate) fn stream_path_item(p: &TypePath) -> Option<&Type> {
    if p.qself.is_some() || p.path.segments.last()?.ident != "Stream" {
        return None;
    }
    match type_args(p)?.as_slice() {
        [item] => Some(item),
        _ => None,
    }
}

/// The item and error types of `Result<Stream<T>, E>` (any path ending in
/// `Result`, with two type arguments): a stream, or the application's error
/// instead of one.
pub(super) fn stream_result(ty: &Type) -> Option<(&Type, &Type)> {
    let p = plain_path(ty)?;
    if p.path.segments.last()?.ident != "Result" {
        return None;
    }
    match type_args(p)?.as_slice() {
        [ok, error] => Some((stream_item(ok)?, error)),
        _ => None,
    }
}

/// A path type without a `<T as Trait>::` prefix.
fn plain_path(ty: &Type) -> Option<&TypePath> {
    match ungroup(ty) {
        Type::Path(p) if p.qself.is_none() => Some(p),
        _ => None,
    }
}

fn segment_names(p: &TypePath) -> Vec<String> {
    p.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect()
}

/// The last segment's generic arguments, if all of them are types
/// (`Stream<'a, T>` or `Stream<N>` is someone else's type).
fn type_args(p: &TypePath) -> Option<Vec<&Type>> {
    let PathArguments::AngleBracketed(generics) = &p.path.segments.last()?.arguments else {
        return None;
    };
    generics
        .args
        .iter()
        .map(|arg| match arg {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn item(ty: &str) -> Option<String> {
        let ty: Type = syn::parse_str(ty).unwrap();
        stream_item(&ty).map(|t| t.to_token_stream().to_string())
    }

    fn result(ty: &str) -> Option<(String, String)> {
        let ty: Type = syn::parse_str(ty).unwrap();
        stream_result(&ty).map(|(t, e)| {
            (
                t.to_token_stream().to_string(),
                e.to_token_stream().to_string(),
            )
        })
    }

    #[test]
    fn streams_are_recognized_by_their_last_segment_and_one_type() {
        assert_eq!(item("rpc::Stream<Event>").as_deref(), Some("Event"));
        assert_eq!(
            item("::rpc::Stream<Vec<u8>>").as_deref(),
            Some("Vec < u8 >")
        );
        assert_eq!(item("Stream<u32>").as_deref(), Some("u32"));
        assert_eq!(item("Stream"), None);
        assert_eq!(item("Stream<A, B>"), None);
        assert_eq!(item("Stream<'a, A>"), None);
        assert_eq!(item("&Stream<A>"), None);
        assert_eq!(item("Vec<Stream<A>>"), None);
        assert_eq!(item("<X as Y>::Stream<A>"), None);
        assert_eq!(item("Streams<A>"), None);
    }

    #[test]
    fn a_result_of_a_stream_gives_its_item_and_error() {
        assert_eq!(
            result("Result<rpc::Stream<Event>, MyError>"),
            Some(("Event".into(), "MyError".into()))
        );
        assert_eq!(
            result("std::result::Result<Stream<u8>, String>"),
            Some(("u8".into(), "String".into()))
        );
        assert_eq!(result("Result<u64, MyError>"), None);
        assert_eq!(result("Result<Stream<u8>>"), None);
        assert_eq!(result("Option<Stream<u8>>"), None);
    }
}
