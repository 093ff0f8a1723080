//! Echo peer for chat's benchmarks: tokio (current_thread) + tokio-tungstenite.
//!
//! Every text and binary message comes back unchanged; pings are answered by
//! tungstenite itself. Any request path is accepted (`/echo` included).
//!
//! Usage: tokio-tungstenite-echo [--listen 127.0.0.1:9001]

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};

fn listen_addr() -> String {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9001".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => addr = args.next().expect("--listen needs ADDR"),
            "-h" | "--help" => {
                eprintln!("usage: tokio-tungstenite-echo [--listen ADDR]");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    addr
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let (write, read) = ws.split();
    // `forward` feeds while messages are ready and flushes when the reader
    // would block: pipelined echoes leave in one write.
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = listen_addr();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("tokio-tungstenite-echo listening on {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
