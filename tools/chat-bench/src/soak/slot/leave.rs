//! What goes out on the client's own account: its talk or echoes, a last
//! message, and the leave itself.

use std::time::Duration;

use chat::ws::{encode, CloseCode, OpCode};

use super::{App, Ctx, Slot, Stage, ANSWER_WAIT, MAX_OUT};
use crate::soak::plan::{Leave, MS};
use crate::soak::talk::How;

impl Slot {
    /// The client's own timer: talk, or send the next echo.
    pub(super) fn act(&mut self, cx: &mut Ctx<'_>) {
        if self.out.len() > MAX_OUT {
            self.act_at = cx.now + 100 * MS;
            return;
        }
        let (out, mask) = (&mut self.out, self.mask);
        self.act_at = match &mut self.app {
            App::Chat(c) => c.act(cx.now, &mut self.rng, cx.ledger, cx.t, &mut |text| {
                encode::write_masked_frame(out, OpCode::Text, text, mask)
            }),
            App::Echo(e) => e.act(cx.now, &mut self.rng, mask, out, cx.t),
        };
    }

    /// A last message, sent with the FIN or RST that follows at once.
    pub(super) fn last_words(&mut self, cx: &mut Ctx<'_>) {
        let (out, mask) = (&mut self.out, self.mask);
        match &mut self.app {
            App::Chat(c) if c.introduced() => c.send_message(8, cx.t, &mut |text| {
                encode::write_masked_frame(out, OpCode::Text, text, mask)
            }),
            App::Chat(_) => {}
            App::Echo(e) => {
                e.act(cx.now, &mut self.rng, mask, out, cx.t);
            }
        }
    }

    /// The chat talk ends with this connection (`lossy`: see `Leave::lossy`).
    pub(super) fn end_talk(&mut self, lossy: bool, cx: &mut Ctx<'_>) {
        if let App::Chat(c) = &mut self.app {
            c.end_talk(How::Disconnected, lossy, cx.now, cx.ledger);
        }
    }

    /// Begins (or, for a client that stopped reading, completes) the leave.
    pub(super) fn leave(&mut self, cx: &mut Ctx<'_>) {
        let leave = self.plan.leave;
        if let Leave::NeverReading { .. } = leave {
            if self.reading {
                self.reading = false;
                self.leave_at = cx.now + if cx.stopping { 0 } else { self.plan.hold };
                return;
            }
        }
        cx.t.leaves[leave.index()] += 1;
        self.end_talk(leave.lossy(), cx);
        match leave {
            Leave::Close => {
                encode::write_masked_frame(
                    &mut self.out,
                    OpCode::Close,
                    &CloseCode::NORMAL.as_u16().to_be_bytes(),
                    self.mask,
                );
                self.stage = Stage::Closing(cx.now + ANSWER_WAIT);
                self.flush(cx);
            }
            Leave::Fin { with_data } | Leave::Rst { with_data } => {
                if with_data {
                    self.last_words(cx);
                }
                self.go(matches!(leave, Leave::Rst { .. }), cx);
            }
            Leave::MidFrame { rst } => {
                let mut frame = Vec::new();
                let text = match &self.app {
                    App::Chat(c) => c.doomed_message(),
                    App::Echo(_) => "x".repeat(self.rng.between(1, 300) as usize),
                };
                encode::write_masked_frame(&mut frame, OpCode::Text, text.as_bytes(), self.mask);
                let cut = self.rng.between(1, frame.len() as u64 - 1) as usize;
                self.out
                    .extend_from_slice(frame.get(..cut).unwrap_or_default());
                self.go(rst, cx);
            }
            Leave::MidHandshake { rst } => self.go(rst, cx),
            Leave::NeverReading { rst: false } => {
                self.shut_after_flush = true;
                self.stage = Stage::Holding(cx.now + self.rng.between(100, 500) * MS);
                self.flush(cx);
            }
            Leave::NeverReading { rst: true } => self.go(true, cx),
        }
    }

    /// FIN (then read to the server's EOF) or RST (and gone).
    pub(super) fn go(&mut self, rst: bool, cx: &mut Ctx<'_>) {
        if rst {
            self.flush(cx);
            if let Some(s) = self.stream.as_ref() {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            self.finish(cx);
        } else {
            self.shut_after_flush = true;
            self.stage = Stage::Draining(cx.now + ANSWER_WAIT);
            self.flush(cx);
        }
    }
}
