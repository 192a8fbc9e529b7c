//! `Vec<u8>` and `&[u8]` arguments and returns travel as one block of bytes,
//! and the block is the same on the wire as the element-by-element encoding:
//! a client that sends bytes one `u8` at a time talks to a fast-path server.

#![deny(warnings)]

#[rpc::service]
pub trait Blobs {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    async fn concat(&self, a: &[u8], b: &Vec<u8>, c: std::vec::Vec<u8>) -> std::vec::Vec<u8>;
    async fn len(&self, tag: &str, data: &[u8]) -> usize;
}

struct Impl;
impl Blobs for Impl {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn concat(&self, a: &[u8], b: &Vec<u8>, c: Vec<u8>) -> Vec<u8> {
        [a, b, &c].concat()
    }
    async fn len(&self, tag: &str, data: &[u8]) -> usize {
        tag.len() + data.len()
    }
}

/// A byte that serde encodes as one `u8` at a time: the plain encoding.
/// Named `u8` (in a module: the fast path is taken only for `u8` and
/// `core::primitive::u8` as written) so that the schema check, which sees
/// only the last segment of a path, finds the two traits' shapes equal.
mod plain {
    #[allow(non_camel_case_types)]
    #[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct u8(pub core::primitive::u8);
}
use plain::u8 as Byte;

/// The same service as `Blobs`, declared without the fast path.
#[rpc::service(name = "Blobs")]
pub trait SlowBlobs {
    async fn echo(&self, data: Vec<plain::u8>) -> Vec<plain::u8>;
    async fn concat(
        &self,
        a: &[plain::u8],
        b: &Vec<plain::u8>,
        c: Vec<plain::u8>,
    ) -> Vec<plain::u8>;
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(BlobsServer::new(Impl))
        .bind("127.0.0.1:0")
        .await?;
    let fast = BlobsClient::connect(server.local_addr()).await?;
    let data: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    assert_eq!(fast.echo(data.clone()).await?, data);
    assert_eq!(fast.concat(&[1], &vec![2, 3], vec![4]).await?, [1, 2, 3, 4]);
    assert_eq!(fast.len("ab", &data).await?, 70_002);
    assert_eq!(fast.echo(Vec::new()).await?, Vec::<u8>::new());

    let slow = SlowBlobsClient::connect(server.local_addr()).await?;
    let bytes: Vec<Byte> = data.iter().copied().map(Byte).collect();
    assert_eq!(slow.echo(bytes.clone()).await?, bytes);
    let got = slow.concat(&[Byte(1)], &vec![Byte(2)], vec![Byte(3)]).await?;
    assert_eq!(got, [Byte(1), Byte(2), Byte(3)]);

    server.shutdown().await;
    Ok(())
}
