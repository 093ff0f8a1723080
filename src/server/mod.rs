//! The driver: a mio event loop that moves bytes between sockets and the
//! socket-free engine (the crate-private `engine` module) and carries out
//! its actions. It owns every syscall and the clock; every rule lives in
//! the engine.

mod event_loop;
mod inbox;
pub(crate) mod link;
mod threads;
pub mod tls;

pub use crate::config::Config;
pub use event_loop::Server;
pub use threads::Threads;
pub use tls::{TlsAcceptor, TlsFiles};
