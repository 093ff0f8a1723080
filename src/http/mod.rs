//! HTTP/1.1 request heads in, responses out; sans-IO.

pub mod request;
pub mod response;

pub use request::{parse_request, HttpError, Method, Request, DEFAULT_MAX_HEAD, MAX_HEADERS};
pub use response::{
    healthz_response, write_error, write_response, write_switching_protocols, Connection, Status,
};
