//! What a run may aim at (a loopback `ws://` URL) and how many sockets it
//! may hold.

use std::net::{SocketAddr, ToSocketAddrs};

/// Raises this process's descriptor limit (`chat::sys`, as the server does)
/// and checks that `wanted` connections fit, with room for the rest.
pub fn check_fds(wanted: usize) -> Result<(), String> {
    let limit = chat::sys::raise_fd_limit().map_err(|e| e.to_string())?;
    if wanted as u64 + 64 > limit {
        return Err(format!(
            "{wanted} connections need more descriptors than this process may hold ({limit}); \
             run several chat-bench processes side by side instead"
        ));
    }
    Ok(())
}

/// A `ws://` URL on a loopback address.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// `wss://`: TLS (`tls.rs`).
    pub tls: bool,
    /// A `Sec-WebSocket-Extensions` offer sent with every upgrade (idle
    /// `--offer-deflate`: the server then holds compressed sessions).
    pub extensions: Option<&'static str>,
}

pub fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 "[...]".
    let has_port = hostport
        .rfind(':')
        .is_some_and(|i| !hostport[i..].contains(']'));
    let with_port = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url}: refusing a non-loopback target ({}); chat-bench is for this host only",
            addr.ip()
        ));
    }
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
        tls,
        extensions: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:9001/echo").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9001", "/echo")
        );
        let t = parse_url("ws://127.0.0.1:9001").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(parse_url("ws://[::1]/").unwrap().addr.port(), 80);
        assert_eq!(parse_url("ws://[::1]:7/").unwrap().addr.port(), 7);
        assert!(parse_url("ws://192.0.2.1:80/").is_err());
        assert!(parse_url("http://127.0.0.1:80/").is_err());
        let t = parse_url("wss://127.0.0.1/echo").unwrap();
        assert_eq!((t.addr.port(), t.tls), (443, true));
    }
}
