//! Flow control in isolation: the window, credit, and the frames on the wire.
use super::*;
use std::sync::atomic::AtomicUsize;

/// A wire that hands each frame to a closure and never backs up.
struct Sink<F>(F);

impl<F: Fn(Outgoing) -> bool + Send + Sync + 'static> Wire for Sink<F> {
    fn send(&self, frame: Outgoing) -> bool {
        (self.0)(frame)
    }

    fn queued(&self) -> usize {
        0
    }

    fn room(&self, _: usize) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

fn flow(window: usize) -> (Flow, Arc<AtomicUsize>) {
    let frames = Arc::new(AtomicUsize::new(0));
    let counted = frames.clone();
    let send = Sink(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
        true
    });
    (Flow::new(7, window, window, send), frames)
}

/// The stream frames on the wire, byte for byte: a credit of 1000 bytes,
/// an item of call 7, and a clean end.
#[test]
fn golden_bytes_of_stream_frames() {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let sink = frames.clone();
    let send = Sink(move |frame: Outgoing| {
        let bytes = match frame {
            Outgoing::Bytes(b) => b.to_vec(),
            Outgoing::Buf(f) => f.finish().to_vec(),
        };
        sink.lock().unwrap().push(bytes);
        true
    });
    let flow = Flow::new(7, 4096, 4096, send);
    flow.grant(1000);
    let mut item = FrameBuf::new(Kind::StreamItem, 0, 1);
    item.extend_from_slice(&[42]);
    item.set_call_id(7);
    let item = item.finish();
    assert!(flow.send_items(item.clone(), item.len()));
    assert!(flow.finish(&[0]));
    let frames = frames.lock().unwrap();
    let header = |len: u8, kind: u8| vec![0, 0, 0, len, kind, 0, 0, 0, 0, 0, 0, 0, 0, 7];
    assert_eq!(frames[0], [header(14, 10), vec![0, 0, 0x03, 0xE8]].concat());
    assert_eq!(frames[1], [header(11, 8), vec![42]].concat());
    assert_eq!(frames[2], [header(11, 9), vec![0]].concat());
}

/// `n` empty items of call 7 in a row, as the reader takes them.
fn empty_items(n: usize) -> ItemRun {
    let mut wire = bytes::BytesMut::new();
    for _ in 0..n {
        wire.extend_from_slice(&FrameBuf::new(Kind::StreamItem, 7, 0).finish());
    }
    ItemRun::take(&mut wire, 1 << 20).unwrap()
}

#[test]
fn a_peer_sending_past_the_window_is_refused_and_credit_reopens_it() {
    let (flow, _) = flow(100);
    // 14 bytes of frame each: the 8th starts at 98 < 100, the 9th at 112.
    for _ in 0..8 {
        flow.push(ItemRun::one(7, &[])).unwrap();
    }
    assert!(flow.push(ItemRun::one(7, &[])).is_err());
    flow.grant(14);
    flow.push(ItemRun::one(7, &[])).unwrap();
}

#[test]
fn a_run_of_items_is_refused_exactly_when_one_of_them_alone_would_be() {
    let (eight, _) = flow(100);
    eight.push(empty_items(8)).unwrap();
    let (nine, _) = flow(100);
    assert!(nine.push(empty_items(9)).is_err());
    let (split, _) = flow(100);
    split.push(empty_items(3)).unwrap();
    split.push(empty_items(5)).unwrap();
    assert!(split.push(empty_items(1)).is_err());
}

#[test]
fn a_sender_may_send_one_item_larger_than_the_window() {
    let (flow, frames) = flow(100);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        flow.poll_send_ready(&mut cx),
        Poll::Ready(Ok(100))
    ));
    let mut big = FrameBuf::new(Kind::StreamItem, 0, 1000);
    big.extend_from_slice(&[0; 1000]);
    assert!(flow.send_items(big.finish(), 1014));
    assert!(flow.poll_send_ready(&mut cx).is_pending(), "no credit left");
    flow.credit(1014);
    assert!(matches!(
        flow.poll_send_ready(&mut cx),
        Poll::Ready(Ok(100))
    ));
    assert!(flow.finish(&[0]));
    assert!(!flow.finish(&[0]), "one end only");
    assert!(matches!(
        flow.poll_send_ready(&mut cx),
        Poll::Ready(Err(Closed))
    ));
    assert_eq!(frames.load(Ordering::Relaxed), 2);
}
