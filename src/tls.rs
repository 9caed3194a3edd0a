//! TLS: serving https and wss directly from PEM files (`[tls]`), with the certificate and key
//! reloaded on SIGHUP (a renewed certificate is picked up without a restart; connections that
//! are open keep the one they started with).

use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::error::Error;

/// The current acceptor; replaced by [`Tls::reload`].
#[derive(Clone)]
pub struct Tls {
    config: TlsConfig,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl Tls {
    /// Loads the certificate and key named by `config`.
    pub fn load(config: &TlsConfig) -> Result<Tls, Error> {
        let acceptor = acceptor(config)?;
        Ok(Tls {
            config: config.clone(),
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; on failure the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        let acceptor = acceptor(&self.config)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }
}

fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, Error> {
    let certs = load_certs(&config.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| Error::Internal(format!("tls.key_file {}: {e}", config.key_file.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Internal(format!("tls: certificate and key do not fit: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Internal(format!("tls.cert_file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Internal(format!(
            "tls.cert_file {}: no certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}
