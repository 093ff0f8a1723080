//! Chat roulette, sans-IO: client messages and connection events in,
//! messages to clients out through an [`Outbox`]. Time is injected as
//! milliseconds on a monotonic clock, so tests are deterministic.
//!
//! CONTRACT with the event loop (`server/`):
//! * `on_connect` when a WebSocket session on `/` opens, with the raw query
//!   string of the request without `?` (`interests=music,rust&x=1`), or
//!   `None`; `Pairing` finds, decodes and checks `interests` itself.
//!   `on_connect_from` is the same with the client's address, which blocks
//!   and reports need (`ChatConfig::safety` holds the shared state).
//! * `on_text` for every text message from that client. `Err(e)` (a
//!   [`SessionError`]) means: close the connection with `e.close_code()`
//!   and `e.reason()` (1008 for sustained flooding); the loop then calls
//!   `on_disconnect`.
//! * `on_disconnect` exactly once when the client goes away for any reason.
//! * `next_deadline()` is the earliest time `on_tick` must be called (the
//!   interest-wait fallback); the loop folds it into its poll timeout.
//! * Every `Outbox::send` call is one text frame to that client, in order.
//! * Time: `now_ms` is monotonic milliseconds since the loop started;
//!   `ChatConfig::unix_start_s` is the wall clock (Unix seconds) at that
//!   start, so TURN credential expiry is `unix_start_s + now_ms / 1000`
//!   plus `--turn-ttl` without the chat ever reading a clock.

mod error;
pub mod matchmaker;
pub mod pairing;
pub mod peer;
pub mod protocol;
mod safety;
#[cfg(test)]
mod tests;
pub mod video;

pub use error::SessionError;
pub(crate) use pairing::ChatMetrics;
pub use pairing::{ChatConfig, Pairing};
pub use protocol::{write_json, ServerMsg};
pub use video::{PairId, TurnSecret, VideoConfig};

/// The event loop's handle for a chat client (its slab index).
pub type ClientId = usize;

/// Where the chat's messages go. The server writes each one as a text frame
/// into the client's output buffer; tests record them.
pub trait Outbox {
    /// Delivers one message to client `to`; called in the order the
    /// client must see them.
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>);

    /// Hands an event for a client of another event loop to the driver
    /// (with one loop there are none: the default drops them).
    fn cross(&mut self, _event: &peer::Cross<'_>) {}
}

/// Live counts for `/stats` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connected chat clients, in any state.
    pub online: usize,
    /// Clients queued, looking for a stranger.
    pub waiting: usize,
    /// Clients in a chat: twice the number of pairs.
    pub chatting: usize,
}
