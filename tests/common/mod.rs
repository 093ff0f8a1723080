//! Test support: starts the real `chat` binary on a free loopback port and
//! talks to it with a tiny blocking HTTP/WebSocket client. Every wait is
//! bounded.
#![allow(dead_code)]

pub mod cluster;
pub mod netns;
pub mod probe;
pub mod redis;
pub mod streams;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `chat` process, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `chat --listen 127.0.0.1:0 ARGS…` and waits for its start line.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with(args, |_| {})
    }

    // The child is killed and waited for in `Drop`; only a start that
    // fails (and panics the test) leaves it to the test process's exit.
    #[allow(clippy::zombie_processes)]
    pub fn start_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().expect("spawn chat");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("chat printed no start line");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(';').next().unwrap().trim().parse().unwrap();
                return ServerProcess {
                    child,
                    addr,
                    log: rx,
                };
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (using Content-Length; `head_only` for HEAD), from
/// a plain or a TLS stream.
pub fn read_response(stream: &mut impl Read, buf: &mut Vec<u8>, head_only: bool) -> Response {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap();
            let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.trim().to_string(), v.trim().to_string())
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let body_len = if head_only || status == 101 { 0 } else { len };
            while buf.len() < end + 4 + body_len {
                assert!(Instant::now() < deadline, "timed out reading body");
                read_more(stream, buf);
            }
            let body = buf[end + 4..end + 4 + body_len].to_vec();
            buf.drain(..end + 4 + body_len);
            return Response {
                status,
                headers,
                body,
            };
        }
        assert!(Instant::now() < deadline, "timed out reading head");
        read_more(stream, buf);
    }
}

/// Appends what the next read brings; panics when the stream ends.
pub fn read_more(stream: &mut impl Read, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk).expect("read");
    assert!(
        n > 0,
        "connection closed early; have {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    read_response(&mut s, &mut Vec::new(), false)
}

/// True when the peer closes the connection within the wait (after any
/// bytes it still sends, which are returned).
pub fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 16384];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(all),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(all),
            Err(_) => return None,
        }
    }
    None
}

// ---- WebSocket -------------------------------------------------------

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A blocking WebSocket client.
pub struct Ws {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// A frame from the server.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap()
    }

    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.opcode, 1, "not a text frame: {self:?}");
        serde_json::from_slice(&self.payload).unwrap()
    }
}

impl Ws {
    pub fn connect(addr: SocketAddr, path: &str) -> Ws {
        let mut stream = connect(addr);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let resp = read_response(&mut stream, &mut buf, false);
        assert_eq!(resp.status, 101, "{resp:?}");
        assert_eq!(
            resp.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        Ws { stream, buf }
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let bytes = frame_bytes(fin, opcode, payload, Some([0x12, 0x34, 0x56, 0x78]));
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes());
    }

    pub fn send_json(&mut self, value: serde_json::Value) {
        self.send_text(&value.to_string());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame; panics on timeout or close of the TCP connection.
    pub fn recv(&mut self) -> Frame {
        self.try_recv(WAIT).expect("no frame within the wait")
    }

    /// The next frame within `wait`, or None.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// The next data or close frame, answering nothing and skipping pings.
    pub fn recv_data(&mut self) -> Frame {
        loop {
            let f = self.recv();
            if f.opcode != 9 && f.opcode != 10 {
                return f;
            }
        }
    }

    pub fn recv_json(&mut self) -> serde_json::Value {
        self.recv_data().json()
    }

    /// Expects a close frame with `code`, answers it, and expects TCP close.
    pub fn expect_close(&mut self, code: u16) {
        let f = self.recv_data();
        assert_eq!(f.opcode, 8, "expected close {code}, got {f:?}");
        assert_eq!(f.close_code(), Some(code), "{f:?}");
        let _ = self.stream.write_all(&frame_bytes(
            true,
            8,
            &code.to_be_bytes(),
            Some([1, 2, 3, 4]),
        ));
        assert!(
            read_until_closed(&mut self.stream).is_some(),
            "server did not close TCP"
        );
    }
}

pub fn frame_bytes(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Parses one unmasked server frame from the front of `buf`.
pub fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            fin,
            opcode,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}

/// Our own descriptor limit raised to the hard one (`chat::sys`, as the
/// server does): the heavy tests hold a few thousand sockets.
pub fn raise_nofile() {
    chat::sys::raise_fd_limit().expect("raise RLIMIT_NOFILE");
}

/// A process's resident set size in KiB (`chat::sys::vm_rss_bytes`).
pub fn rss_kib(pid: u32) -> u64 {
    chat::sys::vm_rss_bytes(pid).expect("VmRSS") / 1024
}

/// CPU time (user + system) the process has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}

/// Two chat clients, paired; the first one connected is returned first.
pub fn chat_pair(addr: SocketAddr) -> (Ws, Ws) {
    let mut a = Ws::connect(addr, "/");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = Ws::connect(addr, "/");
    assert_eq!(b.recv_json()["type"], "waiting");
    assert_eq!(a.recv_json()["type"], "paired");
    assert_eq!(b.recv_json()["type"], "paired");
    (a, b)
}
