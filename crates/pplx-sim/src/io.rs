//! A connection wrapper that can drop a connection at an exact byte: the writer puts a marker
//! into the body where the connection should die; everything before it reaches the client,
//! then the socket is reset. (Failing hyper's body with an error instead would discard what
//! hyper had buffered but not yet written, so "drop after N events" would drop them too.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes that cannot occur in JSON or SSE text: where the connection dies.
pub(crate) const DROP_MARKER: &[u8] = b"\x00\xffPPLX-SIM-DROP\xff\x00";

/// Shared between a connection's IO and the writers of its streams.
#[derive(Debug, Default)]
pub(crate) struct Connection {
    /// Set when a writer has put the marker in a body, so only then are writes searched.
    armed: AtomicBool,
}

impl Connection {
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }
}

pub(crate) struct FaultIo {
    stream: TcpStream,
    connection: Arc<Connection>,
    dead: bool,
}

impl FaultIo {
    pub(crate) fn new(stream: TcpStream, connection: Arc<Connection>) -> Self {
        FaultIo {
            stream,
            connection,
            dead: false,
        }
    }

    fn reset() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "scripted connection drop")
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(FaultIo::reset()));
        }
        Pin::new(&mut this.stream).poll_read(context, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(FaultIo::reset()));
        }
        if this.connection.armed.load(Ordering::Acquire)
            && let Some(position) = buf
                .windows(DROP_MARKER.len())
                .position(|window| window == DROP_MARKER)
        {
            if position > 0 {
                // Write what comes before the marker; the marker arrives at the next call.
                return Pin::new(&mut this.stream).poll_write(context, &buf[..position]);
            }
            this.dead = true;
            // A reset rather than a clean close, as a broken connection looks.
            let _ = this.stream.set_zero_linger();
            return Poll::Ready(Err(FaultIo::reset()));
        }
        Pin::new(&mut this.stream).poll_write(context, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(FaultIo::reset()));
        }
        Pin::new(&mut this.stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
