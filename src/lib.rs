//! `chat`: a chat-roulette server on a hand-rolled mio event loop.
//!
//! The protocol cores (`http`, `ws`, `chat`) are sans-IO state machines over
//! bytes and events; `server` is the only module that touches sockets.

pub mod chat;
pub mod http;
pub mod server;
pub mod ws;
