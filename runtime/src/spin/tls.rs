//! The TLS client configuration of outbound connections to databases: the certificate
//! authorities a server's certificate may chain to, the web PKI's (Mozilla's list, built in,
//! so nothing depends on the node's files) and any the guest adds (Postgres 4.2's
//! `set-ca-root`), with rustls and its `ring` provider.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The configuration for servers whose certificate chains to the web PKI, made once.
pub fn web_pki() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(config(web_pki_roots())))
        .clone()
}

/// The configuration that also trusts the authorities in `pem` (one or more PEM
/// certificates), or what is wrong with them.
pub fn with_ca_root(pem: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = web_pki_roots();
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA root is not a PEM certificate: {e}"))?;
        (roots.add(cert)).map_err(|e| format!("the CA root cannot be used: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("the CA root holds no PEM certificate".into());
    }
    Ok(Arc::new(config(roots)))
}

fn web_pki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_root_must_be_a_certificate() {
        assert!(with_ca_root("-----BEGIN CERTIFICATE-----")
            .unwrap_err()
            .contains("PEM"));
        assert!(with_ca_root("not pem at all")
            .unwrap_err()
            .contains("no PEM certificate"));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(with_ca_root(not_der)
            .unwrap_err()
            .contains("cannot be used"));
    }
}
