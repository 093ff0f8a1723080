//! A network namespace joined to this host by a veth link, for cutting a
//! process off the network without telling it (the link taken down).
//! Needs root; deleted on drop, also when the test fails.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Whether we may create network namespaces (root; CI runs as root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this host by a veth link: the host end
/// holds `host_ip`, the namespace's end `ns_ip` (a /30 of 10.213.x.0); the
/// namespace's loopback is up. Deleted on drop (with the link), also when
/// the test fails.
pub struct Netns {
    pub name: String,
    host_if: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

impl Netns {
    pub fn create() -> Netns {
        let pid = std::process::id();
        let x = (pid % 250) as u8;
        let ns = Netns {
            name: format!("chat-ctest-{pid}"),
            host_if: format!("ct{}h", pid % 1_000_000),
            host_ip: Ipv4Addr::new(10, 213, x, 1),
            ns_ip: Ipv4Addr::new(10, 213, x, 2),
        };
        // Leftovers of an earlier run with the same pid go first.
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        let peer = format!("ct{}n", pid % 1_000_000);
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let n = ns.name.as_str();
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &peer,
        ]);
        ip(&["-n", n, "link", "set", &peer, "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ns
    }

    /// Takes the host end of the link down: nothing passes either way, and
    /// neither side is told (no reset, no FIN): a cut cable.
    pub fn link_down(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    pub fn link_up(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }

    fn handle(&self) -> std::fs::File {
        std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns")
    }

    /// Runs `f` on a thread inside the namespace: the sockets it opens
    /// live there (and stay there when handed back to other threads).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let handle = self.handle();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on this thread with a namespace fd we hold.
                let r = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Makes `cmd` start inside the namespace.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let handle = self.handle();
        let fd = handle.as_raw_fd();
        // SAFETY: setns(2) is async-signal-safe; `handle` stays open (moved
        // into the closure) until the command is spawned.
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &handle;
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
