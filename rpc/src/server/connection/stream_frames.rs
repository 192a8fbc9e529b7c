//! The driver's part in streaming calls: opening one when its request
//! arrives, and handing each of the client's stream frames to its call.

use std::sync::Arc;
use std::time::Duration;

use super::{Driver, End};
use crate::observe::metrics;
use crate::protocol::{Frame, ItemRun, Kind, Status};
use crate::server::streams::Registration;
use crate::stream::{End as StreamEnd, Flow};

impl Driver {
    /// Registers streaming call `id`, or refuses it (`None`, the client
    /// answered) when the connection has as many open as it may. The
    /// client's items are dropped as they come unless the method
    /// `receives` a stream.
    pub(super) fn open_stream(
        &self,
        id: u64,
        method: &'static str,
        budget: Duration,
        receives: bool,
    ) -> Option<Arc<Registration>> {
        let config = &self.shared.config;
        if self.streams.len() >= config.max_streams_per_connection {
            let message = format!(
                "{} streams are open on this connection, the server's max_streams_per_connection",
                config.max_streams_per_connection
            );
            let _ = self.outbox.send(Status::Overloaded.reply(id, &message));
            metrics::refused(Some(method), Status::Overloaded.name());
            return None;
        }
        let flow = Flow::new(
            id,
            config.stream_window,
            self.send_window,
            self.outbox.clone(),
        );
        let flow = if receives { flow } else { flow.not_receiving() };
        Some(self.streams.register(flow, method, budget))
    }

    /// A StreamItem, StreamEnd or StreamCredit from the client. One for a
    /// call that is over (it crossed the call's end on the wire) is
    /// dropped; one past the stream's window breaks the protocol.
    pub(super) fn on_stream_frame(&mut self, frame: Frame) -> Option<End> {
        let open = self.streams.get(frame.call_id)?;
        let flow = &open.flow;
        match frame.kind {
            Kind::StreamItem => {
                return self.on_stream_items(ItemRun::one(frame.call_id, &frame.payload));
            }
            Kind::StreamEnd => flow.end(StreamEnd::Peer(frame.payload.into())),
            Kind::StreamCredit => {
                if let Err(why) = flow.credit_frame(&frame.payload) {
                    return Some(End::Protocol(why));
                }
            }
            _ => unreachable!("only stream frames are passed here"),
        }
        None
    }

    /// StreamItems from the client: to their stream, held until the handler
    /// takes them.
    pub(super) fn on_stream_items(&mut self, items: ItemRun) -> Option<End> {
        let open = self.streams.get(items.call_id())?;
        let id = items.call_id();
        open.flow.push(items).err().map(|overrun| {
            End::Protocol(format!(
                "the client sent past the {}-byte window of stream {id}",
                overrun.window
            ))
        })
    }
}
