//! Frames in, echoes and chat out; failing and closing WebSocket sessions.
//!
//! Two ways a session ends from our side:
//! - **failing** (a protocol fault, a flood, a slow reader): the close
//!   frame goes out behind the output already owed, our side is shut down,
//!   and whatever else arrives is discarded without decoding (RFC 6455
//!   §7.1.7), until the peer's FIN or the close wait;
//! - **going away** (idle timeout, shutdown): the close frame goes out and
//!   we read on for the peer's close frame, then finish like above.

use super::ending::Ending;
use super::routes::Endpoint;
use super::session::Phase;
use super::{duration_ms, ConnId, Engine, KEPT_INFLATED};
use crate::ws::deflate::InflateError;
use crate::ws::{encode, utf8, Message, OpCode, ProtocolError};

impl Engine {
    /// Decodes frames from `buf`; returns the bytes used.
    pub(super) fn on_frames(&mut self, id: ConnId, buf: &mut [u8]) -> usize {
        let Some(session) = self.sessions.get_mut(id) else {
            return buf.len();
        };
        // Open: the endpoint's messages; Closing: only a close matters. The
        // phase stays put until a message ends the loop.
        let endpoint = match session.phase() {
            Phase::Open { endpoint, .. } => Some(*endpoint),
            _ => None,
        };
        let Some(mut ws) = session.take_ws() else {
            return buf.len();
        };
        let mut pos = 0;
        loop {
            let rest = buf.get_mut(pos..).unwrap_or_default();
            match ws.decoder.decode(rest, &mut ws.message) {
                Ok((used, Some(msg))) => {
                    pos += used;
                    if !self.on_message(id, endpoint, msg) {
                        pos = buf.len();
                        break;
                    }
                }
                Ok((used, None)) => {
                    pos += used;
                    break;
                }
                Err(e) => {
                    log::debug!("connection {id}: {e} ({})", e.close_code());
                    self.fail(id, Ending::Protocol(e));
                    pos = buf.len();
                    break;
                }
            }
        }
        match self.sessions.get_mut(id) {
            Some(session) => session.return_ws(ws, &mut self.pool),
            None => ws.release(&mut self.pool),
        }
        pos
    }

    /// Handles one message; false when the connection reads no further
    /// frames.
    fn on_message(&mut self, id: ConnId, endpoint: Option<Endpoint>, msg: Message<'_>) -> bool {
        let Some(endpoint) = endpoint else {
            // Closing: only the peer's close frame matters now.
            if let Message::Close(..) = msg {
                self.drain(id);
                return false;
            }
            return true;
        };
        match msg {
            Message::Ping(payload) => self.queue_frame(id, OpCode::Pong, payload),
            Message::Pong(_) => {}
            Message::Close(code, _reason) => {
                // Echo the peer's code (an empty close gets an empty one).
                if let Some(session) = self.sessions.get_mut(id) {
                    let out = session.out.writer(&mut self.pool);
                    match code {
                        Some(code) => encode::write_close(out, code, ""),
                        None => encode::write_frame(out, OpCode::Close, &[]),
                    }
                }
                self.leave_chat(id);
                self.drain(id);
                return false;
            }
            Message::Text(payload) if endpoint == Endpoint::Chat => {
                let now = self.now_ms;
                let (chat, mut mailer) = self.mailer();
                if let Err(e) = chat.on_text(id, payload, now, &mut mailer) {
                    self.fail(id, Ending::Chat(e));
                    return false;
                }
            }
            Message::Binary(_) if endpoint == Endpoint::Chat => {
                self.fail(id, Ending::BinaryInChat);
                return false;
            }
            Message::Text(payload) => self.echo(id, OpCode::Text, payload),
            Message::Binary(payload) => self.echo(id, OpCode::Binary, payload),
            Message::Compressed { text, data } => {
                return self.on_compressed(id, endpoint, text, data)
            }
        }
        true
    }

    /// Inflates a compressed message (never past `--max-message-size`:
    /// 1009 as soon as it would be), checks text is UTF-8 (1007), then
    /// handles it like an uncompressed one.
    fn on_compressed(&mut self, id: ConnId, endpoint: Endpoint, text: bool, data: &[u8]) -> bool {
        let mut inflated = std::mem::take(&mut self.inflated);
        let fault = match self
            .codec
            .inflate(data, self.config.max_message_size, &mut inflated)
        {
            Err(InflateError::TooBig) => Some(ProtocolError::InflatedTooBig),
            Err(InflateError::Corrupt) => Some(ProtocolError::BadDeflate),
            Ok(()) if text && !utf8::is_valid(&inflated) => Some(ProtocolError::BadUtf8),
            Ok(()) => None,
        };
        let go_on = match fault {
            Some(e) => {
                log::debug!("connection {id}: {e} ({})", e.close_code());
                self.fail(id, Ending::Protocol(e));
                false
            }
            None if text => self.on_message(id, Some(endpoint), Message::Text(&inflated)),
            None => self.on_message(id, Some(endpoint), Message::Binary(&inflated)),
        };
        inflated.clear();
        if inflated.capacity() > KEPT_INFLATED {
            inflated.shrink_to(KEPT_INFLATED);
        }
        self.inflated = inflated;
        go_on
    }

    fn echo(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) {
        self.totals.echo_messages += 1;
        self.queue_frame(id, opcode, payload);
    }

    /// Fails an open session: its close frame behind the output already
    /// owed, then drain (no further input is decoded).
    pub(super) fn fail(&mut self, id: ConnId, why: Ending) {
        if !self
            .sessions
            .get(id)
            .is_some_and(|s| matches!(s.phase(), Phase::Open { .. }))
        {
            // Closing already: our close frame is out; stop reading.
            if self
                .sessions
                .get(id)
                .is_some_and(|s| matches!(s.phase(), Phase::Closing { .. }))
            {
                self.drain(id);
            }
            return;
        }
        if why.is_protocol_fault() {
            self.totals.protocol_errors += 1;
        }
        self.leave_chat(id);
        if let Some(session) = self.sessions.get_mut(id) {
            encode::write_close(
                session.out.writer(&mut self.pool),
                why.close_code(),
                why.reason(),
            );
        }
        self.drain(id);
    }

    /// Starts a close handshake on an open session (1001): close frame,
    /// then wait for the peer's close frame.
    pub(super) fn go_away(&mut self, id: ConnId, why: Ending) {
        if !self
            .sessions
            .get(id)
            .is_some_and(|s| matches!(s.phase(), Phase::Open { .. }))
        {
            return;
        }
        self.leave_chat(id);
        let now = self.now_ms;
        if let Some(session) = self.sessions.get_mut(id) {
            encode::write_close(
                session.out.writer(&mut self.pool),
                why.close_code(),
                why.reason(),
            );
            session.start_closing(now, &mut self.pool);
        }
        self.mark_dirty(id);
        self.arm(id, now + duration_ms(self.config.close_timeout));
    }
}
