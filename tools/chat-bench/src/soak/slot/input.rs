//! What comes in: the upgrade response, frames, and the EOF after a FIN.

use std::io::{self, Read};

use chat::ws::{encode, CloseCode, Message, OpCode};

use super::{App, Ctx, Slot, Stage, MAX_HEAD};
use crate::conn::{parse_handshake, Fail};

/// A frame's worth of what came in, owned (the soak's rates are low).
enum Got {
    Data(bool, Vec<u8>),
    Ping(Vec<u8>),
    Close(Option<u16>),
}

impl Slot {
    pub(super) fn read_head(&mut self, cx: &mut Ctx<'_>) {
        loop {
            let Some(s) = self.stream.as_mut() else {
                return;
            };
            match s.read(cx.buf) {
                Ok(0) if self.request_cut => {
                    // The server gave up on our half request first.
                    cx.t.handshake_timed_out += 1;
                    return self.finish(cx);
                }
                Ok(0) => {
                    cx.t.violation(|v| &mut v.connect, "closed during the upgrade".into());
                    return self.finish(cx);
                }
                Ok(n) => self
                    .partial
                    .extend_from_slice(cx.buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    cx.t.violation(|v| &mut v.connect, format!("upgrade: {e}"));
                    return self.finish(cx);
                }
            }
            if self.partial.len() > MAX_HEAD {
                cx.t.violation(|v| &mut v.connect, "response head too large".into());
                return self.finish(cx);
            }
        }
        if self.request_cut {
            self.partial.clear(); // not ours to parse: we are leaving
            return;
        }
        let head = match parse_handshake(&self.partial, &self.key) {
            Ok(None) => return,
            Ok(Some(n)) => n,
            Err(f) => {
                let why = match f {
                    Fail::Handshake(why) => why,
                    _ => "bad response".into(),
                };
                cx.t.violation(|v| &mut v.connect, format!("upgrade: {why}"));
                return self.finish(cx);
            }
        };
        self.partial.drain(..head.min(self.partial.len()));
        self.stage = Stage::Open;
        cx.t.opened += 1;
        let life = if cx.stopping { 0 } else { self.plan.life };
        self.leave_at = cx.now + life;
        self.act_at = cx.now;
        match self.app {
            App::Chat(_) => cx.t.chat_opened += 1,
            App::Echo(_) => cx.t.echo_opened += 1,
        }
        // Frames that came with the head.
        let rest = std::mem::take(&mut self.partial);
        self.on_bytes(rest, false, cx);
    }

    /// Reads what is there and handles its frames.
    pub(super) fn read_frames(&mut self, cx: &mut Ctx<'_>) {
        loop {
            let Some(s) = self.stream.as_mut() else {
                return;
            };
            match s.read(cx.buf) {
                Ok(0) => return self.on_bytes(Vec::new(), true, cx),
                Ok(n) => {
                    let got = cx.buf.get(..n).unwrap_or_default().to_vec();
                    self.on_bytes(got, false, cx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let closing = matches!(self.stage, Stage::Closing(_));
                    let when = if closing { "after our close" } else { "open" };
                    cx.t.violation(|v| &mut v.bad_close, format!("{when}: {e}"));
                    return self.finish(cx);
                }
            }
            if !matches!(self.stage, Stage::Open | Stage::Closing(_)) || !self.reading {
                return;
            }
        }
    }

    /// Decodes `bytes` after the kept tail; `eof`: the server closed.
    pub(super) fn on_bytes(&mut self, bytes: Vec<u8>, eof: bool, cx: &mut Ctx<'_>) {
        let mut input = std::mem::take(&mut self.partial);
        input.extend_from_slice(&bytes);
        let mut got = Vec::new();
        let mut at = 0;
        let mut fault = None;
        while let Some(rest) = input.get_mut(at..) {
            match self.decoder.decode(rest, &mut self.message) {
                Ok((n, Some(m))) => {
                    at += n;
                    got.push(match m {
                        Message::Text(d) => Got::Data(false, d.to_vec()),
                        Message::Binary(d) => Got::Data(true, d.to_vec()),
                        Message::Ping(d) => Got::Ping(d.to_vec()),
                        // Pongs do not matter; compression is never
                        // offered, so never delivered.
                        Message::Pong(_) | Message::Compressed { .. } => continue,
                        Message::Close(code, _) => Got::Close(code.map(CloseCode::as_u16)),
                    });
                    if let Some(Got::Close(_)) = got.last() {
                        break;
                    }
                }
                Ok((n, None)) => {
                    at += n;
                    break;
                }
                Err(e) => {
                    fault = Some(format!(
                        "server frame refused ({}): {}",
                        e.close_code(),
                        e.reason()
                    ));
                    break;
                }
            }
        }
        self.partial = input.get(at..).unwrap_or_default().to_vec();
        for g in got {
            match g {
                Got::Data(binary, d) => self.on_data(binary, &d, cx),
                Got::Ping(p) if matches!(self.stage, Stage::Open) => {
                    encode::write_masked_frame(&mut self.out, OpCode::Pong, &p, self.mask);
                }
                Got::Ping(_) => {}
                Got::Close(code) => return self.on_close(code, cx),
            }
        }
        if let Some(what) = fault {
            cx.t.violation(|v| &mut v.protocol, what);
            return self.finish(cx);
        }
        if eof {
            let what = match self.stage {
                Stage::Closing(_) => "EOF after our close frame, without the server's",
                _ => "EOF on an open session, without a close frame",
            };
            cx.t.violation(|v| &mut v.bad_close, what.into());
            self.finish(cx);
        }
    }

    pub(super) fn on_data(&mut self, binary: bool, data: &[u8], cx: &mut Ctx<'_>) {
        match &mut self.app {
            App::Chat(_) if binary => {
                cx.t.violation(|v| &mut v.malformed, "binary on the chat door".into());
            }
            App::Chat(c) => c.on_text(
                data,
                cx.now,
                &mut self.rng,
                cx.ledger,
                cx.t,
                &mut self.act_at,
            ),
            App::Echo(e) => e.on_echo(binary, data, cx.t),
        }
    }

    /// The server's close frame: the answer to ours, or its own.
    pub(super) fn on_close(&mut self, code: Option<u16>, cx: &mut Ctx<'_>) {
        if let Stage::Closing(_) = self.stage {
            cx.t.closes_answered += 1;
            if let App::Echo(e) = &mut self.app {
                e.on_close_answered(cx.t);
            }
        } else {
            match code {
                Some(1001) => cx.t.server_closed_1001 += 1,
                _ => {
                    cx.t.violation(|v| &mut v.bad_close, format!("server closed {code:?}"))
                }
            }
            // Answer (best effort), then go.
            let payload = code.map(u16::to_be_bytes);
            let payload = payload.as_ref().map_or(&[][..], |p| &p[..]);
            encode::write_masked_frame(&mut self.out, OpCode::Close, payload, self.mask);
            self.flush(cx);
        }
        self.finish(cx);
    }

    /// After our FIN: everything until the server's EOF is discarded.
    pub(super) fn read_to_eof(&mut self, cx: &mut Ctx<'_>) {
        loop {
            let Some(s) = self.stream.as_mut() else {
                return;
            };
            match s.read(cx.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // reset: an answer too
            }
        }
        cx.t.fins_answered += 1;
        self.finish(cx);
    }
}
