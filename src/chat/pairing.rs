//! The chat-roulette state machine: queue, pairs, interests, rate limits.

use super::{ClientId, Counts, Outbox, Violation};

/// Chat settings (from the command line).
#[derive(Clone, Copy, Debug)]
pub struct ChatConfig {
    /// `--interest-wait`: how long a client with interests waits for a
    /// match before taking anyone.
    pub interest_wait_ms: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            interest_wait_ms: 5_000,
        }
    }
}

/// All chat clients and their state.
#[derive(Debug, Default)]
pub struct Pairing {
    config: ChatConfig,
    online: usize,
}

impl Pairing {
    pub fn new(config: ChatConfig) -> Pairing {
        Pairing { config, online: 0 }
    }

    /// A session opened; `interests_query` is the raw `interests=` value.
    pub fn on_connect(
        &mut self,
        id: ClientId,
        interests_query: Option<&str>,
        now_ms: u64,
        out: &mut dyn Outbox,
    ) {
        let _ = (id, interests_query, now_ms, out, self.config);
        self.online += 1;
    }

    /// One text message (raw bytes, valid UTF-8) from a client.
    pub fn on_text(
        &mut self,
        id: ClientId,
        text: &[u8],
        now_ms: u64,
        out: &mut dyn Outbox,
    ) -> Result<(), Violation> {
        let _ = (id, text, now_ms, out);
        Ok(())
    }

    /// The client is gone (closed, dropped, or failed).
    pub fn on_disconnect(&mut self, id: ClientId, now_ms: u64, out: &mut dyn Outbox) {
        let _ = (id, now_ms, out);
        self.online = self.online.saturating_sub(1);
    }

    /// Earliest time `on_tick` has work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        None
    }

    pub fn on_tick(&mut self, now_ms: u64, out: &mut dyn Outbox) {
        let _ = (now_ms, out);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            online: self.online,
            ..Counts::default()
        }
    }
}
