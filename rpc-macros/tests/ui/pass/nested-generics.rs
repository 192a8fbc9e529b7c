//! Nested generic types in arguments and return values.

#![deny(warnings)]

use std::collections::{BTreeMap, HashMap};

#[rpc::service]
pub trait Index {
    async fn merge(
        &self,
        a: HashMap<String, Vec<Option<(u32, String)>>>,
        b: &BTreeMap<u8, Vec<Vec<i64>>>,
        c: &[Option<Box<[u16; 3]>>],
    ) -> Option<Vec<Result<u8, String>>>;
}

struct Impl;
impl Index for Impl {
    async fn merge(
        &self,
        a: HashMap<String, Vec<Option<(u32, String)>>>,
        b: &BTreeMap<u8, Vec<Vec<i64>>>,
        c: &[Option<Box<[u16; 3]>>],
    ) -> Option<Vec<Result<u8, String>>> {
        Some(vec![Ok(a.len() as u8), Ok(b.len() as u8), Err(c.len().to_string())])
    }
}

#[tokio::main]
async fn main() {
    let mut a = HashMap::new();
    a.insert("k".to_string(), vec![Some((1, "v".to_string())), None]);
    let mut b = BTreeMap::new();
    b.insert(1, vec![vec![1, 2]]);
    let out = Impl.merge(a, &b, &[None, Some(Box::new([1, 2, 3]))]).await;
    assert_eq!(out, Some(vec![Ok(1), Ok(1), Err("2".to_string())]));
}
