//! Clocks and a microsecond timer: the tool's notion of time.

use std::io;

use mio::{Interest, Token};

pub const NS: u64 = 1_000_000_000;

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * NS + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on this host.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in nanoseconds: the clock of the kernel's receive
/// timestamps (`SO_TIMESTAMPNS`), so chat relay stamps use it. Intervals of a
/// few milliseconds measured on it are off by at most NTP's slew (≤ 500 ppm).
pub fn wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

pub fn secs_to_ns(s: f64) -> u64 {
    (s.max(0.0) * NS as f64) as u64
}

/// A `timerfd` on CLOCK_MONOTONIC, polled like a socket: epoll's own
/// timeout has millisecond granularity, which would send a client's
/// "1 msg/s" in bursts of everything due within the same millisecond.
pub struct PreciseTimer {
    pub fd: std::os::fd::OwnedFd,
    /// The deadline the timer is armed for (0: disarmed).
    pub armed_for: u64,
}

/// The token of the [`PreciseTimer`] (connections use their index).
pub const TIMER: Token = Token(usize::MAX - 1);

impl PreciseTimer {
    pub fn new(registry: &mio::Registry) -> io::Result<PreciseTimer> {
        // SAFETY: timerfd_create has no memory arguments.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        registry.register(&mut mio::unix::SourceFd(&raw), TIMER, Interest::READABLE)?;
        Ok(PreciseTimer { fd, armed_for: 0 })
    }

    /// Arms the timer for the absolute CLOCK_MONOTONIC time `at_ns`.
    pub fn arm(&mut self, at_ns: u64) {
        if at_ns == self.armed_for {
            return;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / NS) as libc::time_t,
                tv_nsec: (at_ns % NS).max(1) as libc::c_long,
            },
        };
        // SAFETY: the fd is ours and spec lives across the call.
        let rc = unsafe {
            libc::timerfd_settime(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        self.armed_for = if rc == 0 { at_ns } else { 0 };
    }

    /// Consumes the expiry count so the next expiry raises a new edge.
    pub fn acknowledge(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into our buffer.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                count.as_mut_ptr() as *mut libc::c_void,
                count.len(),
            )
        };
        self.armed_for = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    #[test]
    fn precise_timer_wakes_poll_at_its_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut timer = PreciseTimer::new(poll.registry()).unwrap();
        let at = now_ns() + 2_000_000;
        timer.arm(at);
        // Bounded: the wait gives up after 5 s, far beyond the 2 ms asked.
        let limit = now_ns() + 5 * NS;
        let mut fired = false;
        while !fired && now_ns() < limit {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            fired = events.iter().any(|e| e.token() == TIMER);
        }
        assert!(fired);
        assert!(now_ns() >= at);
        timer.acknowledge();
        assert_eq!(timer.armed_for, 0);
    }
}
