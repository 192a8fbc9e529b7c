//! `#[rpc(..)]` options. Every option, wherever it may go (on a method now,
//! on an argument later), is parsed by the same few helpers, so all of them
//! share one syntax (a flag `word`, or `word = "value"`) and one set of
//! errors (unknown, repeated, flag given a value).

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr};

use super::Errors;

/// The options of a method, from its `#[rpc(..)]` attributes (any number,
/// each with any number of options, as serde allows).
#[derive(Default)]
pub(crate) struct MethodOptions {
    /// `name = "..."`: the method's name on the wire.
    pub(crate) name: Option<LitStr>,
    /// `blocking`: the method is a plain `fn` that runs on tokio's blocking
    /// thread pool. The word's span, for errors about it.
    pub(crate) blocking: Option<Span>,
    /// `idempotent`: running the method twice is harmless, so a balanced
    /// channel may retry it after it may have run, and hedge it.
    pub(crate) idempotent: Option<Span>,
    /// `no_deadline`: a method returning a stream may run for as long as the
    /// caller reads it, so the channel's default timeout does not apply.
    pub(crate) no_deadline: Option<Span>,
}

/// What may go in a method's `#[rpc(..)]`, for the error on anything else.
const METHOD_OPTIONS: &str = "the options are `name = \"...\"` (the method's name on the wire), \
     `blocking` (a plain `fn` run on tokio's blocking thread pool), `idempotent` (safe to \
     run twice: may be retried and hedged) and `no_deadline` (a returned stream is not cut off \
     by the channel's default timeout)";

impl MethodOptions {
    /// Reads every `#[rpc(..)]` in `attrs`; mistakes go to `errors` and the
    /// options understood so far are kept.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut options = MethodOptions::default();
        each_option(attrs, errors, |meta| {
            if meta.path.is_ident("name") {
                string(meta, &mut options.name, "the wire name")
            } else if meta.path.is_ident("blocking") {
                flag(meta, &mut options.blocking)
            } else if meta.path.is_ident("idempotent") {
                flag(meta, &mut options.idempotent)
            } else if meta.path.is_ident("no_deadline") {
                flag(meta, &mut options.no_deadline)
            } else {
                Err(meta.error(format!("unknown #[rpc] option: {METHOD_OPTIONS}")))
            }
        });
        options
    }
}

/// Reads an argument's `#[rpc(..)]`: `key` (the call's affinity key, for
/// a balanced channel's `Affinity` policy) is the one option there. The
/// word's span, if given.
pub(crate) fn parse_arg(attrs: &[Attribute], errors: &mut Errors) -> Option<Span> {
    let mut key = None;
    each_option(attrs, errors, |meta| {
        if meta.path.is_ident("key") {
            flag(meta, &mut key)
        } else {
            Err(meta.error(
                "unknown #[rpc] option on an argument: the option is `key` (calls with the same \
                 key go to the same server of a balanced channel)",
            ))
        }
    });
    key
}

/// Calls `option` for each option of each `#[rpc(..)]` attribute in `attrs`.
/// An error ends that attribute only: the next one is still read.
fn each_option(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut option: impl FnMut(&ParseNestedMeta) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("rpc")) {
        if let Err(e) = attr.parse_nested_meta(|meta| option(&meta)) {
            errors.push(e);
        }
    }
}

/// A flag: the bare word, at most once.
fn flag(meta: &ParseNestedMeta, slot: &mut Option<Span>) -> syn::Result<()> {
    let word = meta.path.require_ident()?;
    if slot.replace(word.span()).is_some() {
        return Err(meta.error(format!("`{word}` is already given: write it once")));
    }
    // Taken as given all the same, so the method is checked as the flag
    // says and this mistake is the only one reported.
    if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        return Err(meta.error(format!("`{word}` takes no value: write `#[rpc({word})]`")));
    }
    Ok(())
}

/// `word = "value"`, at most once; `what` names the value in the error.
fn string(meta: &ParseNestedMeta, slot: &mut Option<LitStr>, what: &str) -> syn::Result<()> {
    let word = meta.path.require_ident()?;
    let lit = meta.value()?.parse::<LitStr>()?;
    if slot.is_some() {
        return Err(syn::Error::new(
            lit.span(),
            format!("{what} is already given: write `{word} = \"...\"` once"),
        ));
    }
    *slot = Some(lit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: syn::TraitItemFn) -> (MethodOptions, Vec<String>) {
        let mut errors = Errors::default();
        let options = MethodOptions::parse(&method.attrs, &mut errors);
        let messages = match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (options, messages)
    }

    #[test]
    fn options_combine_within_and_across_attributes() {
        let (options, errors) = parse(syn::parse_quote! {
            #[rpc(name = "h", blocking)]
            #[doc = "not ours"]
            fn hash(&self) -> u64;
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(options.name.unwrap().value(), "h");
        assert!(options.blocking.is_some());

        let (options, errors) = parse(syn::parse_quote! {
            #[rpc(blocking)]
            #[rpc(name = "h")]
            fn hash(&self) -> u64;
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert!(options.name.is_some() && options.blocking.is_some());

        let (options, errors) = parse(syn::parse_quote! {
            #[rpc(no_deadline, idempotent)]
            async fn follow(&self) -> rpc::Stream<u64>;
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert!(options.no_deadline.is_some() && options.idempotent.is_some());
    }

    #[test]
    fn each_mistake_is_reported_and_the_rest_is_still_read() {
        let (options, errors) = parse(syn::parse_quote! {
            #[rpc(blocking = true)]
            #[rpc(blocking, blocking)]
            #[rpc(bogus)]
            #[rpc(name = "a")]
            fn f(&self);
        });
        assert_eq!(
            errors[..2],
            [
                "`blocking` takes no value: write `#[rpc(blocking)]`",
                "`blocking` is already given: write it once",
            ]
        );
        assert!(errors[2].starts_with("unknown #[rpc] option: the options are"));
        assert_eq!(errors.len(), 3);
        assert!(options.blocking.is_some());
        assert_eq!(options.name.unwrap().value(), "a");
    }
}
