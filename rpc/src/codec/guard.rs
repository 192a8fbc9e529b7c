//! Resource limits for decoding untrusted input through serde.
//!
//! bincode 2 decodes serde types without any limit on nesting depth, so a
//! recursive type such as `enum Nest { Leaf, Node(Box<Nest>) }` sent a few
//! hundred thousand levels deep (one byte per level) overflows the stack and
//! aborts the process. Its byte limit does not help against zero-sized
//! elements either: a `Vec<()>` whose length prefix claims 2^63 elements reads
//! no bytes per element, so the decoder loops for ever.
//!
//! [`Guarded`] (or [`deserialize`]) wraps any [`Deserializer`] and every
//! visitor, access and seed handed out while a value is decoded, so that:
//!
//! - each value entered (each `deserialize_*` call) is one level deeper than
//!   the value holding it, and entering a level beyond
//!   [`Limits::max_depth`] fails the decode;
//! - each sequence element and map entry produced costs one unit of
//!   [`Limits::max_elements`], and the decode fails once the budget is spent.
//!
//! Both failures are `serde::de::Error::custom` errors of the inner
//! deserializer's error type.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, EnumAccess, Error, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Limits enforced while one value is decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How many values may be nested inside one another, the outermost
    /// value and the innermost scalar included.
    pub(crate) max_depth: usize,
    /// How many sequence elements and map entries the whole input may hold.
    pub(crate) max_elements: usize,
}

/// Deserializes `T` from `de`, enforcing `limits`.
pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    de: D,
    limits: Limits,
) -> Result<T, D::Error> {
    let state = State {
        depth: Cell::new(0),
        remaining: Cell::new(limits.max_elements),
        limits,
    };
    T::deserialize(state.wrap(de))
}

/// A [`DeserializeSeed`] producing `T` under `limits`, for decoders such as
/// `bincode::serde::seed_decode_from_slice` that also report bytes read.
pub(crate) struct Guarded<T> {
    /// The limits applied to the decode.
    limits: Limits,
    /// Marks the produced type without owning one.
    _t: PhantomData<fn() -> T>,
}

impl<T> Guarded<T> {
    /// A seed that decodes `T` under `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("limits", &self.limits)
            .finish()
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Guarded<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        deserialize(de, self.limits)
    }
}

/// Counters shared by every wrapper taking part in one decode.
#[derive(Debug)]
struct State {
    /// How many values are being decoded inside one another right now.
    depth: Cell<usize>,
    /// How many more elements and entries may be produced.
    remaining: Cell<usize>,
    /// The limits this decode started with.
    limits: Limits,
}

impl State {
    /// Enters one more level of nesting, until the returned guard drops.
    fn enter<E: Error>(&self) -> Result<Level<'_>, E> {
        let depth = self.depth.get() + 1;
        if depth > self.limits.max_depth {
            return Err(E::custom(format_args!(
                "input nested deeper than {} levels",
                self.limits.max_depth
            )));
        }
        self.depth.set(depth);
        Ok(Level(self))
    }

    /// Spends one element of the budget.
    fn charge<E: Error>(&self) -> Result<(), E> {
        let Some(remaining) = self.remaining.get().checked_sub(1) else {
            return Err(E::custom(format_args!(
                "input claims more elements than its size can hold (limit {})",
                self.limits.max_elements
            )));
        };
        self.remaining.set(remaining);
        Ok(())
    }

    /// A size hint no larger than the budget left, so that no caller
    /// preallocates for elements the input cannot hold.
    fn clamp(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|n| n.min(self.remaining.get()))
    }

    /// Wraps `inner` so that it reports to this state.
    fn wrap<X>(&self, inner: X) -> Wrap<'_, X> {
        Wrap { inner, state: self }
    }
}

/// One level of nesting; leaving it (even on error) lowers the depth again.
#[derive(Debug)]
struct Level<'a>(&'a State);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.depth.set(self.0.depth.get() - 1);
    }
}

/// Any serde piece (deserializer, visitor, access or seed) made to report to
/// the shared [`State`]; each trait is implemented when `X` implements it.
#[derive(Debug)]
struct Wrap<'a, X> {
    /// The wrapped piece.
    inner: X,
    /// The counters of this decode.
    state: &'a State,
}

/// Forwards `deserialize_*` methods, entering one level and wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let _level = self.state.enter()?;
            self.inner.$method($($arg,)* self.state.wrap(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Wrap<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods that carry no nested value.
macro_rules! forward_visit {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<E: Error>(self, $($arg: $ty),*) -> Result<V::Value, E> {
            self.inner.$method($($arg),*)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(v: bool);
        visit_i8(v: i8);
        visit_i16(v: i16);
        visit_i32(v: i32);
        visit_i64(v: i64);
        visit_i128(v: i128);
        visit_u8(v: u8);
        visit_u16(v: u16);
        visit_u32(v: u32);
        visit_u64(v: u64);
        visit_u128(v: u128);
        visit_f32(v: f32);
        visit_f64(v: f64);
        visit_char(v: char);
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
        visit_bytes(v: &[u8]);
        visit_borrowed_bytes(v: &'de [u8]);
        visit_byte_buf(v: Vec<u8>);
        visit_none();
        visit_unit();
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(self.state.wrap(de))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(self.state.wrap(de))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(self.state.wrap(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(self.state.wrap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(self.state.wrap(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(self.state.wrap(de))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let element = self.inner.next_element_seed(self.state.wrap(seed))?;
        if element.is_some() {
            self.state.charge()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.state.clamp(self.inner.size_hint())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.inner.next_key_seed(self.state.wrap(seed))?;
        if key.is_some() {
            self.state.charge()?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(self.state.wrap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.state.clamp(self.inner.size_hint())
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'a, A> {
    type Error = A::Error;
    type Variant = Wrap<'a, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (tag, variant) = self.inner.variant_seed(self.state.wrap(seed))?;
        Ok((tag, self.state.wrap(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(self.state.wrap(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, self.state.wrap(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, self.state.wrap(visitor))
    }
}

#[cfg(test)]
mod tests;
