//! The admin door's requests and answers, as pure functions of the request
//! bytes, the token and the safety state (unit-tested without sockets).

use crate::safety::SafetyHandle;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// An answer: status and JSON body (empty for 204).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// JSON, or empty.
    pub body: String,
}

impl Answer {
    fn json(status: u16, body: String) -> Answer {
        Answer { status, body }
    }

    /// `{"error":"…"}` with `status`.
    pub fn error(status: u16, message: &str) -> Answer {
        Answer::json(status, serde_json::json!({ "error": message }).to_string())
    }

    /// The whole HTTP/1.1 response.
    pub fn to_bytes(&self) -> Vec<u8> {
        let phrase = match self.status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut head = format!("HTTP/1.1 {} {phrase}\r\n", self.status);
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer\r\n");
        }
        if self.status != 204 {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        if self.status != 204 {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// The `Content-Length` of a head (0 when absent); chunked bodies are
/// refused (400), as is an unparsable head.
pub fn content_length(head: &[u8]) -> Result<usize, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Answer::error(400, "request does not parse")),
    }
    let mut length = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Answer::error(
                400,
                "send a Content-Length body, not chunked",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| Answer::error(400, "bad Content-Length"))?;
        }
    }
    Ok(length)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    address: String,
    #[serde(default = "default_minutes")]
    minutes: u64,
    #[serde(default)]
    reason: String,
}

fn default_minutes() -> u64 {
    60
}

/// Answers one request (`head` up to the blank line, `body`).
pub fn answer(head: &[u8], body: &[u8], token: &str, safety: &SafetyHandle, now_ms: u64) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Answer::error(400, "request does not parse"),
    }
    let authorized = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("authorization") && bearer_matches(h.value, token));
    if !authorized {
        return Answer::error(401, "missing or wrong bearer token");
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    handle(method, target, body, safety, now_ms)
}

/// `Bearer TOKEN` compared in constant time (for equal lengths).
fn bearer_matches(value: &[u8], token: &str) -> bool {
    let Some(given) = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| value.get(7..))
    else {
        return false;
    };
    let given = given.trim_ascii();
    bool::from(given.ct_eq(token.as_bytes()))
}

/// Routes an authorized request.
pub fn handle(
    method: &str,
    target: &str,
    body: &[u8],
    safety: &SafetyHandle,
    now_ms: u64,
) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/admin/reports") => {
            let mut after = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                if let Some(v) = pair.strip_prefix("after=") {
                    match v.parse::<u64>() {
                        Ok(n) => after = Some(n),
                        Err(_) => return Answer::error(400, "after must be a report id"),
                    }
                }
            }
            let reports = safety.reports_after(after);
            Answer::json(200, serde_json::to_string(&reports).unwrap_or_default())
        }
        ("GET", "/admin/bans") => {
            let bans = safety.bans(now_ms);
            Answer::json(200, serde_json::to_string(&bans).unwrap_or_default())
        }
        ("POST", "/admin/bans") => {
            let new: NewBan = match serde_json::from_slice(body) {
                Ok(b) => b,
                Err(e) => return Answer::error(400, &format!("bad ban: {e}")),
            };
            match safety.admin_ban(&new.address, new.minutes, &new.reason, now_ms) {
                Ok(ban) => Answer::json(201, serde_json::to_string(&ban).unwrap_or_default()),
                Err(e) => Answer::error(400, &e),
            }
        }
        (_, "/admin/reports" | "/admin/bans") => Answer::error(405, "method not allowed"),
        (m, p) => match p.strip_prefix("/admin/bans/") {
            Some(id) if m == "DELETE" => match id.parse::<u64>() {
                Ok(id) if safety.admin_unban(id, now_ms) => Answer::json(204, String::new()),
                _ => Answer::error(404, "no such ban in force"),
            },
            Some(_) => Answer::error(405, "method not allowed"),
            None => Answer::error(404, "no such path"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn req(method: &str, path: &str, auth: Option<&str>) -> Vec<u8> {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
        if let Some(a) = auth {
            h.push_str(&format!("Authorization: {a}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    #[test]
    fn a_missing_or_wrong_token_is_401_whatever_the_path() {
        let s = SafetyHandle::default();
        for auth in [
            None,
            Some("Bearer nope"),
            Some("Bearer s3cre"),
            Some("Basic s3cret"),
            Some("Bearer"),
        ] {
            for path in ["/admin/bans", "/nothing"] {
                let a = answer(&req("GET", path, auth), b"", "s3cret", &s, NOW);
                assert_eq!(a.status, 401, "{auth:?} {path}");
                assert!(String::from_utf8(a.to_bytes())
                    .unwrap()
                    .contains("WWW-Authenticate: Bearer"));
            }
        }
        let a = answer(
            &req("GET", "/admin/bans", Some("bearer  s3cret ")),
            b"",
            "s3cret",
            &s,
            NOW,
        );
        assert_eq!(a.status, 200);
    }

    #[test]
    fn bans_are_made_listed_and_lifted() {
        let s = SafetyHandle::default();
        let a = handle(
            "POST",
            "/admin/bans",
            br#"{"address":"203.0.113.7","minutes":60,"reason":"spam"}"#,
            &s,
            NOW,
        );
        assert_eq!(a.status, 201, "{}", a.body);
        let ban: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(ban["id"], 1);
        assert_eq!(ban["by"], "admin");
        assert_eq!(ban["address"], "203.0.113.7");
        let list = handle("GET", "/admin/bans", b"", &s, NOW);
        let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert!(s.ban_for("203.0.113.7".parse().unwrap(), NOW).is_some());
        assert_eq!(handle("DELETE", "/admin/bans/1", b"", &s, NOW).status, 204);
        assert_eq!(handle("DELETE", "/admin/bans/1", b"", &s, NOW).status, 404);
        assert_eq!(handle("DELETE", "/admin/bans/x", b"", &s, NOW).status, 404);
        assert!(s.ban_for("203.0.113.7".parse().unwrap(), NOW).is_none());
    }

    #[test]
    fn bad_bodies_are_400_and_change_nothing() {
        let s = SafetyHandle::default();
        for body in [
            &b"not json"[..],
            br#"{"minutes":60}"#,
            br#"{"address":"nope"}"#,
            br#"{"address":"1.2.3.4","minutes":0}"#,
            br#"{"address":"1.2.3.4","minutes":-5}"#,
            br#"{"address":"1.2.3.4","surprise":1}"#,
        ] {
            let a = handle("POST", "/admin/bans", body, &s, NOW);
            assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(body));
            assert!(a.body.contains("error"));
        }
        assert_eq!(s.bans(NOW).len(), 0);
        assert_eq!(
            handle("GET", "/admin/reports?after=x", b"", &s, NOW).status,
            400
        );
        assert_eq!(handle("PUT", "/admin/bans", b"", &s, NOW).status, 405);
        assert_eq!(handle("GET", "/admin/other", b"", &s, NOW).status, 404);
    }

    #[test]
    fn reports_page_after_an_id() {
        let s = SafetyHandle::default();
        assert_eq!(handle("GET", "/admin/reports", b"", &s, NOW).body, "[]");
        assert_eq!(
            handle("GET", "/admin/reports?after=5", b"", &s, NOW).body,
            "[]"
        );
    }

    #[test]
    fn content_length_and_chunked() {
        let head = b"POST /admin/bans HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(content_length(head), Ok(12));
        let chunked = b"POST /admin/bans HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(content_length(chunked).unwrap_err().status, 400);
    }
}
