//! The shared handle's rules on a fake clock: limits count the client
//! address, blocks and bans expire, metrics show them.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn blocks_expire_after_block_hours() {
    let s = SafetyHandle::default();
    let t = 1_000_000;
    assert!(s.may_pair(ip("192.0.2.1"), ip("192.0.2.2"), t));
    s.block(ip("192.0.2.1"), ip("192.0.2.2"), t);
    assert!(!s.may_pair(ip("192.0.2.2"), ip("192.0.2.1"), t));
    let day = 24 * 3_600_000;
    assert!(!s.may_pair(ip("192.0.2.2"), ip("192.0.2.1"), t + day - 1));
    assert!(s.may_pair(ip("192.0.2.2"), ip("192.0.2.1"), t + day));
    s.tick(t + day);
    assert_eq!(s.shared.blocks_in_force.load(Ordering::Relaxed), 0);
}

#[test]
fn ipv6_blocks_cover_the_64() {
    let s = SafetyHandle::default();
    s.block(ip("2001:db8:1:1::1"), ip("2001:db8:2:2::1"), 0);
    assert!(!s.may_pair(ip("2001:db8:1:1::ffff"), ip("2001:db8:2:2:abcd::"), 1));
    assert!(s.may_pair(ip("2001:db8:1:3::1"), ip("2001:db8:2:2::1"), 1));
}

#[test]
fn admin_bans_bump_the_generation_and_show_in_metrics() {
    let s = SafetyHandle::default();
    let g = s.ban_generation();
    let now = 1_800_000_000_000;
    s.admin_ban("198.51.100.0/24", 5, "flood", now).unwrap();
    assert_eq!(s.ban_generation(), g + 1);
    assert!(s.ban_for(ip("198.51.100.9"), now).is_some());
    let mut m = String::new();
    s.render_metrics(&mut m, now);
    assert!(m.contains("chat_bans_in_force 1\n"), "{m}");
    assert!(m.contains("chat_bans_total{by=\"admin\"} 1\n"), "{m}");
    s.render_metrics(&mut m, now + 5 * 60_000);
    assert!(m.contains("chat_bans_in_force 0\n"), "{m}");
}

#[test]
fn limits_are_off_unless_given_and_429s_are_counted() {
    let off = SafetyHandle::default();
    for _ in 0..100 {
        assert_eq!(off.open_connection(ip("192.0.2.1"), 0), Ok(false));
        assert_eq!(off.new_session(ip("192.0.2.1"), 0), Ok(()));
    }
    let on = SafetyHandle::new(
        SafetyConfig {
            max_connections_per_ip: 1,
            sessions_per_minute_per_ip: 2,
            ..SafetyConfig::default()
        },
        0,
    )
    .unwrap();
    assert_eq!(on.open_connection(ip("192.0.2.1"), 0), Ok(true));
    assert!(on.open_connection(ip("192.0.2.1"), 0).is_err());
    assert_eq!(on.open_connection(ip("192.0.2.2"), 0), Ok(true));
    on.close_connection(ip("192.0.2.1"));
    assert_eq!(on.open_connection(ip("192.0.2.1"), 0), Ok(true));
    assert_eq!(on.new_session(ip("192.0.2.1"), 0), Ok(()));
    assert_eq!(on.new_session(ip("192.0.2.1"), 0), Err(30));
    let mut m = String::new();
    on.render_metrics(&mut m, 0);
    assert!(m.contains("chat_limited_total 2\n"), "{m}");
}

#[test]
fn a_bad_ban_file_or_word_list_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("chat-safety-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bans = dir.join("bans");
    std::fs::write(&bans, "garbage\n").unwrap();
    let err = SafetyHandle::new(
        SafetyConfig {
            ban_file: Some(bans.clone()),
            ..SafetyConfig::default()
        },
        0,
    )
    .unwrap_err();
    assert!(err.contains("line 1") && err.contains("bans"), "{err}");
    let err = SafetyHandle::new(
        SafetyConfig {
            blocked_words: Some(dir.join("missing")),
            ..SafetyConfig::default()
        },
        0,
    )
    .unwrap_err();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
