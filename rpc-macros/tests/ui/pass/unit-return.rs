//! Methods that return nothing (and `()` written out): the client still
//! learns that the call completed, as `Result<(), rpc::Error>`.

#![deny(warnings)]

use std::sync::Mutex;

#[rpc::service]
pub trait Log {
    async fn write(&self, line: &str);
    async fn flush(&self) -> ();
}

#[derive(Default)]
struct Memory(Mutex<Vec<String>>);

impl Log for Memory {
    async fn write(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
    async fn flush(&self) {}
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(LogServer::new(Memory::default()))
        .bind("127.0.0.1:0")
        .await?;
    let client = LogClient::connect(server.local_addr()).await?;
    let done: () = client.write("one").await?;
    let flushed: () = client.flush().await?;
    let _ = (done, flushed);
    server.shutdown().await;
    Ok(())
}
