//! A run of one call's StreamItem frames, taken out of the read buffer as
//! one block: one allocation and one copy for all the items a read brought,
//! where a copy per item would cost an allocation (or a move of an in-place
//! payload) each.
//!
//! The run holds the frames exactly as they came (length prefix and header
//! included), so its bytes are what a stream's window counts for them, and
//! it keeps no read buffer alive: it is the application's to hold for as
//! long as it takes to read the items.

use std::ops::Range;

use bytes::{Buf, BytesMut};

use super::{HEADER_LEN, Kind, LEN_PREFIX};

/// Whole StreamItem frames of one call, back to back.
#[derive(Debug)]
pub(crate) struct ItemRun {
    bytes: Vec<u8>,
    call_id: u64,
    /// Where the next item's frame starts.
    next: usize,
    /// Where the last frame starts.
    last: usize,
}

impl ItemRun {
    /// The StreamItem frames of one call at the start of `buf`, as many as
    /// are whole and well-formed (under `max_frame`, no flags) in a row;
    /// none if the first is not. What is taken leaves `buf`; a frame that
    /// is not whole, of another call or kind, or malformed stays there.
    pub(crate) fn take(buf: &mut BytesMut, max_frame: usize) -> Option<ItemRun> {
        let call_id = item_frame(buf, max_frame).map(|(id, _)| id)?;
        let mut end = 0;
        let mut last = 0;
        while let Some((id, len)) = buf.get(end..).and_then(|rest| item_frame(rest, max_frame)) {
            if id != call_id {
                break;
            }
            last = end;
            end += len;
        }
        let bytes = buf[..end].to_vec();
        buf.advance(end);
        Some(ItemRun {
            bytes,
            call_id,
            next: 0,
            last,
        })
    }

    /// A run of one item, from a frame decoded on its own.
    pub(crate) fn one(call_id: u64, payload: &[u8]) -> ItemRun {
        let mut bytes = Vec::with_capacity(LEN_PREFIX + HEADER_LEN + payload.len());
        bytes.extend_from_slice(&((HEADER_LEN + payload.len()) as u32).to_be_bytes());
        bytes.push(Kind::StreamItem as u8);
        bytes.push(0);
        bytes.extend_from_slice(&call_id.to_be_bytes());
        bytes.extend_from_slice(payload);
        ItemRun {
            bytes,
            call_id,
            next: 0,
            last: 0,
        }
    }

    pub(crate) fn call_id(&self) -> u64 {
        self.call_id
    }

    /// Bytes of the whole run: what the window counts for its items.
    pub(crate) fn cost(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes of the frames before the last one: the window had to have
    /// room left after them for the last one to be sent.
    pub(crate) fn before_last(&self) -> usize {
        self.last
    }

    /// The next item: where its payload is in the run (see
    /// [`payload`](Self::payload)) and its frame's bytes, which the window
    /// counts; none once every item was taken.
    pub(crate) fn next_item(&mut self) -> Option<(Range<usize>, usize)> {
        let head = self.bytes.get(self.next..self.next + LEN_PREFIX)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let start = self.next + LEN_PREFIX + HEADER_LEN;
        self.next += LEN_PREFIX + len;
        Some((start..self.next, LEN_PREFIX + len))
    }

    /// The bytes of an item [`next_item`](Self::next_item) gave.
    pub(crate) fn payload(&self, at: Range<usize>) -> &[u8] {
        &self.bytes[at]
    }
}

/// The call id and length (prefix included) of the StreamItem frame at the
/// start of `buf`, if it is whole and well-formed.
fn item_frame(buf: &[u8], max_frame: usize) -> Option<(u64, usize)> {
    let head = buf.get(..LEN_PREFIX + HEADER_LEN)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let well_formed = head[LEN_PREFIX] == Kind::StreamItem as u8
        && head[LEN_PREFIX + 1] == 0
        && (HEADER_LEN..=max_frame).contains(&len)
        && buf.len() >= LEN_PREFIX + len;
    if !well_formed {
        return None;
    }
    let id = u64::from_be_bytes(head[LEN_PREFIX + 2..].try_into().ok()?);
    Some((id, LEN_PREFIX + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameBuf;

    fn frame(kind: Kind, id: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = FrameBuf::new(kind, id, payload.len());
        f.extend_from_slice(payload);
        f.finish().to_vec()
    }

    fn items(run: &mut ItemRun) -> Vec<(Vec<u8>, usize)> {
        std::iter::from_fn(|| {
            let (at, cost) = run.next_item()?;
            Some((run.payload(at).to_vec(), cost))
        })
        .collect()
    }

    #[test]
    fn a_run_is_the_whole_items_of_the_first_frames_call_in_a_row() {
        let mut wire = frame(Kind::StreamItem, 7, b"a");
        wire.extend(frame(Kind::StreamItem, 7, b"bc"));
        wire.extend(frame(Kind::StreamItem, 7, b""));
        let after = wire.len();
        wire.extend(frame(Kind::StreamItem, 8, b"other call"));
        let mut buf = BytesMut::from(&wire[..]);
        let mut run = ItemRun::take(&mut buf, 1 << 20).unwrap();
        assert_eq!(run.call_id(), 7);
        assert_eq!(run.cost(), after, "the run's bytes are its frames'");
        assert_eq!(run.before_last(), 15 + 16);
        assert_eq!(
            items(&mut run),
            vec![(b"a".to_vec(), 15), (b"bc".to_vec(), 16), (vec![], 14)]
        );
        assert_eq!(&buf[..], &frame(Kind::StreamItem, 8, b"other call")[..]);
    }

    #[test]
    fn what_is_not_a_whole_well_formed_item_stays_in_the_buffer() {
        let item = frame(Kind::StreamItem, 1, b"xyz");
        let mut flagged = frame(Kind::StreamItem, 1, b"q");
        flagged[5] = 1;
        for (name, rest) in [
            ("part of an item", item[..item.len() - 1].to_vec()),
            ("another kind", frame(Kind::Ping, 1, b"")),
            ("flags set", flagged),
            ("too large", frame(Kind::StreamItem, 1, &[0; 100])),
        ] {
            let mut wire = item.clone();
            wire.extend(&rest);
            let mut buf = BytesMut::from(&wire[..]);
            let mut run = ItemRun::take(&mut buf, 64).unwrap();
            assert_eq!(items(&mut run).len(), 1, "{name}");
            assert_eq!(&buf[..], &rest[..], "{name}: left for the codec");
            let mut alone = BytesMut::from(&rest[..]);
            assert!(ItemRun::take(&mut alone, 64).is_none(), "{name}");
            assert_eq!(alone.len(), rest.len(), "{name}: nothing taken");
        }
    }

    #[test]
    fn one_item_is_the_frame_it_came_in() {
        let mut run = ItemRun::one(3, b"hello");
        assert_eq!(run.cost(), 19);
        assert_eq!(run.before_last(), 0);
        let mut buf = BytesMut::from(&frame(Kind::StreamItem, 3, b"hello")[..]);
        let mut taken = ItemRun::take(&mut buf, 1 << 20).unwrap();
        assert_eq!(items(&mut run), items(&mut taken));
    }
}
