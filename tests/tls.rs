//! TLS served directly: an https request and a wss session against a self-signed certificate
//! made by the test, and the certificate reloaded on SIGHUP.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

use crate::common::TestServer;

/// A self-signed certificate for localhost, written as PEM files; returns its DER form.
fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).expect("cert file");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key file");
    certified.cert.der().clone()
}

/// A TLS client that trusts exactly `cert`.
fn connector(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_stream(
    server: &TestServer,
    cert: &CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    connector(cert).connect(name, tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_wss_and_reloads_the_certificate_on_sighup() {
    let certs = tempfile::tempdir().expect("tempdir");
    let first = write_certificate(certs.path());
    let server = TestServer::start_with(|config| {
        config.tls.cert_file = certs.path().join("cert.pem");
        config.tls.key_file = certs.path().join("key.pem");
    })
    .await;

    // https: a plain HTTP/1.1 request over the TLS stream.
    let mut https = tls_stream(&server, &first).await.expect("TLS handshake");
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.expect("response");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"ok\""), "{answer}");

    // Plain HTTP on a TLS port gets nowhere.
    let mut plain = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // wss: the native protocol over TLS.
    let password = server.admin_password();
    let token = server.access_token_over_tls(&first, &password).await;
    let stream = tls_stream(&server, &first).await.expect("TLS handshake");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost/ws?token={token}"), stream)
            .await
            .expect("wss handshake");
    let welcome: Value = match ws.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).expect("json"),
        other => panic!("no welcome: {other:?}"),
    };
    assert_eq!(welcome["data"]["status"], "connected", "{welcome}");
    ws.send(Message::text(
        json!({"type": "Ping", "id": "p"}).to_string(),
    ))
    .await
    .expect("send");
    let _ = ws.close(None).await;

    // A new certificate in the same files, then SIGHUP: new handshakes present it.
    let second = write_certificate(certs.path());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if tls_stream(&server, &second).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up after SIGHUP"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The old certificate is no longer presented.
    assert!(tls_stream(&server, &first).await.is_err());
    server.stop().await;
}

impl TestServer {
    /// Logs in as admin over https and returns the access token.
    async fn access_token_over_tls(
        &self,
        cert: &CertificateDer<'static>,
        password: &str,
    ) -> String {
        let mut stream = tls_stream(self, cert).await.expect("TLS handshake");
        let body = json!({"username": "admin", "password": password}).to_string();
        let request = format!(
            "POST /api/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("response");
        let (_, json) = answer.split_once("\r\n\r\n").expect("body");
        let value: Value = serde_json::from_str(json).expect("json body");
        value["access"].as_str().expect("access").to_owned()
    }
}
