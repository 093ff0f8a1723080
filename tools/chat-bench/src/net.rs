//! The client loop: one mio event loop driving many connections through
//! connect, handshake, messages and close, on behalf of a mode's handler.

use std::io::{self, Read, Write};
use std::time::Duration;

use chat::ws::{encode, CloseCode, Decoder, Message, OpCode, Role};
use mio::{Events, Interest, Poll, Token};

use crate::cli::NetArgs;
use crate::clock::{now_ns, secs_to_ns, PreciseTimer, NS, TIMER};
use crate::conn::{handshake_request, new_key, parse_handshake, Conn, Conns, Fail, Handler, Phase};
use crate::rng::Rng;
use crate::socket::{connect_nonblocking, recv_stamped};
use crate::stats::NetStats;
use crate::target::Target;
use crate::tls::Stream;

/// The loop's one read buffer.
pub const READ_BUF: usize = 256 * 1024;

pub struct Net {
    pub poll: Poll,
    pub target: Target,
    /// A target per connection (`chat --targets`: clients spread over the
    /// nodes of a cluster); empty: every connection goes to `target`.
    pub plan: Vec<Target>,
    pub buf: Vec<u8>,
    pub conns: Conns,
    pub decoders: Vec<Decoder>,
    pub messages: Vec<Vec<u8>>,
    pub next_start: usize,
    pub in_progress: usize,
    pub closing: usize,
    pub concurrency: usize,
    pub sources: u8,
    pub rng: Rng,
    pub stats: NetStats,
    /// Read through `recvmsg` with `SO_TIMESTAMPNS` (chat relay latency).
    pub rx_timestamps: bool,
    /// Handler timers to the microsecond (chat's paced sends); without it
    /// they ride on epoll's millisecond timeout.
    pub timer: Option<PreciseTimer>,
    /// Connection i asks for `?interests=<this>i` (chat `--cross-loops`:
    /// a tag of its own keeps it unpaired until it is placed).
    pub park_tags: Option<String>,
}

impl Net {
    pub fn new(target: Target, n: usize, args: &NetArgs, max_message: usize) -> io::Result<Net> {
        let mut rng = Rng::new();
        let list = (0..n)
            .map(|_| Conn {
                stream: None,
                phase: Phase::NotStarted,
                key: String::new(),
                partial: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                mask: (rng.next() as u32).to_ne_bytes(),
                dirty: false,
            })
            .collect();
        Ok(Net {
            poll: Poll::new()?,
            target,
            plan: Vec::new(),
            buf: vec![0; READ_BUF],
            conns: Conns {
                list,
                dirty: Vec::new(),
                rx_stamp: 0,
            },
            rx_timestamps: false,
            timer: None,
            park_tags: None,
            decoders: (0..n)
                .map(|_| Decoder::new(Role::Client, max_message))
                .collect(),
            messages: (0..n).map(|_| Vec::new()).collect(),
            next_start: 0,
            in_progress: 0,
            closing: 0,
            concurrency: args.concurrency.max(1),
            sources: args.sources,
            rng,
            stats: NetStats::default(),
        })
    }

    /// Every connection is open or has failed.
    pub fn settled(&self) -> bool {
        self.next_start == self.conns.list.len() && self.in_progress == 0
    }

    pub fn open_count(&self) -> usize {
        self.conns
            .list
            .iter()
            .filter(|c| c.phase == Phase::Open)
            .count()
    }

    pub fn note_error(&mut self, what: String) {
        if self.stats.first_error.is_none() {
            self.stats.first_error = Some(what);
        }
    }

    /// Connection `idx`'s target.
    pub fn target_of(&self, idx: usize) -> &Target {
        self.plan.get(idx).unwrap_or(&self.target)
    }

    pub fn start_connect(&mut self, idx: usize) -> io::Result<()> {
        let target = self.target_of(idx);
        let tls = target.tls;
        let tcp = connect_nonblocking(target.addr, idx, self.sources, self.rx_timestamps)?;
        let mut stream = Stream::new(tcp, tls)?;
        self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = &mut self.conns.list[idx];
        c.key = new_key(&mut self.rng);
        c.stream = Some(stream);
        c.phase = Phase::Connecting;
        Ok(())
    }

    pub fn pump_connects(&mut self) {
        while self.in_progress < self.concurrency && self.next_start < self.conns.list.len() {
            let idx = self.next_start;
            self.next_start += 1;
            match self.start_connect(idx) {
                Ok(()) => self.in_progress += 1,
                Err(e) => {
                    self.stats.connect_failed += 1;
                    self.note_error(format!("connect: {e}"));
                    let c = &mut self.conns.list[idx];
                    c.stream = None;
                    c.phase = Phase::Done;
                }
            }
        }
    }

    /// One turn: start connections, wait for events (at most `max_wait`, or
    /// until the handler's next timer), handle them, run due timers, flush.
    pub fn turn<H: Handler>(&mut self, events: &mut Events, app: &mut H, max_wait: Duration) {
        self.pump_connects();
        let mut wait = max_wait;
        if let Some(t) = app.next_timer() {
            match self.timer.as_mut() {
                Some(timer) => timer.arm(t),
                None => wait = wait.min(Duration::from_nanos(t.saturating_sub(now_ns()))),
            }
        }
        if let Err(e) = self.poll.poll(events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.note_error(format!("poll: {e}"));
            }
            return;
        }
        let now = now_ns();
        for ev in events.iter() {
            if ev.token() == TIMER {
                if let Some(timer) = self.timer.as_mut() {
                    timer.acknowledge();
                }
                continue;
            }
            let idx = ev.token().0;
            let phase = self.conns.list[idx].phase;
            let result = match phase {
                Phase::Connecting => self.on_connecting(idx),
                Phase::Handshake | Phase::Open | Phase::Closing => {
                    let mut r = Ok(());
                    if ev.is_writable() {
                        if let Some(s) = self.conns.list[idx].stream.as_mut() {
                            r = s.flush_records().map_err(Fail::Io);
                        }
                    }
                    if ev.is_writable()
                        && self.conns.list[idx].out_pos < self.conns.list[idx].out.len()
                    {
                        self.conns.out(idx);
                    }
                    let closed = ev.is_read_closed() || ev.is_error();
                    if ev.is_readable() || closed {
                        r = self.read_conn(idx, app, now, closed);
                    }
                    r
                }
                Phase::NotStarted | Phase::Done => Ok(()),
            };
            if let Err(f) = result {
                self.lose(idx, f, app, now);
            }
        }
        app.fire_timers(&mut self.conns, now);
        self.flush_dirty(app, now);
    }

    pub fn on_connecting(&mut self, idx: usize) -> Result<(), Fail> {
        let Some(stream) = self.conns.list[idx].stream.as_ref() else {
            return Ok(());
        };
        match stream.tcp().take_error() {
            Ok(Some(e)) | Err(e) => return Err(Fail::Connect(e)),
            Ok(None) => {}
        }
        match stream.tcp().peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(Fail::Connect(e)),
        }
        let target = self.plan.get(idx).unwrap_or(&self.target);
        let c = &mut self.conns.list[idx];
        c.phase = Phase::Handshake;
        let req = match &self.park_tags {
            Some(prefix) => {
                let mut parked = target.clone();
                let sep = if parked.path.contains('?') { '&' } else { '?' };
                parked.path = format!("{}{sep}interests={prefix}{idx}", parked.path);
                handshake_request(&parked, &c.key)
            }
            None => handshake_request(target, &c.key),
        };
        self.conns.out(idx).extend_from_slice(req.as_bytes());
        Ok(())
    }

    /// Reads until the socket is drained, decoding as it goes. `closed`: the
    /// event said the peer closed (or errored), so read on to EOF or error.
    pub fn read_conn<H: Handler>(
        &mut self,
        idx: usize,
        app: &mut H,
        now: u64,
        closed: bool,
    ) -> Result<(), Fail> {
        let Net {
            buf,
            conns,
            decoders,
            messages,
            in_progress,
            stats,
            rx_timestamps,
            ..
        } = self;
        loop {
            let c = &mut conns.list[idx];
            let Some(stream) = c.stream.as_mut() else {
                return Ok(());
            };
            let mut len = c.partial.len();
            buf[..len].copy_from_slice(&c.partial);
            c.partial.clear();
            let mut more = false;
            let mut eof = false;
            loop {
                let tls = stream.is_tls();
                let got = if *rx_timestamps && !tls {
                    recv_stamped(
                        std::os::fd::AsRawFd::as_raw_fd(stream.tcp()),
                        &mut buf[len..],
                    )
                    .map(|(n, stamp)| {
                        if n > 0 {
                            conns.rx_stamp = stamp;
                        }
                        n
                    })
                } else {
                    stream.read(&mut buf[len..])
                };
                match got {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        len += n;
                        more = len == buf.len();
                        // A short read drained the socket and new bytes raise
                        // a new edge: skip the read that would say WouldBlock,
                        // unless the peer has closed (then read on to EOF).
                        // Not under TLS: rustls reads a few KiB at a time,
                        // so a short read says nothing about the socket.
                        if more || (!closed && !tls) {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Fail::Io(e)),
                }
            }
            let mut pos = 0;
            if c.phase == Phase::Handshake {
                match parse_handshake(&buf[..len], &c.key)? {
                    None if len == buf.len() => {
                        return Err(Fail::Handshake("response head too large".into()))
                    }
                    None if eof => return Err(Fail::Eof),
                    None => {
                        c.partial.extend_from_slice(&buf[..len]);
                        return Ok(());
                    }
                    Some(n) => {
                        pos = n;
                        c.phase = Phase::Open;
                        c.key = String::new();
                        *in_progress -= 1;
                        stats.opened += 1;
                        app.opened(conns, idx, now);
                    }
                }
            }
            let input = &mut buf[pos..len];
            let decoder = &mut decoders[idx];
            let message = &mut messages[idx];
            let mut at = 0;
            let mut fail = None;
            loop {
                match decoder.decode(&mut input[at..], message) {
                    Ok((n, Some(msg))) => {
                        at += n;
                        match msg {
                            Message::Ping(p) => {
                                if conns.list[idx].phase == Phase::Open {
                                    conns.send(idx, OpCode::Pong, p);
                                }
                            }
                            Message::Close(code, _) => {
                                fail = Some(Fail::ServerClose(code.map(CloseCode::as_u16)));
                                break;
                            }
                            other => {
                                if conns.list[idx].phase == Phase::Open {
                                    app.message(conns, idx, &other, now);
                                }
                            }
                        }
                    }
                    Ok((n, None)) => {
                        at += n;
                        break;
                    }
                    Err(e) => {
                        fail = Some(Fail::Protocol(e.close_code().as_u16(), e.reason()));
                        break;
                    }
                }
            }
            if let Some(f) = fail {
                return Err(f);
            }
            conns.list[idx].partial.extend_from_slice(&input[at..]);
            if eof {
                return Err(Fail::Eof);
            }
            if !more {
                return Ok(());
            }
        }
    }

    pub fn flush(&mut self, idx: usize) -> Result<(), Fail> {
        let c = &mut self.conns.list[idx];
        c.dirty = false;
        if c.phase == Phase::Connecting {
            return Ok(()); // the handshake request goes out once connected
        }
        c.write_out()
    }

    pub fn flush_dirty<H: Handler>(&mut self, app: &mut H, now: u64) {
        while !self.conns.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.conns.dirty);
            for &idx in &dirty {
                if let Err(f) = self.flush(idx) {
                    self.lose(idx, f, app, now);
                }
            }
            if self.conns.dirty.is_empty() {
                // Keep the allocation for the next turn.
                self.conns.dirty = dirty;
                self.conns.dirty.clear();
            }
        }
    }

    /// Ends a connection, counting why (faults while we close are not errors).
    pub fn lose<H: Handler>(&mut self, idx: usize, f: Fail, app: &mut H, now: u64) {
        let c = &mut self.conns.list[idx];
        let phase = c.phase;
        if phase == Phase::Done {
            return;
        }
        if let Fail::ServerClose(code) = f {
            if phase != Phase::Closing {
                // Answer the close (best effort) before dropping the socket.
                let mut frame = Vec::new();
                let payload = code.map(u16::to_be_bytes);
                encode::write_masked_frame(
                    &mut frame,
                    OpCode::Close,
                    payload.as_ref().map_or(&[][..], |p| &p[..]),
                    c.mask,
                );
                if let Some(s) = c.stream.as_mut() {
                    let _ = s.write(&frame);
                }
            }
        }
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.phase = Phase::Done;
        c.out = Vec::new();
        c.out_pos = 0;
        c.partial = Vec::new();
        self.messages[idx] = Vec::new();
        match phase {
            Phase::Connecting | Phase::Handshake => self.in_progress -= 1,
            Phase::Closing => {
                self.closing -= 1;
                return;
            }
            _ => {}
        }
        let what = match f {
            Fail::Connect(e) => {
                self.stats.connect_failed += 1;
                format!("connect: {e}")
            }
            Fail::Io(e) => {
                self.stats.io_errors += 1;
                format!("io: {e}")
            }
            Fail::Eof if phase == Phase::Handshake => {
                self.stats.handshake_failed += 1;
                "handshake: connection closed".into()
            }
            Fail::Eof => {
                self.stats.disconnected += 1;
                "connection closed by the server without a close frame".into()
            }
            Fail::Handshake(why) => {
                self.stats.handshake_failed += 1;
                format!("handshake: {why}")
            }
            Fail::Protocol(code, why) => {
                self.stats.protocol_errors += 1;
                format!("protocol error from the server ({code}): {why}")
            }
            Fail::ServerClose(code) => {
                self.stats.server_closed += 1;
                format!("server sent close {code:?}")
            }
        };
        self.note_error(what);
        if phase == Phase::Open {
            app.lost(idx, now);
        }
    }

    /// Runs turns until `done` says so or `deadline` passes.
    pub fn run_until<H: Handler>(
        &mut self,
        events: &mut Events,
        app: &mut H,
        deadline: u64,
        mut done: impl FnMut(&Net, &H) -> bool,
    ) {
        loop {
            let now = now_ns();
            if now >= deadline || done(self, app) {
                return;
            }
            let wait = Duration::from_nanos((deadline - now).min(50_000_000));
            self.turn(events, app, wait);
        }
    }

    /// Sends close 1000 on every open connection, waits (bounded) for the
    /// server's answers, then drops every socket.
    pub fn close_all<H: Handler>(&mut self, events: &mut Events, app: &mut H, timeout: Duration) {
        for idx in 0..self.conns.list.len() {
            match self.conns.list[idx].phase {
                Phase::Open => {
                    self.conns.send(
                        idx,
                        OpCode::Close,
                        &CloseCode::NORMAL.as_u16().to_be_bytes(),
                    );
                    self.conns.list[idx].phase = Phase::Closing;
                    self.closing += 1;
                }
                Phase::Connecting | Phase::Handshake => {
                    let c = &mut self.conns.list[idx];
                    c.stream = None;
                    c.phase = Phase::Done;
                    self.in_progress -= 1;
                }
                _ => {}
            }
        }
        self.next_start = self.conns.list.len();
        self.flush_dirty(app, now_ns());
        let deadline = now_ns() + timeout.as_nanos() as u64;
        self.run_until(events, app, deadline, |net, _| net.closing == 0);
        for c in &mut self.conns.list {
            c.stream = None;
            c.phase = Phase::Done;
        }
    }
}

pub fn connect_phase<H: Handler>(
    net: &mut Net,
    events: &mut Events,
    app: &mut H,
    timeout: f64,
) -> f64 {
    let t0 = now_ns();
    net.run_until(events, app, t0 + secs_to_ns(timeout), |net, _| {
        net.settled()
    });
    (now_ns() - t0) as f64 / NS as f64
}
