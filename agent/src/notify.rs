//! systemd notifications (`Type=notify`): `READY=1`, `WATCHDOG=1`, `STOPPING=1` sent
//! to `$NOTIFY_SOCKET`; the transport takes the socket path so tests need no env.

use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `states` as one datagram to `socket` (a path, or `@name` for an abstract
/// socket).
pub fn send_to(socket: &OsStr, states: &[NotifyState]) -> io::Result<()> {
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?
        }
        _ => sock.send_to(msg.as_bytes(), socket)?,
    };
    if sent != msg.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short notify write",
        ));
    }
    Ok(())
}

/// Notifies systemd if `NOTIFY_SOCKET` is set; failures are logged, never fatal.
pub fn notify(states: &[NotifyState]) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = send_to(&socket, states) {
            tracing::warn!(error = %e, "systemd notify failed");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is on.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_states_to_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), &[NotifyState::Ready]).unwrap();
        send_to(
            path.as_os_str(),
            &[NotifyState::Watchdog, NotifyState::Stopping],
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\nSTOPPING=1\n");
    }

    #[test]
    fn missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(send_to(dir.path().join("none").as_os_str(), &[NotifyState::Ready]).is_err());
    }
}
