//! Socket options the client loop needs beyond std and mio: receive
//! timestamps, and client sockets bound to a 127.0.0.x source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::clock::NS;
use mio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Asks the kernel to stamp every received segment with the time it reached
/// the socket (`SO_TIMESTAMPNS`, CLOCK_REALTIME).
pub fn enable_rx_timestamps(fd: std::os::fd::RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `read` through `recvmsg`, also returning the kernel's receive timestamp of
/// the data read (0 when the kernel gave none).
pub fn recv_stamped(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for a few control messages; u64 keeps it aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at our iovec and control buffer, both live and sized.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = 0;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled,
    // bounded by msg_controllen; the timespec is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = ts.tv_sec as u64 * NS + ts.tv_nsec as u64;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

/// A nonblocking TCP socket connecting to `addr` (the connect is under way
/// when this returns). Towards IPv4 loopback, connection `idx` binds source
/// address 127.0.0.(1 + idx % sources) first: one source address has only
/// some 28,000 ephemeral ports for one destination, and a long run opens
/// more connections than that. `rx_timestamps`: stamp received data
/// (`SO_TIMESTAMPNS`, read back by [`recv_stamped`]).
pub fn connect_nonblocking(
    addr: SocketAddr,
    idx: usize,
    sources: u8,
    rx_timestamps: bool,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let IpAddr::V4(ip) = addr.ip() {
        if ip.is_loopback() {
            // Let connect() pick the port, so the 4-tuple decides uniqueness.
            let one: libc::c_int = 1;
            // SAFETY: setsockopt on our own socket with a c_int option value.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % sources.max(1) as usize) as u8);
            socket.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
        }
    }
    if rx_timestamps {
        enable_rx_timestamps(std::os::fd::AsRawFd::as_raw_fd(&socket))?;
    }
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::wall_ns;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn kernel_receive_stamps_fall_between_send_and_read() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        enable_rx_timestamps(receiver.as_raw_fd()).unwrap();
        // The kernel turns receive stamping on for the whole system through
        // a deferred work item, so the first segments after the very first
        // socket asks may come unstamped: try (bounded) until one is.
        for _ in 0..200 {
            let before = wall_ns();
            sender.write_all(b"stamped").unwrap();
            let mut buf = [0u8; 64];
            let (n, stamp) = recv_stamped(receiver.as_raw_fd(), &mut buf).unwrap();
            let after = wall_ns();
            assert_eq!(&buf[..n], b"stamped");
            if stamp != 0 {
                assert!(
                    before <= stamp && stamp <= after,
                    "{before} {stamp} {after}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no receive timestamp in 200 tries");
    }
}
