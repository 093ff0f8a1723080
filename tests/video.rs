//! Video signalling against the real binary (PROTOCOL.md "Video"): `paired`
//! carries the pair, the initiator and ICE servers with TURN REST
//! credentials; `signal`s go to the partner, byte for byte; stale ones are
//! dropped. The options' bad values exit 2 naming the option.

mod common;
use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file holding `content` in a directory of this test's own.
fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-video-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hmac_sha1_base64(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Joins `a` then `b`; returns their `paired` messages.
fn pair(server: &ServerProcess) -> (Ws, Ws, Value, Value) {
    let mut a = Ws::connect(server.addr, "/");
    assert_eq!(a.recv_json()["type"], "waiting");
    let mut b = Ws::connect(server.addr, "/");
    assert_eq!(b.recv_json()["type"], "waiting");
    let pa = a.recv_json();
    let pb = b.recv_json();
    assert_eq!(pa["type"], "paired", "{pa}");
    assert_eq!(pb["type"], "paired", "{pb}");
    (a, b, pa, pb)
}

#[test]
fn paired_carries_ice_with_turn_credentials_and_signals_relay_end_to_end() {
    let secret = temp_file("secret", "video-test-secret\n");
    let before = unix_now();
    let server = ServerProcess::start(&[
        "--ice-server",
        "stun:127.0.0.1:3478",
        "--ice-server",
        "turn:127.0.0.1:3478",
        "--turn-secret-file",
        secret.to_str().unwrap(),
        "--turn-ttl",
        "600",
    ]);
    let (mut a, mut b, pa, pb) = pair(&server);
    let after = unix_now();

    // Same pair id, exactly one initiator: `a`, who was waiting.
    let pair_id = pa["pair"].as_str().unwrap().to_string();
    assert_eq!(pair_id.len(), 16);
    assert!(pair_id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(pb["pair"], pair_id.as_str());
    assert_eq!(
        (pa["initiator"].clone(), pb["initiator"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(pa["ice"], pb["ice"]);

    // STUN bare; TURN with username EXPIRY:PAIRID, EXPIRY = pairing + ttl,
    // credential = base64(HMAC-SHA1(secret trimmed, username)).
    let ice = &pa["ice"];
    assert_eq!(ice[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
    assert_eq!(ice[1]["urls"], json!(["turn:127.0.0.1:3478"]));
    let username = ice[1]["username"].as_str().unwrap();
    let (expiry, user_pair) = username.split_once(':').unwrap();
    assert_eq!(user_pair, pair_id);
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (before + 600..=after + 600).contains(&expiry),
        "{before} {expiry} {after}"
    );
    assert_eq!(
        ice[1]["credential"],
        hmac_sha1_base64(b"video-test-secret", username).as_str()
    );
    assert_eq!(ice.as_array().unwrap().len(), 2);

    // Signals: to the partner, in order, the data bytes as sent.
    let offer = format!(
        r#"{{"type":"signal","pair":"{pair_id}","data":{{ "description" : {{"type":"offer","sdp":"v=0\r\n"}} }}}}"#
    );
    let candidate = format!(
        r#"{{"type":"signal","pair":"{pair_id}","data":{{"candidate":{{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}}}}}}"#
    );
    a.send_text(&offer);
    a.send_text(&candidate);
    assert_eq!(b.recv_data().text(), offer);
    assert_eq!(b.recv_data().text(), candidate);
    let answer = format!(r#"{{"type":"signal","pair":"{pair_id}","data":{{"x":"é😀"}}}}"#);
    b.send_text(&answer);
    assert_eq!(a.recv_data().text(), answer);

    // `next` ends the pair: a late candidate for it is dropped silently,
    // and a new pair gets a new id.
    a.send_json(json!({"type":"next"}));
    assert_eq!(b.recv_json(), json!({"type":"left","reason":"next"}));
    assert_eq!(a.recv_json()["type"], "waiting");
    b.send_text(&candidate);
    let mut c = Ws::connect(server.addr, "/");
    assert_eq!(c.recv_json()["type"], "waiting");
    let pa2 = a.recv_json();
    let pc = c.recv_json();
    assert_eq!(pa2["type"], "paired");
    assert_ne!(pa2["pair"], pair_id.as_str());
    assert_eq!(pa2["pair"], pc["pair"]);
    assert_eq!(
        (pa2["initiator"].clone(), pc["initiator"].clone()),
        (json!(true), json!(false))
    );
    // `a` sends a stale signal too; then a real one, which must be the
    // first thing `c` sees: nothing stale went anywhere.
    a.send_text(&offer);
    let fresh = format!(r#"{{"type":"signal","pair":{},"data":{{}}}}"#, pa2["pair"]);
    a.send_text(&fresh);
    assert_eq!(c.recv_data().text(), fresh);
    assert!(a.try_recv(Duration::from_millis(100)).is_none());
    assert!(b.try_recv(Duration::from_millis(100)).is_none());
    assert_eq!(probe::metric(server.addr, "chat_signals_relayed_total"), 4);
    assert_eq!(probe::metric(server.addr, "chat_client_errors_total"), 0);
}

#[test]
fn without_video_options_paired_has_no_ice() {
    let server = ServerProcess::start(&[]);
    let (_a, _b, pa, pb) = pair(&server);
    assert!(pa.get("ice").is_none(), "{pa}");
    assert_eq!(pa["pair"], pb["pair"]);
    assert_eq!(pa["initiator"], true);
    assert_eq!(pb["initiator"], false);
}

#[test]
fn an_oversized_signal_is_refused_by_name() {
    let server = ServerProcess::start(&[]);
    let (mut a, mut b, pa, _) = pair(&server);
    let big = format!(
        r#"{{"type":"signal","pair":{},"data":{{"s":"{}"}}}}"#,
        pa["pair"],
        "x".repeat(16 * 1024)
    );
    a.send_text(&big);
    assert_eq!(a.recv_json()["code"], "signal_too_large");
    assert!(b.try_recv(Duration::from_millis(100)).is_none());
}

fn chat_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn bad_video_options_exit_2_with_one_line_naming_the_option() {
    let empty = temp_file("empty", " \n");
    let missing = temp_file("x", "").with_file_name("missing");
    for (args, option) in [
        (
            vec!["--turn-secret-file", empty.to_str().unwrap()],
            "--turn-secret-file",
        ),
        (
            vec!["--turn-secret-file", missing.to_str().unwrap()],
            "--turn-secret-file",
        ),
        (vec!["--ice-server", "http://127.0.0.1"], "--ice-server"),
        (vec!["--turn-ttl", "never"], "--turn-ttl"),
    ] {
        let (code, err) = chat_exit(&args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(option), "{err}");
    }
    let (code, err) = chat_exit(&[], &[("CHAT_TURN_SECRET_FILE", missing.to_str().unwrap())]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--turn-secret-file"), "{err}");
    let (code, err) = chat_exit(&[], &[("CHAT_ICE_SERVER", "stun:127.0.0.1:3478,ftp://x")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ice-server"), "{err}");
}

#[test]
fn ice_servers_from_the_environment_are_comma_separated() {
    let server = ServerProcess::start_with(&[], |cmd| {
        cmd.env("CHAT_ICE_SERVER", "stun:127.0.0.1:3478,turn:127.0.0.1:3478");
    });
    let (_a, _b, pa, _) = pair(&server);
    // No secret: the TURN URL comes without credentials.
    assert_eq!(
        pa["ice"],
        json!([{"urls": ["stun:127.0.0.1:3478"]}, {"urls": ["turn:127.0.0.1:3478"]}])
    );
}
