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

/// A socket the simulator serves on: plain TCP, or TLS over TCP. Either way the TCP socket
/// is reachable, to reset it.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Above TLS, so the marker is found in the plain bytes hyper writes.
pub(crate) struct FaultIo<S> {
    stream: S,
    connection: Arc<Connection>,
    dead: bool,
}

impl<S> FaultIo<S> {
    pub(crate) fn new(stream: S, connection: Arc<Connection>) -> Self {
        FaultIo {
            stream,
            connection,
            dead: false,
        }
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "scripted connection drop")
}

impl<S: Socket> AsyncRead for FaultIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_read(context, buf)
    }
}

impl<S: Socket> AsyncWrite for FaultIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(reset()));
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
            let _ = this.stream.tcp().set_zero_linger();
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_write(context, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}
