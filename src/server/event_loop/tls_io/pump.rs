//! Driving rustls's unbuffered state machine for one connection: records
//! in, plaintext and records out, through the loop's shared buffers.

use super::TlsConn;
use crate::server::tls::TLS_OUTPUT_LIMIT;
use log::debug;
use mio::net::TcpStream;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::io::{ErrorKind, Write};

/// What to do at rustls's WriteTraffic state, where app data may go.
#[derive(Clone, Copy)]
pub(super) enum AppWrite<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// What running rustls came to.
pub(super) enum Pumped {
    /// Needs more input, or is ready for app data: `usize` bytes of
    /// ciphertext were used, `usize` bytes of plaintext encrypted.
    Ok { used: usize, encrypted: usize },
    /// rustls failed the connection (the alert is written).
    Failed(rustls::Error),
}

/// Runs rustls over `input` until it needs more input or reaches app data:
/// decrypted records go to `tls.plain`, handshake records and alerts to the
/// socket (what it does not take, to `tls.outgoing`), and at WriteTraffic
/// `write` is encrypted (only when nothing is waiting in `outgoing`).
pub(super) fn pump(
    tls: &mut TlsConn,
    socket: &mut TcpStream,
    input: &mut [u8],
    output: &mut Vec<u8>,
    write: AppWrite<'_>,
) -> Pumped {
    let TlsConn {
        conn,
        plain,
        outgoing,
        close_notify_sent,
        ..
    } = tls;
    let mut used = 0;
    let mut encrypted = 0;
    let mut error: Option<rustls::Error> = None;
    let mut peer_closed = false;
    // Bounded: each pass uses input, moves a record, or ends; rustls
    // produces at most a handshake flight's records per input.
    for _ in 0..1024 {
        // After an error rustls must not see the bad input again (it would
        // queue a second fatal alert): only its queued alert comes out.
        let rest = match error {
            Some(_) => &mut [],
            None => input.get_mut(used..).unwrap_or_default(),
        };
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(rest);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                used += discard;
                if error.is_some() {
                    break;
                }
                // The alert for it comes out on the next pass.
                error = Some(e);
                continue;
            }
        };
        let mut done = false;
        match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            plain.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            error.get_or_insert(e);
                            break;
                        }
                    }
                }
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                let at = output.len();
                output.resize(at + 4096, 0);
                loop {
                    match encode.encode(output.get_mut(at..).unwrap_or_default()) {
                        Ok(n) => {
                            output.truncate(at + n);
                            break;
                        }
                        Err(EncodeError::InsufficientSize(need)) => {
                            output.resize(at + need.required_size, 0);
                        }
                        Err(_) => {
                            output.truncate(at);
                            break;
                        }
                    }
                }
            }
            ConnectionState::TransmitTlsData(transmit) => {
                send(outgoing, socket, output);
                transmit.done();
            }
            ConnectionState::WriteTraffic(mut writer) => {
                if error.is_some() || !outgoing.is_empty() {
                    done = true;
                } else {
                    let data = match write {
                        AppWrite::Data(data) => data.get(..data.len().min(TLS_OUTPUT_LIMIT)),
                        _ => None,
                    };
                    if !output.is_empty() {
                        send(outgoing, socket, output);
                    }
                    output.resize(data.map_or(0, <[u8]>::len) + 1024, 0);
                    let result = loop {
                        let r = match (write, data) {
                            (_, Some(data)) if !data.is_empty() => writer
                                .encrypt(data, output.as_mut_slice())
                                .map(|n| (n, data.len())),
                            (AppWrite::CloseNotify, _) if !*close_notify_sent => writer
                                .queue_close_notify(output.as_mut_slice())
                                .map(|n| (n, 0)),
                            _ => Ok((0, 0)),
                        };
                        match r {
                            Err(EncryptError::InsufficientSize(need)) => {
                                output.resize(need.required_size, 0);
                            }
                            other => break other,
                        }
                    };
                    match result {
                        Ok((n, taken)) => {
                            output.truncate(n);
                            encrypted += taken;
                            if matches!(write, AppWrite::CloseNotify) {
                                *close_notify_sent = true;
                            }
                            send(outgoing, socket, output);
                        }
                        Err(e) => {
                            output.clear();
                            debug!("TLS encrypt: {e}");
                        }
                    }
                    done = true;
                }
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                peer_closed = true;
                done = true;
            }
            // BlockedHandshake: more input needed. Early data is off.
            _ => done = true,
        }
        used += discard;
        if done {
            break;
        }
    }
    // Records encoded but not yet transmitted (a state loop cut short).
    if !output.is_empty() {
        send(outgoing, socket, output);
    }
    if peer_closed {
        tls.peer_closed = true;
    }
    match error {
        Some(e) => Pumped::Failed(e),
        None => Pumped::Ok { used, encrypted },
    }
}

/// Writes `output` (after anything still waiting), keeping what the socket
/// does not take in `outgoing`; empties `output`.
fn send(outgoing: &mut Vec<u8>, socket: &mut TcpStream, output: &mut Vec<u8>) {
    if outgoing.is_empty() {
        let n = write_some(socket, output);
        if let Some(rest) = output.get(n..) {
            outgoing.extend_from_slice(rest);
        }
    } else {
        outgoing.extend_from_slice(output);
    }
    output.clear();
}

/// Writes from `bytes` until done or the socket is full (or failed: the
/// next read or write finds out); how many went.
fn write_some(socket: &mut TcpStream, bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        match socket.write(rest) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    at
}

/// Writes what waits in `tls.outgoing`; true when all of it went.
pub(super) fn drain_outgoing(tls: &mut TlsConn, socket: &mut TcpStream) -> bool {
    if tls.outgoing.is_empty() {
        return true;
    }
    let n = write_some(socket, &tls.outgoing);
    if n >= tls.outgoing.len() {
        tls.outgoing = Vec::new();
        true
    } else {
        tls.outgoing.drain(..n);
        false
    }
}

/// Queues and writes our close_notify once (established connections only).
pub(super) fn close_notify(tls: &mut TlsConn, socket: &mut TcpStream, output: &mut Vec<u8>) {
    if tls.close_notify_sent || tls.handshaking() || tls.failed {
        return;
    }
    let _ = pump(tls, socket, &mut [], output, AppWrite::CloseNotify);
}
