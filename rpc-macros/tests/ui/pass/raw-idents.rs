//! Raw identifiers: `r#type` is `type` on the wire.

#![deny(warnings)]

#[rpc::service]
pub trait Keywords {
    async fn r#type(&self, r#match: u32, r#in: &str) -> String;
}

struct Impl;
impl Keywords for Impl {
    async fn r#type(&self, r#match: u32, r#in: &str) -> String {
        format!("{match}{in}", match = r#match, in = r#in)
    }
}

#[allow(dead_code)]
fn client_method(client: &KeywordsClient) {
    let _ = client.r#type(1, "x");
}

#[tokio::main]
async fn main() {
    use rpc::__private::Service;
    assert_eq!(Impl.r#type(1, "x").await, "1x");
    let methods = KeywordsServer::new(Impl).methods();
    assert_eq!(methods[0].name, "Keywords.type");
    assert_eq!(methods[0].id, rpc::protocol::method_id("Keywords.type"));
}
