//! The server's own accept loop, used instead of `axum::serve`.
//!
//! `axum::serve` is deliberately minimal: it speaks plain TCP only, it has
//! no way to plug in TLS, and it offers no timeout on a client that opens a
//! connection and then sends its request slowly (or never). A server that is
//! reachable from untrusted networks needs all three of TLS, a bound on how
//! long a connection may sit without delivering a request, and a graceful
//! shutdown, so this module drives hyper directly:
//!
//! * every accepted TCP connection gets `TCP_NODELAY` and its own task;
//! * with TLS configured, the task first completes the rustls handshake,
//!   which must finish within [`ServeOptions::header_read_timeout`];
//! * the connection is then served by hyper-util's automatic HTTP/1.1 or
//!   HTTP/2 builder; a connection whose first request has not arrived
//!   within the header read timeout is closed, and hyper's own HTTP/1 header
//!   read timeout bounds every later request (and so also idle keep-alive
//!   connections);
//! * when the shutdown future resolves, the listener is closed, handshakes
//!   in progress are abandoned, and every established connection is asked
//!   to shut down gracefully: requests in flight finish, then [`serve`]
//!   returns.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long the loop pauses after a failed `accept()`, so that running out
/// of file descriptors does not turn into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the server accepts and serves connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS: when set, every connection must complete a TLS handshake.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to send a request's headers (and, with
    /// TLS, to finish its handshake) before the connection is closed.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    /// Returns options for plain HTTP with a 30-second header read timeout.
    fn default() -> Self {
        ServeOptions {
            tls: None,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The rustls config holds the private key: show only whether it is set.
        f.debug_struct("ServeOptions")
            .field("tls", &self.tls.is_some())
            .field("header_read_timeout", &self.header_read_timeout)
            .finish()
    }
}

/// Why a certificate and private key could not be turned into a TLS
/// configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read TLS file {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem {
        /// The malformed file.
        path: PathBuf,
        /// What the PEM parser reported.
        #[source]
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "no certificate in {}: expected a PEM \"BEGIN CERTIFICATE\" block",
        path.display()
    )]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "no private key in {}: expected a PEM PKCS#8 (\"BEGIN PRIVATE KEY\"), \
         PKCS#1 (\"BEGIN RSA PRIVATE KEY\") or SEC1 (\"BEGIN EC PRIVATE KEY\") block",
        path.display()
    )]
    NoPrivateKey {
        /// The key file.
        path: PathBuf,
    },
    /// The private key is not the one the certificate was issued for.
    #[error(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or key, for example an unsupported key
    /// type.
    #[error(
        "rustls rejected the certificate in {} or the private key in {}: {source}",
        cert.display(),
        key.display()
    )]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls reported.
        #[source]
        source: rustls::Error,
    },
}

/// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1) into a rustls server config that offers h2 and http/1.1 via ALPN.
///
/// The certificate file holds the server's certificate first, then any
/// intermediate certificates. The config uses the ring crypto provider
/// explicitly, whatever process-wide default provider may be installed.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_path_buf(),
        source,
    })?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }

    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let private_key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Pem {
            path: key.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: key.to_path_buf(),
        })?;

    let rejected = |source: rustls::Error| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }
        }
        source => TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets the requests in flight finish, and returns.
///
/// A failed `accept()` (for example when the process is out of file
/// descriptors) is logged and retried after a short pause; it never ends
/// the loop. Failed or timed-out TLS handshakes and broken connections are
/// logged at debug level and affect only their own connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder.http2().timer(TokioTimer::new());

    let shared = Arc::new(Shared {
        builder,
        app,
        acceptor: opts.tls.map(TlsAcceptor::from),
        header_read_timeout: opts.header_read_timeout,
    });
    let graceful = GracefulShutdown::new();
    // Tells connections still in their TLS handshake to give up; the
    // established ones are told by `graceful`.
    let (stop_tx, stop_rx) = watch::channel(());

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying shortly");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // Without TCP_NODELAY, a small response written after another on a
        // keep-alive connection waits for the client's delayed ACK: 40 ms.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        // The watcher is taken now, not after the handshake, so that
        // `graceful.shutdown()` also waits for this connection's task.
        let watcher = graceful.watcher();
        let stop = stop_rx.clone();
        tokio::spawn(Arc::clone(&shared).connection(tcp, peer, watcher, stop));
    }

    drop(listener);
    tracing::debug!(
        connections = graceful.count(),
        "shutting down: waiting for connections"
    );
    // Dropping the sender wakes every handshake waiting on `stop`.
    drop(stop_tx);
    graceful.shutdown().await;
    Ok(())
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    header_read_timeout: Duration,
}

impl Shared {
    /// Runs one accepted connection to its end.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        mut stop: watch::Receiver<()>,
    ) {
        let Some(acceptor) = &self.acceptor else {
            self.http(tcp, peer, watcher).await;
            return;
        };
        let handshake = tokio::select! {
            handshake = tokio::time::timeout(self.header_read_timeout, acceptor.accept(tcp)) => {
                handshake
            }
            _ = stop.changed() => {
                tracing::debug!(%peer, "shutting down: abandoning TLS handshake");
                return;
            }
        };
        match handshake {
            Ok(Ok(tls)) => self.http(tls, peer, watcher).await,
            // The error describes the protocol failure (bad record, unknown
            // CA alert, ...), never key material.
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_elapsed) => tracing::debug!(
                %peer,
                timeout = ?self.header_read_timeout,
                "TLS handshake timed out"
            ),
        }
    }

    /// Serves HTTP on an established (and, with TLS, decrypted) connection.
    async fn http<I>(&self, io: I, peer: SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let seen = Arc::new(AtomicBool::new(false));
        let service = TowerToHyperService::new(NoteRequest {
            inner: self.app.clone(),
            seen: Arc::clone(&seen),
        });
        let conn = watcher.watch(
            self.builder
                .serve_connection_with_upgrades(TokioIo::new(io), service),
        );
        tokio::pin!(conn);

        // hyper's HTTP/1 header read timeout only starts once the protocol
        // has been detected, and HTTP/2 has none: a client that sends
        // nothing, one byte, or a bare HTTP/2 preface would otherwise hold
        // the connection forever. So the first request must arrive within
        // the timeout; later ones are bounded by hyper.
        let deadline = tokio::time::sleep(self.header_read_timeout);
        let finished = tokio::select! {
            result = conn.as_mut() => Some(result),
            () = deadline => None,
        };
        let result = match finished {
            Some(result) => result,
            None if seen.load(Ordering::Acquire) => conn.await,
            None => {
                tracing::debug!(
                    %peer,
                    timeout = ?self.header_read_timeout,
                    "no request within the header read timeout; closing"
                );
                return;
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// A tower service that records that a request arrived, then passes it on.
#[derive(Clone)]
struct NoteRequest<S> {
    inner: S,
    seen: Arc<AtomicBool>,
}

impl<S, R> tower::Service<R> for NoteRequest<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.seen.store(true, Ordering::Release);
        self.inner.call(request)
    }
}
