// `#[rpc(idempotent)]` on methods and `#[rpc(key)]` on an argument (owned
// or borrowed): the trait stays plain (the attributes are gone from it, so a
// local impl and local calls need none), and the client takes the same
// arguments.
#[rpc::service]
pub trait Store {
    #[rpc(idempotent)]
    async fn get(&self, #[rpc(key)] key: String) -> Option<String>;
    async fn put(&self, #[rpc(key)] key: &str, value: String);
    #[rpc(idempotent)]
    async fn len(&self) -> u64;
}

struct Local;

impl Store for Local {
    async fn get(&self, key: String) -> Option<String> {
        Some(key)
    }
    async fn put(&self, _key: &str, _value: String) {}
    async fn len(&self) -> u64 {
        0
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(Local.get("a".into()).await.as_deref(), Some("a"));
    let server = rpc::Server::builder()
        .add_service(StoreServer::new(Local))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = StoreClient::connect(server.local_addr()).await.unwrap();
    assert_eq!(client.get("k".into()).await.unwrap().as_deref(), Some("k"));
    client.put("k", "v".into()).await.unwrap();
    assert_eq!(client.len().await.unwrap(), 0);
    server.shutdown().await;
}
