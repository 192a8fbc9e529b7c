//! A method's *shape*: its wire name and the types it sends and returns,
//! normalised so that spellings which encode identically on the wire read
//! the same, and the shape's 64-bit FNV-1a fingerprint. Both are computed
//! here, at compile time, and emitted as literals; the runtime compares the
//! client's fingerprint with the server's before it decodes anything.
//!
//! `add(i64, i64) -> i64` is the shape of `async fn add(&self, a: i64, b:
//! i64) -> i64`. The normalisation, applied to every type recursively:
//!
//! - whitespace and lifetimes are dropped (`Cow<'a, str>` is `Cow<str>`);
//! - a path is reduced to its last segment with its generic arguments
//!   (`std::string::String` is `String`, `rpc::Stream<x::Ev>` is
//!   `Stream<Ev>`): a module path is not on the wire, and the two sides may
//!   import a type differently;
//! - `&str` is `String`, `&[T]` is `Vec<T>`, `&T` and `&mut T` are `T`: a
//!   borrowed argument encodes as its owned form (the server decodes it so);
//! - no return type is `()`.
//!
//! Argument names are not part of a shape: they are not on the wire.
//!
//! What it cannot see: a macro sees only the trait's own tokens, not the
//! items they name. A field added to (or retyped in) a user's struct, a type
//! alias pointing elsewhere, or a changed `Serialize` impl leave the shape as
//! it was, and still give a Decode error. Seeing them would take a derive on
//! every user type that travels (each contributing its own fingerprint,
//! transitively), which would force a trait of this crate on types that
//! otherwise need only serde. The other way round, spellings that encode
//! alike but are written differently (`Vec<T>` and `VecDeque<T>`, `Box<T>`
//! and `T`) are different shapes: the check is conservative.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{GenericArgument, PathArguments, ReturnType, Type};

/// The shape of a method named `wire_name` on the wire, taking `args` and
/// returning `output`.
pub(crate) fn method_shape<'a>(
    wire_name: &str,
    args: impl IntoIterator<Item = &'a Type>,
    output: &ReturnType,
) -> String {
    let args: Vec<String> = args.into_iter().map(normalized).collect();
    let returns = match output {
        ReturnType::Default => "()".to_owned(),
        ReturnType::Type(_, ty) => normalized(ty),
    };
    format!("{wire_name}({}) -> {returns}", args.join(", "))
}

/// The 64-bit FNV-1a hash of `shape` (the function method ids use).
pub(crate) fn fingerprint(shape: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shape.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 asks the server for no check (`rpc::client::method::UNCHECKED`);
    // no shape may hash to it.
    hash.max(1)
}

/// `ty` normalised (see the module docs).
pub(crate) fn normalized(ty: &Type) -> String {
    match ty {
        Type::Group(g) => normalized(&g.elem),
        Type::Paren(p) => normalized(&p.elem),
        Type::Reference(r) => match &*r.elem {
            elem if is_str(elem) => "String".to_owned(),
            Type::Slice(s) => format!("Vec<{}>", normalized(&s.elem)),
            elem => normalized(elem),
        },
        Type::Slice(s) => format!("[{}]", normalized(&s.elem)),
        Type::Array(a) => format!("[{}; {}]", normalized(&a.elem), written(&a.len)),
        Type::Tuple(t) if t.elems.len() == 1 => format!("({},)", normalized(&t.elems[0])),
        Type::Tuple(t) => {
            let elems: Vec<String> = t.elems.iter().map(normalized).collect();
            format!("({})", elems.join(", "))
        }
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(last) => format!("{}{}", last.ident, generic_args(&last.arguments)),
            None => written(ty),
        },
        // Refused by validation, or rare enough to compare as written.
        other => written(other),
    }
}

/// `<A, B>` of a path segment, lifetimes dropped; nothing if there are none.
fn generic_args(args: &PathArguments) -> String {
    let PathArguments::AngleBracketed(a) = args else {
        return String::new();
    };
    let parts: Vec<String> = a
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Lifetime(_) => None,
            GenericArgument::Type(t) => Some(normalized(t)),
            other => Some(written(other)),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("<{}>", parts.join(", "))
    }
}

fn is_str(ty: &Type) -> bool {
    match ty {
        Type::Group(g) => is_str(&g.elem),
        Type::Paren(p) => is_str(&p.elem),
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "str")
        }
        _ => false,
    }
}

/// `tokens` as written, with whitespace only where the tokens need it
/// (between two words, after `,` and `;`): `HashMap<String, Vec<u8>>`,
/// `&'a str`, `[u8; 4]`, whatever spacing the user typed.
pub(crate) fn written(tokens: &impl ToTokens) -> String {
    let mut out = String::new();
    print(tokens.to_token_stream(), &mut out);
    out
}

fn print(tokens: TokenStream, out: &mut String) {
    // Whether the last token was a word (ident, literal, lifetime): a word
    // right after it needs a space; and a keyword (`mut`, `dyn`): a group
    // right after it does too (`&mut [u8]`, not `Fn (u8)`).
    let mut after_word = false;
    let mut after_keyword = false;
    for tree in tokens {
        if !matches!(tree, TokenTree::Group(_)) {
            after_keyword = false;
        }
        match tree {
            TokenTree::Ident(i) => {
                if after_word {
                    out.push(' ');
                }
                let word = i.to_string();
                after_keyword = matches!(word.as_str(), "mut" | "dyn" | "impl" | "const" | "as");
                out.push_str(&word);
                after_word = true;
            }
            TokenTree::Literal(l) => {
                if after_word {
                    out.push(' ');
                }
                out.push_str(&l.to_string());
                after_word = true;
            }
            TokenTree::Punct(p) => {
                let c = p.as_char();
                // `->` and `=>` read better spaced.
                if p.spacing() == Spacing::Joint && (c == '-' || c == '=') {
                    out.push(' ');
                }
                out.push(c);
                match c {
                    ',' | ';' => out.push(' '),
                    '>' if out.ends_with("->") || out.ends_with("=>") => out.push(' '),
                    _ => {}
                }
                // A lifetime's quote joins the word after it.
                after_word = false;
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                if after_keyword || (after_word && g.delimiter() == Delimiter::Brace) {
                    out.push(' ');
                }
                after_keyword = false;
                out.push_str(open);
                print(g.stream(), out);
                out.push_str(close);
                after_word = g.delimiter() == Delimiter::None;
            }
        }
    }
    // No trailing separator (`(A, )` from a one-tuple is `(A,)`).
    while out.ends_with(' ') {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(ty: &str) -> String {
        normalized(&syn::parse_str::<Type>(ty).unwrap())
    }

    fn shape(sig: &str) -> String {
        let f: syn::TraitItemFn = syn::parse_str(sig).unwrap();
        let args = f.sig.inputs.iter().filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(&*t.ty),
            syn::FnArg::Receiver(_) => None,
        });
        method_shape(&f.sig.ident.to_string(), args, &f.sig.output)
    }

    #[test]
    fn paths_are_reduced_to_their_last_segment_recursively() {
        assert_eq!(norm("std::string::String"), "String");
        assert_eq!(norm("crate::a::Point"), "Point");
        assert_eq!(norm("::rpc::Stream<x::Ev>"), "Stream<Ev>");
        assert_eq!(
            norm("std::collections::HashMap<std::string::String, ::std::vec::Vec<u8>>"),
            "HashMap<String, Vec<u8>>"
        );
        assert_eq!(norm("::core::primitive::u64"), "u64");
        assert_eq!(
            norm("Result<i64, crate::MathError>"),
            "Result<i64, MathError>"
        );
    }

    #[test]
    fn borrows_read_as_what_they_encode_as() {
        assert_eq!(norm("&str"), "String");
        assert_eq!(norm("&'a ::core::primitive::str"), "String");
        assert_eq!(norm("&[i64]"), "Vec<i64>");
        assert_eq!(norm("&'a [std::string::String]"), "Vec<String>");
        assert_eq!(norm("&Point"), "Point");
        assert_eq!(norm("&mut u32"), "u32");
        assert_eq!(norm("&Vec<u8>"), "Vec<u8>");
    }

    #[test]
    fn whitespace_and_lifetimes_are_dropped() {
        assert_eq!(norm("Vec < Option < u8 > >"), "Vec<Option<u8>>");
        assert_eq!(norm("Cow<'a, str>"), "Cow<str>");
        assert_eq!(norm("( u8 , String )"), "(u8, String)");
        assert_eq!(norm("(u8,)"), "(u8,)");
        assert_eq!(norm("()"), "()");
        assert_eq!(norm("[u8 ; 4]"), "[u8; 4]");
    }

    #[test]
    fn shapes_name_the_method_its_types_and_its_return() {
        assert_eq!(
            shape("async fn add(&self, a: i64, b: i64) -> i64;"),
            "add(i64, i64) -> i64"
        );
        assert_eq!(shape("async fn ping(&self);"), "ping() -> ()");
        assert_eq!(
            shape("async fn sum(&self, label: &str, xs: &[i64]) -> String;"),
            "sum(String, Vec<i64>) -> String"
        );
        assert_eq!(
            shape("async fn watch(&self, from: u64) -> rpc::Stream<feed::Event>;"),
            "watch(u64) -> Stream<Event>"
        );
    }

    #[test]
    fn names_of_arguments_are_not_part_of_a_shape() {
        let a = shape("async fn add(&self, a: i64, b: i64) -> i64;");
        let b = shape("async fn add(&self, x: i64, y: i64) -> i64;");
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn borrowed_and_owned_spellings_share_a_fingerprint() {
        let borrowed = shape("async fn f(&self, s: &str, xs: &[u32], p: &Point) -> ();");
        let owned = shape("async fn f(&self, s: String, xs: std::vec::Vec<u32>, p: crate::Point);");
        assert_eq!(borrowed, owned);
    }

    #[test]
    fn a_changed_type_changes_the_fingerprint() {
        let v1 = fingerprint(&shape("async fn add(&self, a: i64, b: i64) -> i64;"));
        let v2 = fingerprint(&shape("async fn add(&self, a: String, b: i64) -> i64;"));
        let ret = fingerprint(&shape("async fn add(&self, a: i64, b: i64) -> u64;"));
        assert_ne!(v1, v2);
        assert_ne!(v1, ret);
    }

    #[test]
    fn fingerprints_are_fnv1a() {
        // Fixed forever, as method ids are: a change would make every
        // deployed peer report a mismatch.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn types_as_written_keep_their_paths_with_canonical_spacing() {
        let ty: Type = syn::parse_str("std::collections::HashMap < String,Vec<u8> >").unwrap();
        assert_eq!(written(&ty), "std::collections::HashMap<String, Vec<u8>>");
        let ty: Type = syn::parse_str("&'a  str").unwrap();
        assert_eq!(written(&ty), "&'a str");
        let ty: Type = syn::parse_str("&mut [u8;4]").unwrap();
        assert_eq!(written(&ty), "&mut [u8; 4]");
        let ty: Type = syn::parse_str("fn(u8)->u8").unwrap();
        assert_eq!(written(&ty), "fn(u8) -> u8");
    }
}
