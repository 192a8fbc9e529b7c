//! The guard decodes ordinary values exactly as plain bincode does, and turns
//! hostile depth and zero-sized-element bombs into quick errors on a small
//! stack.

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
    let bytes = bincode::serde::encode_to_vec(vec![vec![(); 3], vec![(); 2]], config()).unwrap();
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
