//! The event loop and what it owns: sockets in, sockets out; everything
//! else is delegated to the sans-IO machines.

pub mod buffers;
pub mod config;
pub mod connection;
pub mod event_loop;
pub mod metrics;
pub mod routes;
pub mod timer;

pub use config::Config;
pub use event_loop::Server;
