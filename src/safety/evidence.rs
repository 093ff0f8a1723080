//! The per-pair evidence ring (PROTOCOL.md "Report"): the last 20 chat
//! messages of a conversation, at most 4 KiB of text in all, oldest
//! dropped first.
//!
//! Its storage is allocated once, when the pair's first message is
//! relayed (pairs that never talk cost nothing), and never grows: texts
//! go into a fixed 4 KiB byte ring, their places into a fixed 20-slot
//! ring. Relaying a message copies its bytes in and allocates nothing.
//! Chat texts are at most 4096 bytes (`MAX_TEXT_BYTES`), the ring's size,
//! so a message always fits whole (a longer one would keep its end).

/// Messages kept per pair.
pub const MAX_MESSAGES: usize = 20;
/// Text bytes kept per pair.
pub const MAX_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    start: u16,
    len: u16,
    /// Who said it (the pairing passes the speaker's serial).
    from: u64,
    /// Kept as the JSON string literal it arrived in (a relay from
    /// another loop, see [`Evidence::push_json`]): unescaped when read.
    json: bool,
}

/// One pair's last messages.
#[derive(Debug)]
pub struct Evidence {
    bytes: Box<[u8; MAX_BYTES]>,
    slots: [Slot; MAX_MESSAGES],
    /// Index of the oldest slot and how many are used.
    first: usize,
    count: usize,
    /// Where the next text's bytes go and how many bytes are used.
    write: usize,
    used: usize,
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence {
            bytes: Box::new([0; MAX_BYTES]),
            slots: [Slot::default(); MAX_MESSAGES],
            first: 0,
            count: 0,
            write: 0,
            used: 0,
        }
    }
}

impl Evidence {
    /// Records `text` said by `from` (an opaque id of the speaker).
    pub fn push(&mut self, from: u64, text: &str) {
        self.push_bytes(from, text.as_bytes(), false);
    }

    /// Records a text given as a JSON string literal (quotes included),
    /// as a relay from another loop carries it: copied as it is, so the
    /// hot path neither parses nor allocates; reports unescape it.
    pub fn push_json(&mut self, from: u64, literal: &[u8]) {
        self.push_bytes(from, literal, true);
    }

    fn push_bytes(&mut self, from: u64, text: &[u8], json: bool) {
        let text = text
            .get(text.len().saturating_sub(MAX_BYTES)..)
            .unwrap_or(text);
        while self.count > 0 && (self.count == MAX_MESSAGES || self.used + text.len() > MAX_BYTES) {
            self.pop();
        }
        let start = self.write;
        for (i, &b) in text.iter().enumerate() {
            if let Some(slot) = self.bytes.get_mut((start + i) % MAX_BYTES) {
                *slot = b;
            }
        }
        self.write = (start + text.len()) % MAX_BYTES;
        self.used += text.len();
        let at = (self.first + self.count) % MAX_MESSAGES;
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = Slot {
                start: start as u16,
                len: text.len() as u16,
                from,
                json,
            };
        }
        self.count += 1;
    }

    fn pop(&mut self) {
        if let Some(slot) = self.slots.get(self.first) {
            self.used = self.used.saturating_sub(usize::from(slot.len));
        }
        self.first = (self.first + 1) % MAX_MESSAGES;
        self.count -= 1;
    }

    /// The messages, oldest first, as `(speaker, text)`.
    pub fn messages(&self) -> Vec<(u64, String)> {
        (0..self.count)
            .filter_map(|i| self.slots.get((self.first + i) % MAX_MESSAGES))
            .map(|s| {
                let bytes: Vec<u8> = (0..usize::from(s.len))
                    .filter_map(|j| self.bytes.get((usize::from(s.start) + j) % MAX_BYTES))
                    .copied()
                    .collect();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let text = match s.json {
                    // A literal cut at the front by the byte bound does
                    // not parse: keep its raw form rather than nothing.
                    true => serde_json::from_str::<String>(&text).unwrap_or(text),
                    false => text,
                };
                (s.from, text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_twenty_messages() {
        let mut e = Evidence::default();
        for i in 0..25u64 {
            e.push(i % 2, &format!("m{i}"));
        }
        let m = e.messages();
        assert_eq!(m.len(), 20);
        assert_eq!(m.first().unwrap(), &(1, "m5".to_string()));
        assert_eq!(m.last().unwrap(), &(0, "m24".to_string()));
    }

    #[test]
    fn keeps_at_most_4_kib_dropping_the_oldest() {
        let mut e = Evidence::default();
        e.push(1, &"a".repeat(1000));
        e.push(2, &"b".repeat(2000));
        e.push(1, &"c".repeat(1500));
        let m = e.messages();
        assert_eq!(m.len(), 2, "the 1000-byte one went");
        assert_eq!(m.iter().map(|(_, t)| t.len()).sum::<usize>(), 3500);
        // Wrapping around the byte ring keeps texts whole.
        e.push(2, "é".repeat(300).as_str());
        let m = e.messages();
        assert_eq!(m.last().unwrap().1, "é".repeat(300));
        e.push(1, &"z".repeat(4096));
        assert_eq!(e.messages(), vec![(1, "z".repeat(4096))]);
    }
}
