//! Micro-benchmarks of the hot paths, with criterion:
//!
//! - `frame/*`: encode and decode of a small request (`add(i32, i32)`) and of
//!   a 64 KiB response (`Vec<u8>`), through the library's own code paths
//!   (`rpc::bench_api`): frame header, request head, bincode payload, and the
//!   frame decoder followed by the payload decode;
//! - `stream_item/*`: a 16-byte stream item made, encoded into a batch,
//!   decoded from it and dropped, as S1 of the compare bench does each,
//!   with none of the rest of a stream (a floor under S1's CPU per item);
//! - `round_trip/add`: one `add` call, client and server in this process over
//!   loopback TCP, each on its own single-threaded runtime and OS thread.
//!
//! ```text
//! cargo bench -p rpc-bench --bench hot_paths               # full
//! cargo bench -p rpc-bench --bench hot_paths -- --quick    # a quick look
//! ```

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rpc::__private::{ByteBuf, BytesRef};
use rpc::bench_api;

#[rpc::service]
trait Bench {
    async fn add(&self, a: i32, b: i32) -> i32;
}

struct BenchImpl;

impl Bench for BenchImpl {
    async fn add(&self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
}

const BUDGET: Duration = Duration::from_secs(30);
const LARGE: usize = 64 * 1024;

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");

    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_small_request", |b| {
        b.iter(|| {
            bench_api::request_frame("Bench.add", black_box(7), BUDGET, &(black_box(1i32), 2i32))
                .unwrap()
        });
    });
    let small = bench_api::request_frame("Bench.add", 7, BUDGET, &(1i32, 2i32)).unwrap();
    g.bench_function("decode_small_request", |b| {
        b.iter_batched(
            || BytesMut::from(&small[..]),
            |mut buf| bench_api::decode_request::<(i32, i32)>(&mut buf).unwrap(),
            BatchSize::SmallInput,
        );
    });

    let data: Vec<u8> = (0..LARGE).map(|i| i as u8).collect();
    g.throughput(Throughput::Bytes(LARGE as u64));
    g.bench_function("encode_64k_response", |b| {
        b.iter(|| bench_api::response_frame(black_box(7), &BytesRef(black_box(&data))));
    });
    let large = bench_api::response_frame(7, &BytesRef(&data));
    g.bench_function("decode_64k_response", |b| {
        b.iter_batched(
            || BytesMut::from(&large[..]),
            |mut buf| bench_api::decode_response::<ByteBuf>(&mut buf).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// One streamed item of the compare bench's S1: 16 bytes in a buffer of its own.
#[derive(serde::Serialize, serde::Deserialize)]
struct Item {
    #[serde(with = "rpc::bytes")]
    payload: Vec<u8>,
}

/// What a small stream item costs with nothing but the item itself: a fresh
/// 16-byte buffer per item (as S1's server makes them), encoded into a batch
/// as a stream's sender does, taken as one run and decoded and dropped as its
/// receiver does. No flow control, no I/O, no task wake-ups: the floor under
/// S1's CPU per item, in 1,024-item batches.
fn stream_items(c: &mut Criterion) {
    const PER_BATCH: usize = 1024;
    let mut g = c.benchmark_group("stream_item");
    g.throughput(Throughput::Elements(PER_BATCH as u64));
    let payload = vec![0xA5u8; 16];
    g.bench_function("16B_make_and_drop", |b| {
        b.iter(|| {
            for _ in 0..PER_BATCH {
                black_box(Item {
                    payload: black_box(&payload).clone(),
                });
            }
        });
    });
    let mut batch = BytesMut::with_capacity(64 << 10);
    g.bench_function("16B_make_encode_decode_drop", |b| {
        b.iter(|| {
            for _ in 0..PER_BATCH {
                let item = Item {
                    payload: black_box(&payload).clone(),
                };
                bench_api::stream_item_into(&mut batch, 7, &item).unwrap();
            }
            let mut bytes = 0;
            bench_api::decode_stream_items::<Item>(&mut batch, |item| bytes += item.payload.len())
                .unwrap();
            black_box(bytes)
        });
    });
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    // The server: its own OS thread and single-threaded runtime, serving until
    // the process exits.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let server = rpc::Server::builder()
                .add_service(BenchServer::new(BenchImpl))
                .bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx.send(server.local_addr()).expect("send address");
            std::future::pending::<()>().await;
        });
    });
    let addr = addr_rx.recv().expect("server address");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let client = rt
        .block_on(BenchClient::connect(addr))
        .expect("connect to the bench server");

    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("add", |b| {
        b.iter(|| rt.block_on(client.add(black_box(1), 2)).unwrap());
    });
    g.finish();
}

criterion_group!(benches, frames, stream_items, round_trip);
criterion_main!(benches);
