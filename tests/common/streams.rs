//! Client streams that end at awkward moments or pile up: ending a stream
//! with a FIN or a reset once the server's kernel has the bytes, waiting
//! for the server to close, writing a flood of pipelined requests from a
//! thread, counting a flood of answers, and connecting from many source
//! addresses.

use super::probe::{server_end, wait_until, TCP_CLOSE_WAIT};
use super::{find, WAIT};
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum End {
    /// shutdown(SHUT_WR): the socket stays open for reading.
    Fin,
    /// SO_LINGER 0 and close.
    Rst,
}

/// Sends `bytes` and ends the stream, then waits (bounded) until the
/// server's kernel holds both: after a FIN its end is in CLOSE_WAIT with
/// the bytes unread; after a reset its end is gone. With the server paused
/// they are then seen together, in one readiness event. The stream comes
/// back after a FIN.
pub fn send_then_end(
    server: SocketAddr,
    mut s: TcpStream,
    bytes: &[u8],
    end: End,
) -> Option<TcpStream> {
    let client = s.local_addr().unwrap();
    s.write_all(bytes).unwrap();
    let kept = match end {
        End::Fin => {
            s.shutdown(Shutdown::Write).unwrap();
            Some(s)
        }
        End::Rst => {
            reset(s);
            None
        }
    };
    let mut seen = None;
    let queued = wait_until(WAIT, || {
        seen = server_end(server, client);
        match end {
            End::Fin => {
                seen.is_some_and(|e| e.state == TCP_CLOSE_WAIT && e.unread >= bytes.len() as u64)
            }
            End::Rst => seen.is_none(),
        }
    });
    assert!(
        queued,
        "{end:?} from {client} not queued at the server: {seen:?}"
    );
    kept
}

/// Reads until the server closes (EOF or reset) or `within` passes; what
/// came before the close, and how long it took.
pub fn await_close(s: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Duration)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let left = within.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return Some((got, t0.elapsed())),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some((got, t0.elapsed())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Connections come from 127.0.0.2 ..= 127.0.0.101, the i-th from the
/// (i mod 100)-th: thousands from one address could run short of ephemeral
/// ports. The port is picked at connect time (IP_BIND_ADDRESS_NO_PORT), as
/// for an unbound socket, not reserved by `bind` for every destination.
pub fn connect_from(i: usize, addr: SocketAddr) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a c_int it reads.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "IP_BIND_ADDRESS_NO_PORT");
    let src = Ipv4Addr::new(127, 0, 0, 2 + (i % 100) as u8);
    sock.bind(&SocketAddr::from((src, 0)).into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Closes with a reset (SO_LINGER 0): unlike a FIN, it leaves no TIME_WAIT
/// socket behind. Thousands of those, from one test run to the next, make
/// the kernel's search for a free ephemeral port slow.
pub fn reset(s: TcpStream) {
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

/// A connection whose receive buffer is fixed at `bytes` (the kernel
/// doubles it, and no longer grows it as we read): what is in flight to us
/// stays small.
pub fn connect_with_rcvbuf(addr: SocketAddr, bytes: usize) -> TcpStream {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(bytes).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

// ---- a flood of pipelined requests -------------------------------------

/// Writes `count` copies of a request from a thread, as fast as the server
/// takes them, until all are written, `deadline` passes, the stream fails,
/// or this is dropped. Writes block once the buffers between us fill, which
/// is how a server that stops reading shows.
pub struct Pipeliner {
    written: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub total: usize,
}

impl Pipeliner {
    pub fn start(s: &TcpStream, request: &[u8], count: usize, deadline: Instant) -> Pipeliner {
        let mut w = s.try_clone().unwrap();
        // Short, so that `stop` is seen soon.
        w.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let total = count * request.len();
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let chunk = request.repeat(1000);
        let thread = {
            let (written, stop) = (written.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut done = 0;
                while done < total && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // `chunk` repeats the request, so this is where the
                    // next one (or the rest of the current one) starts.
                    let at = done % chunk.len();
                    let end = chunk.len().min(at + total - done);
                    match w.write(&chunk[at..end]) {
                        Ok(n) => done += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                    written.store(done, Ordering::Relaxed);
                }
            })
        };
        Pipeliner {
            written,
            stop,
            thread: Some(thread),
            total,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }
}

impl Drop for Pipeliner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- a flood of answers ------------------------------------------------

/// Counts HTTP responses as they stream in, skipping bodies by
/// Content-Length without keeping them.
#[derive(Default)]
pub struct ResponseCounter {
    /// Bytes of an unfinished head.
    pub head: Vec<u8>,
    /// Body bytes still to skip.
    pub skip: usize,
    /// `HTTP/1.1 200` responses.
    pub ok: u64,
    /// Other responses, and the heads of the first few.
    pub others: u64,
    pub other_heads: Vec<String>,
}

impl ResponseCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            // Heads are short: gather them a little at a time (the last 3
            // bytes kept may hold the start of the CRLFCRLF).
            let from = self.head.len().saturating_sub(3);
            let take = data.len().min(512);
            self.head.extend_from_slice(&data[..take]);
            let Some(end) = find(&self.head[from..], b"\r\n\r\n").map(|e| from + e + 4) else {
                assert!(self.head.len() < 8 * 1024, "no end of head");
                data = &data[take..];
                continue;
            };
            let head = String::from_utf8_lossy(&self.head[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap_or_else(|| panic!("no Content-Length: {head:?}"))
                .parse()
                .unwrap();
            if head.starts_with("HTTP/1.1 200 ") {
                self.ok += 1;
            } else {
                self.others += 1;
                if self.other_heads.len() < 3 {
                    self.other_heads.push(head);
                }
            }
            // Whatever of `data` went past the head belongs to the body.
            let used = take - (self.head.len() - end);
            self.head.clear();
            self.skip = len;
            data = &data[used..];
        }
    }

    /// Responses seen, of any status.
    pub fn count(&self) -> u64 {
        self.ok + self.others
    }
}
