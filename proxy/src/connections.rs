//! Client connections: accepting them up to a cap, the deadlines a slow client gets, and serving
//! HTTP/1.1 and HTTP/2 (h2c, told apart by the first bytes) on them until a graceful shutdown.
//!
//! A client that trickles cannot hold what others need:
//! - at most `ConnectionSettings::max_connections` connections are served at once; a connection
//!   beyond that is answered `503 too_many_connections` (one small write on the fresh socket, no
//!   task, no read) and closed, so a flood costs one accept each and never the file descriptors of
//!   the connections already served;
//! - the first bytes of a connection (HTTP/1.1 or the HTTP/2 preface) and every HTTP/1.1 request
//!   head, including the wait for the next request on an idle keep-alive connection, must arrive
//!   within `ConnectionSettings::header_read_timeout`; then the connection is closed;
//! - a request body must arrive within `ConnectionSettings::body_read_timeout` of the proxy's
//!   first wait for it ([`DeadlineBody`]); `/v1` then answers `408 request_body_timeout`. `/v1` reads
//!   the body only after the client token is known, so an unauthenticated body holds no admission
//!   slot (see the `forward` module).
//!
//! When accepting fails (no file descriptor left, for instance) the loop waits, from 10 ms doubling
//! to 1 s, instead of spinning, and logs one line per failure streak.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::app::AppService;
use crate::body_deadline::DeadlineBody;
use crate::config::ConnectionSettings;
use crate::metrics::Metrics;

/// Bytes that tell HTTP/2 (its 24-byte preface) from HTTP/1.1.
const PROTOCOL_SNIFF_BYTES: usize = 24;
/// Shortest and longest wait after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// The answer of a connection beyond the cap.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 62\r\n\r\n\
{\"error\":\"Too many connections\",\"code\":\"too_many_connections\"}";

/// Serves `service` on `listener` until `shutdown`, then stops accepting and lets the open
/// connections finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    service: AppService,
    settings: ConnectionSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if backoff == ACCEPT_BACKOFF.0 {
                    tracing::warn!(%error, "cannot accept connections; retrying with backoff");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF.0;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.record_connection_refused();
            // A fresh socket's send buffer takes these few bytes at once; if it does not, the
            // connection is closed without them. What the client has sent already is read first,
            // so closing does not reset the connection before it reads the answer.
            let _ = stream.try_write(TOO_MANY_CONNECTIONS);
            let _ = stream.try_read(&mut [0_u8; 4096]);
            continue;
        };
        let watcher = graceful.watcher();
        let service = PerConnection {
            app: service.clone(),
            peer,
            body_read_timeout: settings.body_read_timeout,
        };
        let header_read_timeout = settings.header_read_timeout;
        metrics.connection_opened();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(ClientIo::new(stream, header_read_timeout));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let connection = builder.serve_connection_with_upgrades(io, service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            metrics.connection_closed();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The application as hyper sees it for one connection: the peer address as `ConnectInfo` (the
/// audit trail's client address) and every request body under a [`DeadlineBody`].
#[derive(Clone)]
struct PerConnection {
    app: AppService,
    peer: SocketAddr,
    body_read_timeout: Duration,
}

impl hyper::service::Service<http::Request<Incoming>> for PerConnection {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <AppService as Service<axum::extract::Request>>::Future;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let timeout = self.body_read_timeout;
        let mut request = request.map(|incoming| Body::new(DeadlineBody::new(incoming, timeout)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.app.clone().call(request)
    }
}

/// A client connection as hyper sees it. Two things hyper does not do:
/// - the first [`PROTOCOL_SNIFF_BYTES`] must arrive within the header read timeout: hyper-util reads
///   them to tell HTTP/2 from HTTP/1.1 with no deadline of its own, and hyper's HTTP/1.1 header
///   timeout only starts after that; past those bytes reads go straight to the stream;
/// - hyper answers a request head it cannot parse (400, 431, …) itself, with an empty body; such an
///   answer (a 4xx head with `connection: close` and `content-length: 0`, which no handler of this
///   proxy writes: every error of its own is JSON) is rewritten into the same status with a JSON
///   error body ([`json_parse_error`]).
struct ClientIo {
    stream: TcpStream,
    sniffed: usize,
    deadline: Pin<Box<Sleep>>,
    /// The JSON rewrite of hyper's parse-error answer, and how much of it is written.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl ClientIo {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            sniffed: 0,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            rewrite: None,
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.sniffed >= PROTOCOL_SNIFF_BYTES {
            return read;
        }
        match read {
            Poll::Ready(Ok(())) => {
                this.sniffed += buf.filled().len() - before;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "header read timeout"),
            )),
            other => other,
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none()
            && let Some(json) = json_parse_error(buf)
        {
            this.rewrite = Some((json, 0));
        }
        let Some((json, written)) = &mut this.rewrite else {
            return Pin::new(&mut this.stream).poll_write(cx, buf);
        };
        // hyper calls again with the same bytes until they are all reported written.
        while *written < json.len() {
            match Pin::new(&mut this.stream).poll_write(cx, &json[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        this.rewrite = None;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match bufs.iter().find(|buf| !buf.is_empty()) {
            Some(first) if self.rewrite.is_some() || json_parse_error(first).is_some() => {
                self.poll_write(cx, first)
            }
            _ => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The JSON rewrite of an answer hyper wrote itself for a request head it could not parse (see
/// [`ClientIo`]), or `None` for any other bytes.
fn json_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    const MARK: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";
    if !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    head.windows(MARK.len()).position(|window| window == MARK)?;
    let status_line = head.split(|&b| b == b'\r').next()?;
    let status_line = std::str::from_utf8(status_line).ok()?;
    let (code, reason) = match status_line.get(9..12)? {
        "431" => (
            "request_header_too_large",
            "Request header fields too large",
        ),
        "414" => ("uri_too_long", "Request URI too long"),
        _ => ("bad_request", "Malformed HTTP request"),
    };
    let body = format!(r#"{{"error":"{reason}","code":"{code}"}}"#);
    Some(
        format!(
            "{status_line}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["code"], "too_many_connections");
    }

    #[test]
    fn only_hypers_own_parse_error_answers_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 14:29:26 GMT\r\n\r\n";
        let rewritten = json_parse_error(hyper)
            .map(String::from_utf8)
            .and_then(Result::ok);
        let text = rewritten.unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(json["code"], "request_header_too_large");
        // An application answer (JSON body, no `connection: close` + empty body) is left alone.
        let app = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n";
        assert!(json_parse_error(app).is_none());
        assert!(
            json_parse_error(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .is_none()
        );
    }
}
