//! Two facts about a process that the server, the load tool and the tests
//! all need, read one way: how many descriptors it may hold, and how much
//! memory it holds.
//!
//! Every connection is a descriptor, on both ends, and the usual default
//! soft limit (1024) is far below what a server or a load run holds, while
//! the hard limit is usually much higher: both sides raise the soft limit
//! to the hard one at start. Memory is judged by the kernel's own count of
//! resident pages (`VmRSS` in `/proc/PID/status`), the figure `chat-bench
//! idle` divides per connection and `chat-bench soak` checks for growth.
//!
//! Linux only, like the server's event loop underneath.

use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and
/// returns the soft limit now in force (unchanged when it already was the
/// hard one).
///
/// Fails when the limit cannot be read, or cannot be raised; the error then
/// names the limit that stays.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("getrlimit(RLIMIT_NOFILE): {e}"),
        ));
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "setrlimit(RLIMIT_NOFILE, {}): {e}; the limit stays {}",
                    limit.rlim_max, limit.rlim_cur
                ),
            ));
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// The resident set size of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`, which the kernel gives in KiB).
///
/// Fails when the file cannot be read (no such process, no /proc) or has
/// no readable `VmRSS` line (a kernel thread, a zombie).
pub fn vm_rss_bytes(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    parse_vm_rss(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: no readable VmRSS line"),
        )
    })
}

/// `VmRSS:   1234 kB` → 1234 × 1024.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The wall clock in Unix seconds (0 if it is set before 1970).
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 64 random bits (the key of pair ids): from /dev/urandom, or, where it cannot be
/// read, from std's per-process random hash keys (which the OS seeds).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(e) => {
            log::warn!("cannot read /dev/urandom ({e}); pair ids keyed from std's hash keys");
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(unix_now_s());
            h.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let n = raise_fd_limit().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(n, now.rlim_cur);
        assert_eq!(now.rlim_cur, now.rlim_max);
        // A second call finds nothing to raise and says the same.
        assert_eq!(raise_fd_limit().unwrap(), n);
    }

    #[test]
    fn vm_rss_of_this_process_grows_with_touched_memory() {
        let before = vm_rss_bytes(std::process::id()).unwrap();
        assert!(before > 0 && before % 1024 == 0, "{before}");
        // 64 MiB written page by page must become resident.
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = vm_rss_bytes(std::process::id()).unwrap();
        assert!(
            after >= before + (32 << 20),
            "{before} -> {after} with {} bytes touched",
            block.len()
        );
    }

    #[test]
    fn vm_rss_of_no_process_is_an_error() {
        // pid_max is at most 2^22, so this pid never exists.
        let e = vm_rss_bytes(u32::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/proc/4294967295/status"), "{e}");
    }

    #[test]
    fn vm_rss_line_parsing() {
        let status = "Name:\tchat\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t  12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t  x kB\n"), None);
    }
}
