//! HTTP/1.1 request heads in, responses out; sans-IO.

pub mod request;
pub mod response;

pub use request::{parse_request, HttpError, Method, Request};
