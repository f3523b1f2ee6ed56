//! The delivery client's connector: TCP for an `http://` receiver, TLS
//! (rustls) for an `https://` one, and which TLS failure a failed attempt
//! was.
//!
//! - **Only TLS for `https://`.** The connector of an `https://` receiver is
//!   built `https_only`: it refuses any other scheme, and nothing falls back
//!   to plain text (a receiver speaking plain HTTP on that port fails the
//!   handshake, `handshake`). Redirects are not followed (`super::deliver`),
//!   so the configured URL is the only one ever requested.
//! - **Verified for the host.** rustls' webpki verifier checks the chain up to
//!   a trusted root, the validity period, and that the certificate names the
//!   URL's host (a DNS name or an IP address); no option turns it off.
//! - **Trusted roots**: the platform's (rustls-native-certs: the system's CA
//!   bundle, `SSL_CERT_FILE`/`SSL_CERT_DIR` when set) plus `[events]
//!   ca_file`'s ([`crate::config::CaFile`], read and parsed with the
//!   configuration). rustls-platform-verifier was the other candidate: on
//!   Linux, where the daemon runs, it is this same webpki verification over
//!   the same bundle, and its gains (the OS's own verifier, revocation and
//!   enterprise policy) are macOS, Windows and Android's; native-certs gives
//!   the root store directly, which is where `ca_file` is added.
//! - **`ring`** as the crypto provider (set here, not process-wide): it
//!   builds with the C compiler alone; aws-lc-rs needs cmake (and clang on
//!   some targets). TLS 1.2 and 1.3, HTTP/1.1 (no ALPN).
//! - The TLS handshake runs inside the attempt's `events.timeout`, like the
//!   connect, send and answer (`super::deliver::post`).
//!
//! A failed handshake is sorted into [`TlsFailure`] from the error chain
//! (hyper-util's client error, the connector's boxed `io::Error`, rustls'
//! `Error`): logged once per kind while deliveries fail and counted per
//! attempt (`assetgate_events_tls_errors_total{reason}`, `super::metrics`).

use std::error::Error as StdError;
use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use super::EventsConfig;

/// The delivery client's connector.
pub type Connector = HttpsConnector<HttpConnector>;

/// Builds the connector for `cfg.url`. Blocking: it reads the platform's CA
/// bundle for an `https://` receiver (run it off the async workers).
pub fn connector(cfg: &EventsConfig) -> Connector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(cfg.timeout));
    http.set_nodelay(true);
    // The TLS layer above takes `https://`; the TCP layer must let it through.
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new().with_tls_config(client_config(roots(cfg)));
    let builder = if cfg.url.is_https() {
        builder.https_only()
    } else {
        // No roots (see `roots`): no TLS connection could be made, and none is
        // asked for: the one URL requested is `http://`.
        builder.https_or_http()
    };
    builder.enable_http1().wrap_connector(http)
}

/// rustls with the `ring` provider, its safe default versions (1.2, 1.3),
/// the given roots, no client certificate.
///
/// rustls 0.23.48 marks `ring::default_provider` deprecated because ring has
/// no post-quantum key exchange (X25519MLKEM768 is aws-lc-rs' only): the key
/// exchange here is X25519, P-256 or P-384. Chosen knowingly (module doc):
/// ring builds with the C compiler alone and is what the tests' certificates
/// are made with; moving to aws-lc-rs is a feature swap in Cargo.toml and
/// this one line.
#[allow(deprecated)]
fn client_config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The platform's roots plus `ca_file`'s, for an `https://` receiver (none
/// for `http://`), and one line saying what is trusted.
fn roots(cfg: &EventsConfig) -> RootCertStore {
    let mut store = RootCertStore::empty();
    if !cfg.url.is_https() {
        return store;
    }
    let receiver = cfg.url.origin();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(receiver = %receiver, error = %e, "cannot read some of the platform's CA certificates");
    }
    let (platform, unusable) = store.add_parsable_certificates(native.certs);
    if unusable > 0 {
        tracing::debug!(unusable, "platform CA certificates skipped (not usable as roots)");
    }
    let from_file = match &cfg.ca_file {
        // Each was checked to be usable when the configuration was read.
        Some(f) => store.add_parsable_certificates(f.certs().iter().cloned()).0,
        None => 0,
    };
    let ca_file = cfg
        .ca_file
        .as_ref()
        .map_or_else(|| "<not set>".to_string(), |f| f.path().display().to_string());
    if store.is_empty() {
        tracing::error!(
            receiver = %receiver,
            "no trusted CA for the events receiver (the platform has none, events.ca_file is not set): every delivery will fail; install the system's CA bundle or set events.ca_file"
        );
    } else {
        tracing::info!(
            receiver = %receiver,
            platform_roots = platform,
            ca_file_roots = from_file,
            ca_file = %ca_file,
            "events go over TLS only; the receiver's certificate is verified for its host"
        );
    }
    store
}

/// What kind of TLS failure ended an attempt: the `reason` label of
/// `assetgate_events_tls_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The chain ends at no trusted root (a private CA not in `ca_file`, a
    /// self-signed certificate).
    UnknownIssuer,
    /// The certificate does not name the URL's host.
    NotValidForName,
    /// Expired, or not valid yet (a clock, or a certificate not renewed).
    Expired,
    /// Any other problem with the certificate (revoked, bad signature,
    /// malformed, wrong purpose).
    Certificate,
    /// The handshake failed otherwise: no TLS on the other end (a plain HTTP
    /// receiver), no common version or cipher, an alert from the receiver.
    Handshake,
}

impl TlsFailure {
    /// Every value, pre-registered at 0.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::UnknownIssuer,
        TlsFailure::NotValidForName,
        TlsFailure::Expired,
        TlsFailure::Certificate,
        TlsFailure::Handshake,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::UnknownIssuer => "unknown_issuer",
            TlsFailure::NotValidForName => "not_valid_for_name",
            TlsFailure::Expired => "expired",
            TlsFailure::Certificate => "certificate",
            TlsFailure::Handshake => "handshake",
        }
    }

    /// Whether the receiver's certificate was refused (not the handshake
    /// otherwise).
    pub fn is_certificate(self) -> bool {
        self != TlsFailure::Handshake
    }

    fn of(e: &rustls::Error) -> TlsFailure {
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    TlsFailure::NotValidForName
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
                _ => TlsFailure::Certificate,
            },
            _ => TlsFailure::Handshake,
        }
    }
}

/// The TLS failure in `e`'s chain, if it is one. `io::Error`'s `source()`
/// skips the error it wraps (it returns that error's source), and the
/// connector wraps rustls' error in two of them: each is opened with
/// `get_ref()`.
pub fn classify(e: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut next = Some(e);
    while let Some(e) = next {
        let mut inner: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(i) = inner {
            if let Some(r) = i.downcast_ref::<rustls::Error>() {
                return Some(TlsFailure::of(r));
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|x| x as &(dyn StdError + 'static));
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the connector hands back: rustls' error in tokio-rustls'
    /// `io::Error`, in hyper-rustls' `io::Error::other`, in a box (what
    /// hyper-util's connect error holds).
    #[test]
    fn finds_rustls_error_through_nested_io_errors() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsFailure::UnknownIssuer,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                TlsFailure::NotValidForName,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                TlsFailure::Expired,
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Revoked),
                TlsFailure::Certificate,
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                TlsFailure::Handshake,
            ),
        ];
        for (err, want) in cases {
            let tokio_rustls = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
            let connector: Box<dyn StdError + Send + Sync> = Box::new(std::io::Error::other(tokio_rustls));
            assert_eq!(classify(connector.as_ref()), Some(want));
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&refused), None);
        let names: std::collections::HashSet<_> = TlsFailure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), TlsFailure::ALL.len());
    }
}
