//! `chat`: a chat-roulette server on a hand-rolled mio event loop.
//!
//! The protocol cores (`http`, `ws`, `chat`) are sans-IO state machines over
//! bytes and events; `engine` runs every connection's rules on top of them
//! with injected time and no I/O; `server` is the driver, the only module
//! that touches sockets, signals or the clock.
//! `sys` holds the process facts (descriptor limit, resident memory) that
//! the server, its load tool and the tests share.
//!
//! Only what the binary, the load tool, the benches, the fuzz targets and
//! the integration tests use is public; everything else is crate-private so
//! the compiler can tell us when it goes unused.

#![warn(missing_docs)]

pub mod admin;
pub mod chat;
pub mod cluster;
pub mod config;
mod engine;
pub mod http;
pub mod safety;
pub mod server;
pub mod sys;
pub mod ws;
