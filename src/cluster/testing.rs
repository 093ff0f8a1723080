//! A real `redis-server` for tests: a free loopback port, no persistence,
//! killed when dropped; and a blocking client over the crate's own codec.

use super::resp::{self, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub addr: SocketAddr,
    child: Child,
}

impl Redis {
    /// Starts one and waits (bounded, 10 s) until it answers PING.
    pub fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = Client::connect(addr) {
                if c.cmd(&[b"PING"]) == Value::Simple(b"PONG".to_vec()) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { addr, child }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        resp::encode(&mut out, args);
        self.stream.write_all(&out).unwrap();
    }

    /// The next reply (panics after the 5 s read timeout).
    pub fn read(&mut self) -> Value {
        loop {
            if let Some((v, used)) = resp::decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                return v;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "redis closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> Value {
        self.send(args);
        self.read()
    }
}
