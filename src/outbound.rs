//! Outbound HTTPS for requests natter makes to addresses it is given (Web Push endpoints,
//! webhook URLs): one POST per call over hyper's HTTP/1 client and rustls (ring) with the
//! system's CA store, bounded in time and in the response it reads, no redirects followed.
//!
//! The address rule: the host is resolved once, and the request is refused when ANY of its
//! addresses is loopback, private, link-local, CGNAT, unspecified, multicast, broadcast,
//! documentation or otherwise not a public unicast address ([`is_forbidden`]). The connection
//! then goes to one of the checked addresses itself, so a second lookup cannot point it
//! somewhere else (DNS rebinding). Only `https` is spoken; the test-only `allow_private`
//! switch lifts the address rule and also permits `http` to a loopback address.
//!
//! It imports nothing of the crate, so the push and webhook deliveries can share it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How an [`Outbound`] behaves.
#[derive(Debug, Clone)]
pub struct OutboundOptions {
    /// Lifts the address rule and permits `http://` to loopback: for tests only, where the
    /// receiver listens on 127.0.0.1.
    pub allow_private: bool,
    /// The whole request: lookup, connect, TLS, sending and reading the response.
    pub timeout: Duration,
    /// At most this much of a response body is kept; the rest is not read.
    pub max_response_bytes: usize,
}

/// A response: the status, the headers (names in lower case) and the start of the body.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// At most [`OutboundOptions::max_response_bytes`] long.
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL is not one natter sends to (scheme, form, user info).
    #[error("refused url: {0}")]
    Url(String),
    /// The host has an address the address rule forbids.
    #[error("refused address {address} of host {host}: not a public address")]
    Refused { host: String, address: IpAddr },
    #[error("dns lookup of {host} failed: {reason}")]
    Dns { host: String, reason: String },
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("tls failed: {0}")]
    Tls(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("http protocol error: {0}")]
    Protocol(String),
}

impl OutboundError {
    /// True when trying again later cannot help: the URL or its addresses are refused.
    pub fn is_permanent(&self) -> bool {
        matches!(self, OutboundError::Url(_) | OutboundError::Refused { .. })
    }
}

/// The outbound client; a cheap handle (clone it freely).
#[derive(Clone)]
pub struct Outbound {
    inner: Arc<Inner>,
}

struct Inner {
    options: OutboundOptions,
    /// None only if rustls refused the configuration (logged at start).
    tls: Option<TlsConnector>,
}

/// A URL taken apart: what [`Outbound::post`] connects to and asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Without brackets for an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// `host` or `host:port` as the `Host` header says it.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

/// Takes `url` apart and checks its form: `https` (or, with `allow_private`, `http` to a
/// loopback address), a host, no user info. The addresses are checked at connect time.
pub fn parse_target(url: &str, allow_private: bool) -> Result<Target, OutboundError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| OutboundError::Url(format!("not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(OutboundError::Url("the scheme must be https".into())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| OutboundError::Url("no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(OutboundError::Url("user info is not allowed".into()));
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(OutboundError::Url("no host".into()));
    }
    if !https {
        let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !(allow_private && loopback) {
            return Err(OutboundError::Url("the scheme must be https".into()));
        }
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Target {
        https,
        host: host.to_string(),
        port,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}

/// The address rule: true for every address natter must not send to (anything but public
/// unicast), including the IPv4-mapped, IPv4-compatible and NAT64 forms of such IPv4 addresses.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network" 0/8
        || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking 198.18/15
        || a >= 240 // reserved 240/4
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated) and NAT64 64:ff9b::/96 carry an IPv4 address.
    let octets = ip.octets();
    let embedded = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return forbidden_v4(embedded);
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation 2001:db8::/32
}

impl Outbound {
    /// A client with the system's CA certificates (none found: every https request fails
    /// with [`OutboundError::Tls`], and a warning says so once here).
    pub fn new(options: OutboundOptions) -> Outbound {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "outbound: reading the system's CA certificates");
        }
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("outbound: no CA certificate found in the system's store");
        }
        Outbound::with_roots(options, roots)
    }

    /// A client trusting exactly `roots` (tests use their own CA).
    pub fn with_roots(options: OutboundOptions, roots: RootCertStore) -> Outbound {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = match ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => {
                let mut config = builder.with_root_certificates(roots).with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(TlsConnector::from(Arc::new(config)))
            }
            // Not reached with ring's provider; https requests would then fail with Tls.
            Err(error) => {
                tracing::error!(%error, "outbound: tls configuration");
                None
            }
        };
        Outbound {
            inner: Arc::new(Inner { options, tls }),
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &OutboundOptions {
        &self.inner.options
    }

    /// POSTs `body` with `headers` to `url` and returns the response, whatever its status
    /// (a redirect is returned, not followed). `Host` and `Content-Length` are set here.
    pub async fn post(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<OutboundResponse, OutboundError> {
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, self.post_untimed(url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout(timeout)),
        }
    }

    async fn post_untimed(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<OutboundResponse, OutboundError> {
        let allow_private = self.inner.options.allow_private;
        let target = parse_target(url, allow_private)?;
        let request = build_request(&target, headers, body)?;
        let addresses = self.resolve(&target).await?;
        let tcp = connect(&addresses).await?;
        if target.https {
            let name = match target.host.parse::<IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(target.host.clone())
                    .map_err(|e| OutboundError::Url(format!("host name: {e}")))?,
            };
            let connector = self
                .inner
                .tls
                .as_ref()
                .ok_or_else(|| OutboundError::Tls("no tls configuration".into()))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| OutboundError::Tls(e.to_string()))?;
            exchange(tls, request, self.inner.options.max_response_bytes).await
        } else {
            exchange(tcp, request, self.inner.options.max_response_bytes).await
        }
    }

    /// Every address of the host, each checked against the address rule.
    async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, OutboundError> {
        let addresses: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| OutboundError::Dns {
                    host: target.host.clone(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(OutboundError::Dns {
                host: target.host.clone(),
                reason: "no address".into(),
            });
        }
        if !self.inner.options.allow_private
            && let Some(bad) = addresses.iter().find(|a| is_forbidden(a.ip()))
        {
            return Err(OutboundError::Refused {
                host: target.host.clone(),
                address: bad.ip(),
            });
        }
        Ok(addresses)
    }
}

fn build_request(
    target: &Target,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, OutboundError> {
    let length = body.len();
    let mut request = Request::post(target.path_and_query.as_str())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| OutboundError::Url(format!("path: {e}")))?;
    let map = request.headers_mut();
    let host = HeaderValue::from_str(&target.authority)
        .map_err(|e| OutboundError::Url(format!("host: {e}")))?;
    map.insert(hyper::header::HOST, host);
    map.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(length));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| OutboundError::Protocol(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|e| OutboundError::Protocol(format!("header {name} value: {e}")))?;
        map.append(name, value);
    }
    Ok(request)
}

/// Connects to the checked addresses in turn; the first that answers wins.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, OutboundError> {
    let mut last = String::from("no address");
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(OutboundError::Connect(last))
}

/// One request on a fresh HTTP/1 connection, driven here (no task is left behind).
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    max_response_bytes: usize,
) -> Result<OutboundResponse, OutboundError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| OutboundError::Protocol(e.to_string()))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body_stream = response.into_body();
        let mut body = Vec::new();
        while body.len() < max_response_bytes {
            let Some(frame) = body_stream.frame().await else {
                break;
            };
            let frame = frame.map_err(|e| classify(&e))?;
            if let Ok(data) = frame.into_data() {
                let room = max_response_bytes - body.len();
                body.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    };
    tokio::pin!(connection);
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut connection => match ended {
            Err(e) => Err(classify(&e)),
            // The connection closed before the response was read: finish reading what came.
            Ok(()) => exchange.await,
        },
    }
}

fn classify(error: &hyper::Error) -> OutboundError {
    OutboundError::Protocol(error.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forbidden_addresses() {
        for text in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.1.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(is_forbidden(ip(text)), "{text} should be forbidden");
        }
    }

    #[test]
    fn public_addresses() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "2a00:1450:4001::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!is_forbidden(ip(text)), "{text} should be allowed");
        }
    }

    #[test]
    fn url_forms() {
        let t = parse_target("https://push.example.com/wpush/v2/abc?x=1", false).unwrap();
        assert!(t.https);
        assert_eq!(t.host, "push.example.com");
        assert_eq!(t.port, 443);
        assert_eq!(t.path_and_query, "/wpush/v2/abc?x=1");
        let t = parse_target("https://[2001:db8::1]:8443", false).unwrap();
        assert_eq!(t.host, "2001:db8::1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.path_and_query, "/");
        for bad in [
            "http://push.example.com/",
            "http://127.0.0.1:9/",
            "ftp://x/",
            "https://user:pw@push.example.com/",
            "/relative",
            "not a url",
        ] {
            assert!(
                matches!(parse_target(bad, false), Err(OutboundError::Url(_))),
                "{bad}"
            );
        }
        // The test switch permits http to loopback only.
        assert!(parse_target("http://127.0.0.1:9/", true).is_ok());
        assert!(parse_target("http://[::1]:9/", true).is_ok());
        assert!(parse_target("http://example.com/", true).is_err());
    }

    fn client(allow_private: bool) -> Outbound {
        Outbound::with_roots(
            OutboundOptions {
                allow_private,
                timeout: Duration::from_secs(10),
                max_response_bytes: 16,
            },
            RootCertStore::empty(),
        )
    }

    #[tokio::test]
    async fn loopback_is_refused_with_the_address() {
        let error = client(false)
            .post("https://127.0.0.1:9/x", vec![], vec![])
            .await
            .unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains("127.0.0.1"), "{error}");
        let error = client(false)
            .post("https://localhost:9/x", vec![], vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                OutboundError::Refused { .. } | OutboundError::Dns { .. }
            ),
            "{error}"
        );
    }

    /// A one-shot HTTP/1 server on loopback answering `response`; returns the port and what
    /// it received.
    async fn one_shot(response: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the 5-byte body the test sends.
            while !received.ends_with(b"hello") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response).await.unwrap();
            stream.shutdown().await.unwrap();
            received
        });
        (port, task)
    }

    #[tokio::test]
    async fn posts_and_bounds_the_response() {
        let (port, server) = one_shot(
            b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789",
        )
        .await;
        let response = client(true)
            .post(
                &format!("http://127.0.0.1:{port}/push/abc"),
                vec![("TTL".into(), "60".into())],
                b"hello".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.header("location"), Some("/m/1"));
        assert_eq!(response.body, b"0123456789012345");
        let received = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            received.starts_with("POST /push/abc HTTP/1.1\r\n"),
            "{received}"
        );
        assert!(received.to_ascii_lowercase().contains("ttl: 60\r\n"));
        assert!(received.contains(&format!("host: 127.0.0.1:{port}\r\n")));
        assert!(received.contains("content-length: 5\r\n"));
    }

    #[tokio::test]
    async fn https_with_a_trusted_certificate() {
        use tokio_rustls::rustls::ServerConfig;
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // The untrusting client's handshake fails first; the trusting one's is answered.
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let mut received = Vec::new();
                while !received.ends_with(b"hello") {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    received.extend_from_slice(&buf[..n]);
                }
                stream
                    .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                return;
            }
        });
        let url = format!("https://127.0.0.1:{port}/p");
        let error = client(true)
            .post(&url, vec![], b"hello".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(error, OutboundError::Tls(_)), "{error}");
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let trusting = Outbound::with_roots(client(true).options().clone(), roots);
        let response = trusting
            .post(&url, vec![], b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let (port, _server) = one_shot(
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://10.0.0.1/\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        let response = client(true)
            .post(
                &format!("http://127.0.0.1:{port}/"),
                vec![],
                b"hello".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(response.status, 307);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let outbound = Outbound::with_roots(
            OutboundOptions {
                allow_private: true,
                timeout: Duration::from_millis(200),
                max_response_bytes: 16,
            },
            RootCertStore::empty(),
        );
        let error = outbound
            .post(&format!("http://127.0.0.1:{port}/"), vec![], vec![])
            .await
            .unwrap_err();
        assert!(matches!(error, OutboundError::Timeout(_)), "{error}");
        drop(listener);
    }
}
