//! HTTP/1.1 request heads in, responses out; sans-IO.

mod request;
pub(crate) mod response;

pub use request::{parse_request, HttpError, Method, Request, DEFAULT_MAX_HEAD};
