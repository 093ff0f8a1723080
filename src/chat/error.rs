//! How a chat client can lose its session: the faults that end it, each
//! with the close code and close frame reason the connection is failed with
//! (the same shape as `ws::ProtocolError`, one layer up).

use crate::ws::CloseCode;
use std::fmt;

/// A client broke a rule that ends its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// Went on sending at ten times `--rate-limit` after its messages were
    /// already being dropped: the hard bucket is empty.
    Flooding,
}

impl SessionError {
    /// The code the close frame carries.
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            SessionError::Flooding => CloseCode::POLICY_VIOLATION,
        }
    }

    /// The close frame's reason text (on the wire: clients may show it).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            SessionError::Flooding => "rate limit exceeded",
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SessionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flooding_closes_1008_with_the_old_reason() {
        let e = SessionError::Flooding;
        assert_eq!(e.close_code(), CloseCode::POLICY_VIOLATION);
        assert_eq!(e.close_code().as_u16(), 1008);
        assert_eq!(e.reason(), "rate limit exceeded");
        let e: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(e.to_string(), "rate limit exceeded");
    }
}
