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
mod tests {
    use super::*;
    use bincode::config::{Config, standard};
    use serde::{Deserialize, Serialize};
    use std::collections::{BTreeMap, HashMap};
    use std::fmt::Debug;
    use std::time::{Duration, Instant};

    /// The limits the RPC layer uses for a payload of `len` bytes.
    fn limits_for(len: usize) -> Limits {
        Limits {
            max_depth: 128,
            max_elements: len + 4096,
        }
    }

    fn config() -> impl Config {
        standard().with_limit::<{ 16 << 20 }>()
    }

    /// Decodes `bytes` through the guard as the RPC layer does, insisting
    /// that every byte is used.
    fn guarded<'de, T: Deserialize<'de>>(bytes: &'de [u8], limits: Limits) -> Result<T, String> {
        let (value, read) =
            bincode::serde::seed_decode_from_slice(Guarded::<T>::new(limits), bytes, config())
                .map_err(|e| e.to_string())?;
        assert_eq!(read, bytes.len(), "trailing bytes");
        Ok(value)
    }

    /// Encodes `value`, then checks that the guard decodes exactly what plain
    /// bincode decodes, which is `value` itself.
    fn round_trip<T>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug,
    {
        let bytes = bincode::serde::encode_to_vec(value, config()).unwrap();
        let (plain, _): (T, usize) = bincode::serde::decode_from_slice(&bytes, config()).unwrap();
        let through_guard: T = guarded(&bytes, limits_for(bytes.len())).unwrap();
        assert_eq!(&plain, value);
        assert_eq!(&through_guard, value);
    }

    /// Runs `f` on a thread with a 2 MiB stack, as a small runtime worker has.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .expect("decode thread panicked or overflowed")
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(u64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tuple(i8, String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(u32, u32),
        Named { name: String, sides: Option<u8> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        b: bool,
        ints: (i8, i16, i32, i64, i128),
        uints: (u8, u16, u32, u64, u128),
        floats: (f32, f64),
        c: char,
        s: String,
        bytes: Vec<u8>,
        opt_none: Option<u32>,
        opt_some: Option<Box<Everything>>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        tuple: Tuple,
        shapes: Vec<Shape>,
        map: HashMap<String, Vec<u16>>,
        tree: BTreeMap<u8, Option<String>>,
        nested: Vec<Vec<Vec<u8>>>,
        array: [u8; 4],
    }

    fn everything(inner: Option<Box<Everything>>) -> Everything {
        Everything {
            b: true,
            ints: (-1, -300, -70_000, i64::MIN, i128::MIN),
            uints: (255, 65_535, u32::MAX, u64::MAX, u128::MAX),
            floats: (1.5, -0.25),
            c: 'é',
            s: "hello, world".into(),
            bytes: vec![0, 1, 2, 255],
            opt_none: None,
            opt_some: inner,
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(42),
            tuple: Tuple(-7, "seven".into()),
            shapes: vec![
                Shape::Empty,
                Shape::Circle(2.0),
                Shape::Rect(3, 4),
                Shape::Named {
                    name: "tri".into(),
                    sides: Some(3),
                },
            ],
            map: HashMap::from([("a".into(), vec![1, 2]), ("b".into(), vec![])]),
            tree: BTreeMap::from([(1, None), (2, Some("two".into()))]),
            nested: vec![vec![], vec![vec![1], vec![2, 3]]],
            array: [9, 8, 7, 6],
        }
    }

    #[test]
    fn ordinary_values_decode_identically() {
        round_trip(&everything(Some(Box::new(everything(None)))));
        round_trip(&Some(Some(Some(5u8))));
        round_trip(&None::<String>);
        round_trip(&(1u8, "two".to_string(), [3u16; 3], ()));
        round_trip(&Vec::<Shape>::new());
        round_trip(&vec![(); 100]);
        round_trip(&"x".repeat(10_000));
        round_trip(&(0..10_000u32).collect::<Vec<_>>());
        round_trip(&Shape::Named {
            name: String::new(),
            sides: None,
        });
    }

    #[test]
    fn borrowed_str_decodes() {
        let bytes = bincode::serde::encode_to_vec(("borrowed", 7u8), config()).unwrap();
        let (s, n): (&str, u8) = guarded(&bytes, limits_for(bytes.len())).unwrap();
        assert_eq!((s, n), ("borrowed", 7));
    }

    #[test]
    fn plain_deserialize_entry_point_works() {
        use serde::de::value::{Error as ValueError, SeqDeserializer};
        let de = SeqDeserializer::<_, ValueError>::new(vec![1u32, 2, 3].into_iter());
        let v: Vec<u32> = deserialize(de, limits_for(0)).unwrap();
        assert_eq!(v, [1, 2, 3]);

        let de = SeqDeserializer::<_, ValueError>::new(vec![1u32, 2, 3].into_iter());
        let tight = Limits {
            max_depth: 128,
            max_elements: 2,
        };
        let err = deserialize::<Vec<u32>, _>(de, tight).unwrap_err();
        assert!(err.to_string().contains("more elements"), "{err}");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Nest {
        Leaf,
        Node(Box<Nest>),
    }

    /// The bincode bytes of a `Nest` with `depth` nodes: variant 1 per node,
    /// then variant 0 for the leaf.
    fn nest_bytes(depth: usize) -> Vec<u8> {
        let mut bytes = vec![1u8; depth];
        bytes.push(0);
        bytes
    }

    fn nest(depth: usize) -> Nest {
        (0..depth).fold(Nest::Leaf, |inner, _| Nest::Node(Box::new(inner)))
    }

    #[test]
    fn hostile_depth_is_an_error_not_a_stack_overflow() {
        let bytes = nest_bytes(200_000);
        assert_eq!(bytes.len(), 200_001);
        let (result, took) = on_small_stack(move || {
            let start = Instant::now();
            let result = guarded::<Nest>(&bytes, limits_for(bytes.len())).map(drop);
            (result, start.elapsed())
        });
        let err = result.unwrap_err();
        assert!(err.contains("nested deeper than 128 levels"), "{err}");
        eprintln!("200,000-deep Nest rejected in {took:?}");
        assert!(took < Duration::from_secs(1));
    }

    #[test]
    fn legit_nesting_up_to_the_limit_decodes() {
        // A node is one level and so is the leaf; reading the leaf's variant
        // tag (a u32 value) is one more. So `max_depth - 2` nodes fit exactly.
        let fits = 128 - 2;
        let decoded = on_small_stack(move || {
            let bytes = bincode::serde::encode_to_vec(nest(fits), config()).unwrap();
            assert_eq!(bytes, nest_bytes(fits));
            let ok = guarded::<Nest>(&bytes, limits_for(bytes.len())).unwrap();
            let too_deep = guarded::<Nest>(&nest_bytes(fits + 1), limits_for(bytes.len()));
            (ok, too_deep)
        });
        assert_eq!(decoded.0, nest(fits));
        assert!(decoded.1.unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn depth_is_released_when_a_value_finishes() {
        // Many siblings at the same depth must not add up.
        let wide = vec![Some(vec![Some(1u8)]); 1000];
        round_trip(&wide);
        let bytes = bincode::serde::encode_to_vec(&wide, config()).unwrap();
        let shallow = Limits {
            max_depth: 5,
            max_elements: usize::MAX,
        };
        let too_shallow = Limits {
            max_depth: 4,
            ..shallow
        };
        // Vec, Option, Vec, Option, u8: five levels.
        assert_eq!(
            guarded::<Vec<Option<Vec<Option<u8>>>>>(&bytes, shallow).unwrap(),
            wide
        );
        assert!(guarded::<Vec<Option<Vec<Option<u8>>>>>(&bytes, too_shallow).is_err());
    }

    /// A bincode (standard config, varint) length prefix of `len` as a u64.
    fn huge_len(len: u64) -> Vec<u8> {
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes
    }

    #[test]
    fn zero_sized_element_bomb_is_rejected_quickly() {
        let bytes = huge_len(u64::MAX / 2);
        assert_eq!(bytes.len(), 9);
        let start = Instant::now();
        let err = guarded::<Vec<()>>(&bytes, limits_for(bytes.len())).unwrap_err();
        let took = start.elapsed();
        assert!(
            err.contains("more elements than its size can hold"),
            "{err}"
        );
        eprintln!("Vec<()> claiming 2^63 elements rejected in {took:?}");
        assert!(took < Duration::from_secs(1));
    }

    #[test]
    fn zero_sized_map_bomb_is_rejected_quickly() {
        let bytes = huge_len(u64::MAX / 2);
        let start = Instant::now();
        let err = guarded::<HashMap<(), ()>>(&bytes, limits_for(bytes.len())).unwrap_err();
        assert!(err.contains("more elements"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn element_budget_is_exact_and_shared() {
        let bytes =
            bincode::serde::encode_to_vec(vec![vec![(); 3], vec![(); 2]], config()).unwrap();
        let limits = |max_elements| Limits {
            max_depth: 128,
            max_elements,
        };
        // Two outer elements plus five inner ones.
        assert!(guarded::<Vec<Vec<()>>>(&bytes, limits(7)).is_ok());
        let err = guarded::<Vec<Vec<()>>>(&bytes, limits(6)).unwrap_err();
        assert!(err.contains("(limit 6)"), "{err}");
    }

    #[test]
    fn size_hint_is_clamped_to_the_budget() {
        /// Records the size hint it was given.
        struct Hint;
        impl<'de> Deserialize<'de> for Hint {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Hint;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a sequence")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Hint, A::Error> {
                        assert_eq!(seq.size_hint(), Some(10));
                        Ok(Hint)
                    }
                }
                de.deserialize_seq(V)
            }
        }
        let bytes = huge_len(u64::MAX / 2);
        let limits = Limits {
            max_depth: 128,
            max_elements: 10,
        };
        let (_, _) =
            bincode::serde::seed_decode_from_slice(Guarded::<Hint>::new(limits), &bytes, config())
                .unwrap();
    }
}
