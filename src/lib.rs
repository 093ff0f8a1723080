//! `chat`: a chat-roulette server on a hand-rolled mio event loop.
//!
//! The protocol cores (`http`, `ws`, `chat`) are sans-IO state machines over
//! bytes and events; `server` is the only module that touches sockets.
//! `sys` holds the process facts (descriptor limit, resident memory) that
//! the server, its load tool and the tests share.

pub mod chat;
pub mod http;
pub mod server;
pub mod sys;
pub mod ws;
