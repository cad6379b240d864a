//! The TLS client configuration of a component's outbound connections (HTTPS, Postgres,
//! MQTT, Redis, MySQL): the certificate authorities a server's certificate may chain to, the web PKI's
//! (Mozilla's list, built in, so nothing depends on the node's files) unless the runtime
//! config's `[[client_tls]]` says otherwise for the host, with the authorities and client
//! certificate it names; and any a guest adds (Postgres 4.2's `set-ca-root`). rustls with its
//! `ring` provider.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::runtime_config::ClientTlsSettings;

/// The TLS configurations of one component's connections, by host.
#[derive(Debug, Clone, Default)]
pub struct ComponentTls {
    by_host: BTreeMap<String, HostTls>,
}

/// What a `[[client_tls]]` table says for a host: as a rustls configuration, and as the PEM
/// it was made from (for clients that take PEM: Redis, MySQL).
#[derive(Debug, Clone)]
struct HostTls {
    config: Arc<ClientConfig>,
    pem: Arc<TlsPem>,
}

/// A `[[client_tls]]` table's files, read.
#[derive(Debug)]
pub struct TlsPem {
    /// Whether the web PKI's authorities are trusted too.
    pub web_pki: bool,
    /// The authorities of `ca_roots_file`.
    pub ca: Option<Vec<u8>>,
    /// The client certificate chain and key.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ComponentTls {
    /// The `[[client_tls]]` configurations of component `id`, built (certificates and keys
    /// read); the error names the table and the file.
    pub fn load(id: &str, tables: &[ClientTlsSettings]) -> Result<ComponentTls, String> {
        let mut by_host = BTreeMap::new();
        for (i, table) in tables.iter().enumerate() {
            if !table.component_ids.iter().any(|c| c == id) {
                continue;
            }
            let named = |e| format!("[[client_tls]] #{}: {e}", i + 1);
            let host_tls = HostTls {
                config: built(table).map_err(named)?,
                pem: Arc::new(read(table).map_err(named)?),
            };
            for host in &table.hosts {
                // The first table that names the host wins.
                by_host
                    .entry(host.clone())
                    .or_insert_with(|| host_tls.clone());
            }
        }
        Ok(ComponentTls { by_host })
    }

    /// The configuration `[[client_tls]]` gives connections to `host`, if any.
    pub fn configured(&self, host: &str) -> Option<Arc<ClientConfig>> {
        self.entry(host).map(|h| h.config.clone())
    }

    /// The files of the `[[client_tls]]` table for `host`, if any.
    pub fn pem(&self, host: &str) -> Option<Arc<TlsPem>> {
        self.entry(host).map(|h| h.pem.clone())
    }

    fn entry(&self, host: &str) -> Option<&HostTls> {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.by_host.get(&host)
    }

    /// The configuration for connections to `host`: its `[[client_tls]]`'s, else the web
    /// PKI's.
    pub fn config(&self, host: &str) -> Arc<ClientConfig> {
        self.configured(host).unwrap_or_else(web_pki)
    }
}

fn read(table: &ClientTlsSettings) -> Result<TlsPem, String> {
    let file = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    Ok(TlsPem {
        web_pki: table.web_pki_roots,
        ca: table.ca_roots_file.as_deref().map(file).transpose()?,
        identity: match &table.client_identity {
            Some((cert, key)) => Some((file(cert)?, file(key)?)),
            None => None,
        },
    })
}

fn built(table: &ClientTlsSettings) -> Result<Arc<ClientConfig>, String> {
    let mut roots = if table.web_pki_roots {
        web_pki_roots()
    } else {
        RootCertStore::empty()
    };
    if let Some(file) = &table.ca_roots_file {
        for cert in certificates(file)? {
            (roots.add(cert)).map_err(|e| format!("{}: cannot be used: {e}", file.display()))?;
        }
    }
    let builder = builder().with_root_certificates(roots);
    let config = match &table.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
            (builder.with_client_auth_cert(chain, key))
                .map_err(|e| format!("{}: cannot be used: {e}", cert.display()))?
        }
    };
    Ok(Arc::new(config))
}

/// The certificates of the PEM file at `path`, at least one.
fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

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

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

fn config(roots: RootCertStore) -> ClientConfig {
    builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(component: &str, host: &str, ca: Option<std::path::PathBuf>) -> ClientTlsSettings {
        ClientTlsSettings {
            component_ids: vec![component.into()],
            hosts: vec![host.into()],
            web_pki_roots: true,
            ca_roots_file: ca,
            client_identity: None,
        }
    }

    #[test]
    fn tables_apply_to_their_components_and_hosts_and_bad_files_are_named() {
        let tables = [table("a", "db.example", None), table("b", "other", None)];
        let a = ComponentTls::load("a", &tables).unwrap();
        assert!(a.configured("DB.example").is_some());
        assert!(a.configured("other").is_none());
        assert!(Arc::ptr_eq(&a.config("other"), &web_pki()));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "no certificate here").unwrap();
        let tables = [table("a", "x", None), table("a", "y", Some(bad.clone()))];
        let err = ComponentTls::load("a", &tables).unwrap_err();
        assert!(
            err.starts_with("[[client_tls]] #2: ") && err.contains(&bad.display().to_string()),
            "{err}"
        );
        // A table of another component is not read.
        assert!(ComponentTls::load("c", &tables)
            .unwrap()
            .configured("y")
            .is_none());
    }

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
