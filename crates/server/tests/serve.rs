//! Tests of the server's own accept loop: TLS with a CA generated at test
//! time, the header read timeout against slow clients, graceful shutdown,
//! and the errors of loading TLS files.

use axum::routing::get;
use axum::Router;
use patchaudit_server::serve::{load_tls, serve, ServeOptions, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// The size of the slow handler's body: large enough to span many TCP
/// segments, so a truncated response would be noticed.
const SLOW_BODY_LEN: usize = 256 * 1024;

// ------------------------------------------------------------- fixtures

/// A CA and a server certificate for localhost and 127.0.0.1, on disk.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "patchaudit test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        cert,
        key,
    }
}

/// `GET /hello` answers "hi"; `GET /slow` signals `started`, sleeps 500 ms
/// and answers [`SLOW_BODY_LEN`] bytes.
fn app(started: Arc<Notify>) -> Router {
    Router::new().route("/hello", get(|| async { "hi" })).route(
        "/slow",
        get(move || {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "s".repeat(SLOW_BODY_LEN)
            }
        }),
    )
}

/// A server running on a loopback port.
struct Running {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
    slow_started: Arc<Notify>,
}

impl Running {
    async fn start(opts: ServeOptions) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let slow_started = Arc::new(Notify::new());
        let task = tokio::spawn(serve(
            listener,
            app(Arc::clone(&slow_started)),
            opts,
            async move {
                let _ = rx.await;
            },
        ));
        Running {
            addr,
            shutdown: Some(tx),
            task,
            slow_started,
        }
    }

    fn shut_down(&mut self) {
        let _ = self.shutdown.take().expect("shut down once").send(());
    }

    /// Waits for `serve` to return, at most `limit`.
    async fn finished(self, limit: Duration) -> io::Result<()> {
        tokio::time::timeout(limit, self.task)
            .await
            .expect("serve returned in time")
            .expect("serve did not panic")
    }
}

fn tls_opts(pki: &Pki, header_read_timeout: Duration) -> ServeOptions {
    ServeOptions {
        tls: Some(load_tls(&pki.cert, &pki.key).unwrap()),
        header_read_timeout,
    }
}

fn trusting_client(pki: &Pki, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

/// Reads until the server closes the connection (EOF or reset) and returns
/// what was read and how long it took; panics after 5 s.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("unexpected read error: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("the server closed the connection within 5 s");
    (received, start.elapsed())
}

/// Renders an error and all its sources.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The header read timeout of the timeout tests.
const SHORT: Duration = Duration::from_millis(300);

/// Asserts that a connection closed for being slow was not closed before
/// (nearly) [`SHORT`] had passed.
fn assert_not_early(elapsed: Duration) {
    assert!(
        elapsed >= SHORT - Duration::from_millis(50),
        "closed after only {elapsed:?}"
    );
}

// ------------------------------------------------------------------ TLS

#[tokio::test]
async fn tls_client_trusting_the_ca_gets_the_response() {
    let pki = pki();
    let mut srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;
    let client = trusting_client(&pki, srv.addr);

    let url = format!("https://localhost:{}/hello", srv.addr.port());
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hi");
    // A second request on the pooled keep-alive connection works too.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hi");

    srv.shut_down();
    srv.finished(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn tls_offers_h2_and_http11_via_alpn() {
    let pki = pki();
    let config = load_tls(&pki.cert, &pki.key).unwrap();
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );

    // A client that offers only h2 gets it.
    let srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;
    let tls = tls_connect(&pki, srv.addr, vec![b"h2".to_vec()]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn client_not_trusting_the_ca_fails_with_a_certificate_error() {
    let pki = pki();
    let srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;
    let client = reqwest::Client::builder()
        .resolve("localhost", srv.addr)
        .build()
        .unwrap();

    let url = format!("https://localhost:{}/hello", srv.addr.port());
    let err = client
        .get(&url)
        .send()
        .await
        .expect_err("an untrusted certificate must be refused");
    let chain = error_chain(&err).to_lowercase();
    assert!(
        chain.contains("certificate") && chain.contains("unknownissuer"),
        "{chain}"
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_response() {
    let pki = pki();
    let srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;

    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (received, _) = read_until_closed(&mut stream).await;
    assert!(
        !received.starts_with(b"HTTP/"),
        "got an HTTP response: {:?}",
        String::from_utf8_lossy(&received)
    );
    assert!(!received.windows(2).any(|w| w == b"hi"), "{received:?}");

    // The server is still healthy for real TLS clients.
    let r = trusting_client(&pki, srv.addr)
        .get(format!("https://localhost:{}/hello", srv.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ------------------------------------------------------ header timeouts

#[tokio::test]
async fn partial_request_headers_are_cut_off_after_the_timeout() {
    let srv = Running::start(ServeOptions {
        tls: None,
        header_read_timeout: SHORT,
    })
    .await;

    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (received, elapsed) = read_until_closed(&mut stream).await;
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    assert_not_early(elapsed);
}

#[tokio::test]
async fn silent_plain_connection_is_closed_after_the_timeout() {
    let srv = Running::start(ServeOptions {
        tls: None,
        header_read_timeout: SHORT,
    })
    .await;

    // Not a single byte: hyper is still detecting HTTP/1 versus HTTP/2 here.
    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let (received, elapsed) = read_until_closed(&mut stream).await;
    assert!(received.is_empty(), "{received:?}");
    assert_not_early(elapsed);
}

#[tokio::test]
async fn tls_client_that_never_sends_a_client_hello_is_closed_after_the_timeout() {
    let pki = pki();
    let srv = Running::start(tls_opts(&pki, SHORT)).await;

    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    let (received, elapsed) = read_until_closed(&mut stream).await;
    assert!(received.is_empty(), "{received:?}");
    assert_not_early(elapsed);
}

#[tokio::test]
async fn tls_client_that_sends_no_request_after_the_handshake_is_closed() {
    let pki = pki();
    let srv = Running::start(tls_opts(&pki, SHORT)).await;

    let mut tls = tls_connect(&pki, srv.addr, vec![b"http/1.1".to_vec()]).await;
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("the server closed the connection within 5 s");
    // A clean close_notify (Ok(0)) or an abrupt EOF are both fine.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let elapsed = start.elapsed();
    assert_not_early(elapsed);
}

#[tokio::test]
async fn slow_but_timely_client_is_served() {
    let srv = Running::start(ServeOptions {
        tls: None,
        header_read_timeout: Duration::from_secs(2),
    })
    .await;

    let mut stream = TcpStream::connect(srv.addr).await.unwrap();
    for part in [
        &b"GET /hello HTTP/1.1\r\n"[..],
        b"Host: x\r\n",
        b"Connection: close\r\n\r\n",
    ] {
        stream.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (received, _) = read_until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\nhi"), "{text}");
}

// ------------------------------------------------------ graceful shutdown

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let pki = pki();
    let mut srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;
    let client = trusting_client(&pki, srv.addr);
    let url = format!("https://localhost:{}/slow", srv.addr.port());

    let request = tokio::spawn(async move {
        let r = client.get(&url).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    srv.slow_started.notified().await;
    srv.shut_down();

    let (status, body) = request.await.unwrap().expect("the response arrives");
    assert_eq!(status, 200);
    assert_eq!(body.len(), SLOW_BODY_LEN);
    assert!(body.iter().all(|&b| b == b's'));

    let addr = srv.addr;
    srv.finished(Duration::from_secs(5)).await.unwrap();
    // The listener is closed: new connections are refused.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_idle_or_handshaking_connections() {
    let pki = pki();
    // Long timeouts: only shutdown itself can end these connections quickly.
    let mut tls_srv = Running::start(tls_opts(&pki, Duration::from_secs(30))).await;
    let mut plain_srv = Running::start(ServeOptions::default()).await;

    // Stuck before the ClientHello.
    let _silent_tls = TcpStream::connect(tls_srv.addr).await.unwrap();
    // Handshake done, no request yet.
    let _idle_tls = tls_connect(&pki, tls_srv.addr, vec![b"http/1.1".to_vec()]).await;
    // No bytes at all on plain HTTP.
    let _silent_plain = TcpStream::connect(plain_srv.addr).await.unwrap();
    // Keep-alive connection after a completed request.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{}/hello", plain_srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hi");
    // Let the server tasks take up their connections.
    tokio::time::sleep(Duration::from_millis(100)).await;

    tls_srv.shut_down();
    plain_srv.shut_down();
    tls_srv.finished(Duration::from_secs(3)).await.unwrap();
    plain_srv.finished(Duration::from_secs(3)).await.unwrap();
}

// ------------------------------------------------------------ load_tls

#[test]
fn load_tls_accepts_the_generated_pair() {
    let pki = pki();
    load_tls(&pki.cert, &pki.key).unwrap();
}

#[test]
fn load_tls_names_a_missing_file() {
    let pki = pki();
    let missing = pki.dir.path().join("missing.crt");
    let err = load_tls(&missing, &pki.key).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );

    let missing = pki.dir.path().join("missing.key");
    let err = load_tls(&pki.cert, &missing).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn load_tls_names_a_file_without_a_certificate() {
    let pki = pki();
    // A key where the certificate should be, and a text file.
    for content in [std::fs::read_to_string(&pki.key).unwrap(), "hello\n".into()] {
        let not_cert = pki.dir.path().join("not-a-cert.pem");
        std::fs::write(&not_cert, content).unwrap();
        let err = load_tls(&not_cert, &pki.key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&*not_cert.to_string_lossy()), "{msg}");
        assert!(msg.contains("no certificate"), "{msg}");
    }
}

#[test]
fn load_tls_names_a_key_file_without_a_key() {
    let pki = pki();
    // The certificate where the key should be.
    let not_key = pki.dir.path().join("not-a-key.pem");
    std::fs::copy(&pki.cert, &not_key).unwrap();
    let err = load_tls(&pki.cert, &not_key).unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&*not_key.to_string_lossy()), "{msg}");
    assert!(msg.contains("no private key"), "{msg}");
}

#[test]
fn load_tls_names_a_key_that_does_not_match_the_certificate() {
    let pki = pki();
    let other_key = pki.dir.path().join("other.key");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let err = load_tls(&pki.cert, &other_key).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&*other_key.to_string_lossy()), "{msg}");
    assert!(msg.contains(&*pki.cert.to_string_lossy()), "{msg}");
}

#[test]
fn load_tls_names_a_malformed_pem_file() {
    let pki = pki();
    let broken = pki.dir.path().join("broken.crt");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64 !!!\n").unwrap();
    let err = load_tls(&broken, &pki.key).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*broken.to_string_lossy()),
        "{err}"
    );
}

// ------------------------------------------------------------- helpers

/// Completes a TLS handshake with the server, trusting the test CA and
/// offering `alpn`.
async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    alpn: Vec<Vec<u8>>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}
