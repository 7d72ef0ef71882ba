//! The kubelet API under hostile requests, on a node registered with the
//! real control plane: path traversal and odd encodings in
//! `/containerLogs`, bad query strings, huge heads, endless bodies, and
//! many slow or idle clients. Each is refused or cut off, other clients
//! are served meanwhile, and the node's memory stays bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::cluster::{TestNode, cluster, push, wasm_pod};
use crate::e2e::kube::curl;
use crate::fixtures::guests;
use crate::registry::{RegistrySetup, TestRegistry};

const LONG: Duration = Duration::from_secs(60);
/// The server's limits (kubelet/src/api/server.rs).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The node serves a self-signed certificate at first: any is accepted
/// (what is tested here is the server, not its certificate).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client with the cluster admin's certificate, offering `alpn`.
fn admin_tls(alpn: &[u8]) -> Arc<ClientConfig> {
    let pki = cluster().dir.join("pki");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(pki.join("admin.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("admin.key")).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to the node, handshake done.
fn connect(port: u16, alpn: &[u8]) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let connection =
        ClientConnection::new(admin_tls(alpn), ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    let mut tls = StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Whether a read says the peer has closed (`Some`), or nothing came in
/// a second (`None`); bytes that come are returned.
fn poll_closed(stream: &mut impl Read, seen: &mut Vec<u8>) -> Option<()> {
    let mut buf = [0u8; 16 * 1024];
    match stream.read(&mut buf) {
        Ok(0) => Some(()),
        Ok(n) => {
            seen.extend_from_slice(&buf[..n]);
            None
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(()),
    }
}

/// Reads until the server closes (or `limit` passes): what it sent, and
/// how long after `since` it closed.
fn until_closed(stream: &mut impl Read, since: Instant, limit: Duration) -> (Vec<u8>, Duration) {
    let mut seen = Vec::new();
    while since.elapsed() < limit {
        if poll_closed(stream, &mut seen).is_some() {
            return (seen, since.elapsed());
        }
    }
    panic!(
        "the server kept the connection open for {:?}; it sent {:?}",
        since.elapsed(),
        String::from_utf8_lossy(&seen)
    );
}

fn status_line(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn kube_the_kubelet_api_refuses_or_bounds_hostile_requests_and_serves_others() {
    let c = cluster();
    let registry = TestRegistry::start(RegistrySetup::default());
    let hello = push(&registry, &guests().hello, "hostile/hello:v1");
    let node = TestNode::start("hostile-api", &registry, &[]);
    let ns = c.namespace("hostile-api");
    c.apply(
        &ns,
        &wasm_pod("hello", &node.name, &hello, &["confidential"], "Never"),
    );
    c.wait_phase(&ns, "hello", "Succeeded", LONG);
    let pid = node.pid();
    let rss_before = rss_kib(pid);

    let base = format!("https://127.0.0.1:{}", node.port);
    let pki = c.dir.join("pki");
    let admin_cert = pki.join("admin.crt").display().to_string();
    let admin_key = pki.join("admin.key").display().to_string();
    let get = |path: &str| {
        curl(
            &["--path-as-is", "--cert", &admin_cert, "--key", &admin_key],
            &format!("{base}{path}"),
        )
    };

    // The way in that is allowed.
    let (code, body) = get(&format!("/containerLogs/{ns}/hello/main"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("arg: confidential"), "{body}");

    // Traversal, as segments and encoded, at every position; never a file
    // off the node's table, never this pod's log by another name.
    for path in [
        format!("/containerLogs/{ns}/hello/../../../../etc/passwd"),
        format!("/containerLogs/{ns}/hello/main/../../../../../etc/passwd"),
        format!("/containerLogs/{ns}/hello/..%2f..%2f..%2f..%2fetc%2fpasswd"),
        format!("/containerLogs/{ns}/hello/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        format!("/containerLogs/{ns}/..%2fhello/main"),
        format!("/containerLogs/{ns}/hello%2f..%2fhello/main"),
        "/containerLogs/%2e%2e/hello/main".to_owned(),
        format!("/containerLogs/{ns}/./hello/main"),
        format!("/containerLogs/{ns}/hello/main%00"),
        format!("/containerLogs/{ns}/hello/main%2500"),
        format!("/containerLogs/{ns}/hello/MAIN"),
        format!("/containerLogs/{ns}/hello/%6dain"),
        format!("/containerLogs/{ns}/hello/main%c0%af"),
        format!("/containerLogs/{ns}/hello/main..%5c..%5cetc"),
        format!("/containerLogs/{ns}/hello/{}", "a".repeat(5000)),
        format!("/containerLogs/{ns}//hello/main"),
        format!("/containerLogs/{ns}/hello"),
        format!("/containerLogs/{ns}/hello/main/extra"),
        format!("/%63ontainerLogs/{ns}/hello/main"),
        format!("/metrics/../containerLogs/{ns}/hello/main"),
        format!("/healthz/../containerLogs/{ns}/hello/main"),
    ] {
        let (code, body) = get(&path);
        assert!(code == 400 || code == 404, "{path}: {code} {body}");
        assert!(!body.contains("root:"), "{path}: {body}");
        assert!(!body.contains("confidential"), "{path}: {body}");
        assert!(body.len() < 1000, "{path}: {} bytes", body.len());
    }
    // The names that are not Kubernetes names are refused by name.
    let (code, body) = get(&format!("/containerLogs/{ns}/hello/..%2f..%2fetc%2fpasswd"));
    assert_eq!(code, 400);
    assert!(body.starts_with("invalid container name"), "{body}");
    let (code, body) = get(&format!("/containerLogs/{ns}/..%2fhello/main"));
    assert_eq!(code, 400);
    assert!(body.starts_with("invalid pod name"), "{body}");

    // Query strings: bad values are refused by name; extreme ones bounded.
    let logs = format!("/containerLogs/{ns}/hello/main");
    for (query, names) in [
        ("tailLines=abc", "tailLines"),
        ("tailLines=99999999999999999999999", "tailLines"),
        ("limitBytes=0", "limitBytes"),
        ("limitBytes=-1", "limitBytes"),
        ("sinceSeconds=x", "sinceSeconds"),
        ("sinceSeconds=9223372036854775807", "sinceSeconds"),
        ("sinceTime=yesterday", "sinceTime"),
        ("sinceTime=%ZZ%00", "sinceTime"),
    ] {
        let (code, body) = get(&format!("{logs}?{query}"));
        assert_eq!(code, 400, "{query}: {body}");
        assert!(body.contains(names), "{query}: {body}");
    }
    let (code, body) = get(&format!("{logs}?limitBytes=3&tailLines=-5"));
    assert_eq!((code, body.len()), (200, 0), "{body}");
    let (code, body) = get(&format!("{logs}?limitBytes=3"));
    assert_eq!((code, body.as_str()), (200, "arg"));
    let many = "follow=false&".repeat(2000);
    let (code, body) = get(&format!("{logs}?{many}"));
    assert!(code == 200 || code == 414 || code == 431, "{code} {body}");

    // Huge heads: a 1 MiB header and a 200 KiB path, on 20 connections at
    // once; each is refused, the server reading at most its limit.
    let huge: Vec<std::thread::JoinHandle<String>> = (0..20)
        .map(|i| {
            let port = node.port;
            std::thread::spawn(move || {
                let mut tls = connect(port, b"http/1.1");
                let head = if i % 2 == 0 {
                    format!(
                        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                        "a".repeat(1 << 20)
                    )
                } else {
                    format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200 << 10))
                };
                // The server may close before all of it is sent.
                let _ = tls.write_all(head.as_bytes()).and_then(|()| tls.flush());
                let (response, _) = until_closed(&mut tls, Instant::now(), LONG);
                status_line(&response)
            })
        })
        .collect();
    for handle in huge {
        let status = handle.join().unwrap();
        assert!(
            status.is_empty() || status.contains(" 431 ") || status.contains(" 414 "),
            "{status}"
        );
    }

    // An endless chunked body to a route that takes none, and a GET that
    // announces 10 GB: answered without reading them, then closed.
    for (head, expected) in [
        (
            format!(
                "POST /exec/{ns}/hello/main?command=sh HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            " 400 ",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n".to_owned(),
            " 200 ",
        ),
    ] {
        let mut tls = connect(node.port, b"http/1.1");
        tls.write_all(head.as_bytes()).unwrap();
        let start = Instant::now();
        let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "b".repeat(64 << 10));
        let mut response = Vec::new();
        let mut sent = 0usize;
        // Keep sending until the server stops taking it.
        while start.elapsed() < LONG {
            let body: &[u8] = if head.contains("chunked") {
                chunk.as_bytes()
            } else {
                &[b'c'; 64 << 10]
            };
            if tls.write_all(body).and_then(|()| tls.flush()).is_err() {
                break;
            }
            sent += body.len();
            if poll_closed(&mut tls, &mut response).is_some() {
                break;
            }
            if sent > 512 << 20 {
                panic!("the server took 512 MiB of a body it has no use for");
            }
        }
        assert!(
            status_line(&response).contains(expected),
            "{head}: {}",
            String::from_utf8_lossy(&response)
        );
    }

    // Slow and idle clients: TCP without TLS, TLS sending a head a byte a
    // second, HTTP/2 connections that say nothing after their preface.
    let started = Instant::now();
    let bare: Vec<_> = (0..200)
        .map(|_| {
            let port = node.port;
            std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let since = Instant::now();
                until_closed(&mut tcp, since, LONG).1
            })
        })
        .collect();
    let dripping: Vec<_> = (0..40)
        .map(|_| {
            let port = node.port;
            std::thread::spawn(move || {
                let mut tls = connect(port, b"http/1.1");
                let since = Instant::now();
                let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
                let mut seen = Vec::new();
                for byte in head.iter().cycle() {
                    if since.elapsed() > LONG {
                        panic!("a head dripped for {:?} without being cut off", since.elapsed());
                    }
                    if tls.write_all(&[*byte]).and_then(|()| tls.flush()).is_err() {
                        break;
                    }
                    if poll_closed(&mut tls, &mut seen).is_some() {
                        break;
                    }
                }
                since.elapsed()
            })
        })
        .collect();
    let idle: Vec<_> = (0..20)
        .map(|_| {
            let port = node.port;
            std::thread::spawn(move || {
                let mut tls = connect(port, b"h2");
                assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
                let since = Instant::now();
                // The preface and an empty SETTINGS frame; then the server's
                // SETTINGS are acknowledged, and nothing more is said.
                tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                    .unwrap();
                tls.flush().unwrap();
                let mut seen = Vec::new();
                while seen.len() < 9 {
                    assert!(poll_closed(&mut tls, &mut seen).is_none(), "closed at once");
                }
                tls.write_all(b"\0\0\0\x04\x01\0\0\0\0").unwrap();
                tls.flush().unwrap();
                until_closed(&mut tls, since, LONG + IDLE_TIMEOUT).1
            })
        })
        .collect();
    // Meanwhile others are served.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(get("/healthz"), (200, "ok".to_owned()));
        let (code, body) = get(&logs);
        assert_eq!(code, 200, "{body}");
    }
    c.apply(
        &ns,
        &wasm_pod("meanwhile", &node.name, &hello, &["meanwhile"], "Never"),
    );
    c.wait_phase(&ns, "meanwhile", "Succeeded", LONG);
    // Each slow client is cut off at its limit (measured from when it
    // connected), not before and not much after.
    let within = |what: &str, took: Duration, limit: Duration| {
        assert!(
            took >= limit - Duration::from_secs(1) && took <= limit + Duration::from_secs(12),
            "{what} was closed after {took:?}; the limit is {limit:?}"
        );
    };
    for handle in bare {
        within(
            "a TCP connection without TLS",
            handle.join().unwrap(),
            HANDSHAKE_TIMEOUT,
        );
    }
    for handle in dripping {
        within(
            "a head sent a byte at a time",
            handle.join().unwrap(),
            HEADER_TIMEOUT,
        );
    }
    for handle in idle {
        within(
            "an idle HTTP/2 connection",
            handle.join().unwrap(),
            IDLE_TIMEOUT,
        );
    }
    assert!(started.elapsed() < IDLE_TIMEOUT + LONG);

    // The node took all of it in bounded memory and still serves.
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the node's RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(get("/healthz"), (200, "ok".to_owned()));
}
