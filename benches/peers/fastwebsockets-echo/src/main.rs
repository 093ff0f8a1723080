//! Echo peer for chat's benchmarks: fastwebsockets 0.10 on a hyper 1
//! upgrade, tokio current_thread runtime.
//!
//! Every text and binary message comes back unchanged; pings are answered
//! (auto-pong) and closes completed (auto-close) by fastwebsockets itself.
//! Any request path is accepted (`/echo` included).
//!
//! Usage: fastwebsockets-echo [--listen 127.0.0.1:9002]

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn listen_addr() -> String {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9002".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => addr = args.next().expect("--listen needs ADDR"),
            "-h" | "--help" => {
                eprintln!("usage: fastwebsockets-echo [--listen ADDR]");
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

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = listen_addr();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("fastwebsockets-echo listening on {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
                        .with_upgrades()
                        .await;
                });
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
