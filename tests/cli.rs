//! The command line: help, version, environment variables, bad values.

use std::process::Command;

fn chat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chat"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_option_with_its_environment_variable() {
    let out = chat(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (option, env) in [
        ("--listen", "CHAT_LISTEN"),
        ("--max-connections", "CHAT_MAX_CONNECTIONS"),
        ("--max-message-size", "CHAT_MAX_MESSAGE_SIZE"),
        ("--handshake-timeout", "CHAT_HANDSHAKE_TIMEOUT"),
        ("--idle-timeout", "CHAT_IDLE_TIMEOUT"),
        ("--allowed-origin", "CHAT_ALLOWED_ORIGIN"),
        ("--interest-wait", "CHAT_INTEREST_WAIT"),
        ("--rate-limit", "CHAT_RATE_LIMIT"),
        ("--busy-poll", "CHAT_BUSY_POLL"),
        ("--ice-server", "CHAT_ICE_SERVER"),
        ("--turn-secret-file", "CHAT_TURN_SECRET_FILE"),
        ("--turn-ttl", "CHAT_TURN_TTL"),
        ("--tls-cert", "CHAT_TLS_CERT"),
        ("--tls-key", "CHAT_TLS_KEY"),
    ] {
        assert!(help.contains(option), "{option} missing from --help");
        assert!(help.contains(env), "{env} missing from --help");
    }
}

#[test]
fn version() {
    let out = chat(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("chat {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_values_name_the_option_and_exit_2() {
    for (args, option) in [
        (vec!["--listen", "nowhere"], "--listen"),
        (vec!["--idle-timeout", "-3"], "--idle-timeout"),
        (vec!["--max-message-size", "0"], "--max-message-size"),
        (vec!["--busy-poll", "2s"], "--busy-poll"),
        (vec!["--no-such-option"], "--no-such-option"),
    ] {
        let out = chat(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(option), "{err}");
    }
    // A bad environment value is named by its option too.
    let out = Command::new(env!("CARGO_BIN_EXE_chat"))
        .env("CHAT_HANDSHAKE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--handshake-timeout"));
}
