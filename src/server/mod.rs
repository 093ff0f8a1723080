//! The event loop: sockets in, sockets out; everything else is delegated.
