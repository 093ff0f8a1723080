//! Which door a request knocks on (PROTOCOL.md "One port, four doors").
//! A pure function of the request head, so every row of the table is
//! unit-tested without sockets.

use crate::http::response::Status;
use crate::http::{Method, Request};
use crate::ws::handshake;

/// The two WebSocket endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: a chat-roulette session.
    Chat,
    /// `/echo`: every data message comes back unchanged.
    Echo,
}

/// Plain HTTP resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Index,
    Healthz,
    Stats,
    Metrics,
    Rules,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Upgrade {
        endpoint: Endpoint,
        key: &'a [u8],
        query: Option<&'a str>,
        /// `Sec-WebSocket-Extensions`: the client's offers, if any.
        extensions: Option<&'a [u8]>,
    },
    Serve {
        page: Page,
        head_only: bool,
    },
    /// An error answer; `close` when the connection cannot go on after it.
    Refuse {
        status: Status,
        close: bool,
    },
}

/// Decides the answer to `req`. Checks run in this order: `Host` (400 and
/// close for an HTTP/1.1 request without one, RFC 9112 §3.2; HTTP/1.0 may
/// omit it), method (405), path (404), then for upgrades a body (400 and
/// close), the version (426) before the key (400), since a client speaking
/// another version may form its key differently, and the origin (403) last.
pub fn route<'a>(req: &Request<'a>, allowed_origins: &[String]) -> Route<'a> {
    let has_body = req.content_length > 0 || req.chunked;
    let head_only = req.method == Method::Head;
    if req.minor_version >= 1 && req.host.is_none() {
        return Route::Refuse {
            status: Status::BadRequest,
            close: true,
        };
    }
    if req.method == Method::Other {
        return Route::Refuse {
            status: Status::MethodNotAllowed,
            close: has_body,
        };
    }
    let endpoint = match req.path {
        "/" => Some(Endpoint::Chat),
        "/echo" => Some(Endpoint::Echo),
        _ => None,
    };
    if let (Some(endpoint), true) = (endpoint, req.websocket_upgrade) {
        return upgrade(req, endpoint, allowed_origins);
    }
    let page = match req.path {
        "/" => Page::Index,
        "/healthz" => Page::Healthz,
        "/stats" => Page::Stats,
        "/metrics" => Page::Metrics,
        "/rules" => Page::Rules,
        // `/echo` speaks only WebSocket: a plain GET is told to upgrade.
        "/echo" => {
            return Route::Refuse {
                status: Status::UpgradeRequired,
                close: has_body,
            }
        }
        _ => {
            return Route::Refuse {
                status: Status::NotFound,
                close: has_body,
            }
        }
    };
    if has_body {
        // We do not read request bodies; answer, then close.
        return Route::Refuse {
            status: Status::BadRequest,
            close: true,
        };
    }
    Route::Serve { page, head_only }
}

fn upgrade<'a>(req: &Request<'a>, endpoint: Endpoint, allowed_origins: &[String]) -> Route<'a> {
    if req.content_length > 0 || req.chunked {
        // The bytes after the head would be read as WebSocket frames after
        // a 101 (or as the next request after a keep-alive refusal): a
        // handshake has no body (RFC 6455 §4.1), so refuse it and close.
        return Route::Refuse {
            status: Status::BadRequest,
            close: true,
        };
    }
    let bad = |status| Route::Refuse {
        status,
        close: false,
    };
    if req.method != Method::Get || req.minor_version < 1 {
        return bad(Status::BadRequest);
    }
    if req.sec_websocket_version.map(trim) != Some(b"13".as_slice()) {
        return bad(Status::UpgradeRequired);
    }
    let key = match req.sec_websocket_key.map(trim) {
        Some(key) if handshake::is_valid_key(key) => key,
        _ => return bad(Status::BadRequest),
    };
    if !origin_allowed(req.origin, allowed_origins) {
        return bad(Status::Forbidden);
    }
    Route::Upgrade {
        endpoint,
        key,
        query: req.query,
        extensions: req.sec_websocket_extensions,
    }
}

/// With `--allowed-origin` given, a request carrying an `Origin` must match
/// one (ASCII case-insensitively, trailing `/` ignored). A request with no
/// `Origin` at all is not from a browser, which could forge any header
/// anyway, so it is let through.
fn origin_allowed(origin: Option<&[u8]>, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = origin else {
        return true;
    };
    let origin = strip_slash(trim(origin));
    allowed
        .iter()
        .any(|a| strip_slash(a.trim().as_bytes()).eq_ignore_ascii_case(origin))
}

fn strip_slash(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"/").unwrap_or(s)
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &'static str) -> Request<'static> {
        Request {
            method,
            path,
            query: None,
            minor_version: 1,
            host: Some(b"x"),
            keep_alive: true,
            websocket_upgrade: false,
            sec_websocket_key: None,
            sec_websocket_version: None,
            sec_websocket_extensions: None,
            origin: None,
            content_length: 0,
            chunked: false,
            head_len: 0,
        }
    }

    fn ws(path: &'static str) -> Request<'static> {
        Request {
            websocket_upgrade: true,
            sec_websocket_key: Some(b"dGhlIHNhbXBsZSBub25jZQ=="),
            sec_websocket_version: Some(b"13"),
            ..req(Method::Get, path)
        }
    }

    fn refuse(status: Status) -> Route<'static> {
        Route::Refuse {
            status,
            close: false,
        }
    }

    #[test]
    fn pages() {
        let serve = |page, head_only| Route::Serve { page, head_only };
        assert_eq!(
            route(&req(Method::Get, "/"), &[]),
            serve(Page::Index, false)
        );
        assert_eq!(
            route(&req(Method::Head, "/healthz"), &[]),
            serve(Page::Healthz, true)
        );
        assert_eq!(
            route(&req(Method::Get, "/stats"), &[]),
            serve(Page::Stats, false)
        );
        assert_eq!(
            route(&req(Method::Get, "/metrics"), &[]),
            serve(Page::Metrics, false)
        );
        assert_eq!(
            route(&req(Method::Get, "/nope"), &[]),
            refuse(Status::NotFound)
        );
        assert_eq!(
            route(&req(Method::Get, "/echo"), &[]),
            refuse(Status::UpgradeRequired)
        );
        assert_eq!(
            route(&req(Method::Other, "/"), &[]),
            refuse(Status::MethodNotAllowed)
        );
    }

    #[test]
    fn upgrades() {
        assert!(matches!(
            route(&ws("/"), &[]),
            Route::Upgrade {
                endpoint: Endpoint::Chat,
                ..
            }
        ));
        assert!(matches!(
            route(&ws("/echo"), &[]),
            Route::Upgrade {
                endpoint: Endpoint::Echo,
                ..
            }
        ));
        assert_eq!(route(&ws("/other"), &[]), refuse(Status::NotFound));
    }

    #[test]
    fn bad_upgrades() {
        let no_key = Request {
            sec_websocket_key: None,
            ..ws("/echo")
        };
        assert_eq!(route(&no_key, &[]), refuse(Status::BadRequest));
        let bad_key = Request {
            sec_websocket_key: Some(b"short"),
            ..ws("/echo")
        };
        assert_eq!(route(&bad_key, &[]), refuse(Status::BadRequest));
        let v8 = Request {
            sec_websocket_version: Some(b"8"),
            ..ws("/echo")
        };
        assert_eq!(route(&v8, &[]), refuse(Status::UpgradeRequired));
        let no_version = Request {
            sec_websocket_version: None,
            ..ws("/echo")
        };
        assert_eq!(route(&no_version, &[]), refuse(Status::UpgradeRequired));
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://chat.example".to_string()];
        let good = Request {
            origin: Some(b"https://CHAT.example"),
            ..ws("/")
        };
        assert!(matches!(route(&good, &allowed), Route::Upgrade { .. }));
        let evil = Request {
            origin: Some(b"https://evil.example"),
            ..ws("/")
        };
        assert_eq!(route(&evil, &allowed), refuse(Status::Forbidden));
        assert!(matches!(route(&evil, &[]), Route::Upgrade { .. }));
        assert!(matches!(route(&ws("/"), &allowed), Route::Upgrade { .. }));
    }

    #[test]
    fn bodies_close_the_connection() {
        let post = Request {
            content_length: 5,
            ..req(Method::Other, "/")
        };
        assert_eq!(
            route(&post, &[]),
            Route::Refuse {
                status: Status::MethodNotAllowed,
                close: true
            }
        );
    }
    #[test]
    fn upgrade_with_a_body_is_refused_and_closed() {
        let refused = Route::Refuse {
            status: Status::BadRequest,
            close: true,
        };
        for path in ["/", "/echo"] {
            let with_length = Request {
                content_length: 1,
                ..ws(path)
            };
            assert_eq!(route(&with_length, &[]), refused, "{path}");
            let chunked = Request {
                chunked: true,
                ..ws(path)
            };
            assert_eq!(route(&chunked, &[]), refused, "{path}");
            // Checked before the version and the key.
            let v8_with_body = Request {
                sec_websocket_version: Some(b"8"),
                content_length: 3,
                ..ws(path)
            };
            assert_eq!(route(&v8_with_body, &[]), refused, "{path}");
        }
        // `Content-Length: 0` is no body.
        let empty = Request {
            content_length: 0,
            ..ws("/echo")
        };
        assert!(matches!(route(&empty, &[]), Route::Upgrade { .. }));
    }

    #[test]
    fn http11_needs_a_host() {
        let refused = Route::Refuse {
            status: Status::BadRequest,
            close: true,
        };
        for r in [
            req(Method::Get, "/healthz"),
            req(Method::Other, "/"),
            ws("/echo"),
        ] {
            let no_host = Request { host: None, ..r };
            assert_eq!(route(&no_host, &[]), refused, "{no_host:?}");
        }
        // HTTP/1.0 may leave it out.
        let http10 = Request {
            host: None,
            minor_version: 0,
            ..req(Method::Get, "/healthz")
        };
        assert_eq!(
            route(&http10, &[]),
            Route::Serve {
                page: Page::Healthz,
                head_only: false
            }
        );
    }
}
