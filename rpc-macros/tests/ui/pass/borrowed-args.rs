//! Borrowed arguments: the client method takes the borrow, the server decodes
//! owned data and lends the handler a borrow of it.

#![deny(warnings)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[rpc::service]
pub trait Greeter {
    async fn greet(&self, name: &str, tags: &[String]) -> String;
    async fn norm(&self, p: &Point) -> i32;
    async fn sum<'a>(&'a self, xs: &'a [i64], label: &'a String) -> (String, i64);
}

struct Impl;

impl Greeter for Impl {
    async fn greet(&self, name: &str, tags: &[String]) -> String {
        format!("hello {name} [{}]", tags.join(","))
    }
    async fn norm(&self, p: &Point) -> i32 {
        p.x.abs() + p.y.abs()
    }
    async fn sum<'a>(&'a self, xs: &'a [i64], label: &'a String) -> (String, i64) {
        (label.clone(), xs.iter().sum())
    }
}

fn assert_spawnable<F: std::future::Future + Send + 'static>(_: &F) {}

/// The call future borrows nothing: the arguments are encoded when the method
/// is called, so it outlives the locals it was given and can be spawned.
#[allow(dead_code)]
fn client_futures_own_nothing(client: &GreeterClient) {
    let name = String::from("ann");
    let tags = vec![String::from("a")];
    let call = client.greet(&name, &tags);
    drop((name, tags));
    assert_spawnable(&call);
    let _: &dyn std::future::Future<Output = Result<String, rpc::Error>> = &call;
    let label = String::from("l");
    assert_spawnable(&client.sum(&[1, 2], &label));
    assert_spawnable(&client.norm(&Point { x: 1, y: 2 }));
}

#[tokio::main]
async fn main() {
    let tags = vec!["a".to_string(), "b".to_string()];
    assert_eq!(Impl.greet("ann", &tags).await, "hello ann [a,b]");
    assert_eq!(Impl.norm(&Point { x: -1, y: 2 }).await, 3);
    assert_eq!(Impl.sum(&[1, 2, 3], &"s".to_string()).await, ("s".to_string(), 6));
}
