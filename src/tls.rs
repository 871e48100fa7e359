//! TLS: the server certificate (HTTP and the embedded broker's `mqtts` listener), the roots an
//! external `mqtts://` broker is verified against, and self-signed pairs for trials.
//!
//! rustls with the ring provider only, chosen explicitly everywhere rather than through a
//! process-wide default, so nothing depends on which provider features other crates enable.
//! Files are read once at start-up; a problem is one line naming the setting and the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Settings;

/// A TLS file or setting that cannot be used, as one line saying what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// What the settings ask for, loaded and checked.
#[derive(Debug, Default)]
pub struct TlsSetup {
    /// From `tls.cert_file` and `tls.key_file`: HTTPS and the embedded broker's TLS listener.
    pub server: Option<rustls::ServerConfig>,
    /// For an `mqtts://` `mqtt.url`: trusts `mqtt.ca_file`, else the system's roots.
    pub mqtt_client: Option<Arc<rustls::ClientConfig>>,
}

impl TlsSetup {
    /// Reads the files the settings name. Nothing is read when TLS is not configured.
    pub fn load(settings: &Settings) -> Result<Self, TlsError> {
        let server = match (&settings.tls.cert_file, &settings.tls.key_file) {
            (Some(cert), Some(key)) => Some(server_config(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(TlsError(
                    "tls.cert_file and tls.key_file go together: set both or neither".into(),
                ))
            }
        };
        let mqtt_client = match settings.broker_url() {
            Some(url) if url.tls => Some(client_config(settings.mqtt.ca_file.as_deref())?),
            _ => None,
        };
        Ok(Self {
            server,
            mqtt_client,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain (leaf first) and its PEM private key
/// (PKCS#8, PKCS#1 or SEC1). Fails if the key is not the certificate's.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs("tls.cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| pem_error("tls.key_file", key_file, "private key", e))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS cannot be set up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError(format!(
                "tls.key_file {} is not the private key of the certificate in tls.cert_file {}",
                key_file.display(),
                cert_file.display()
            )),
            other => TlsError(format!(
                "tls.cert_file {} with tls.key_file {} cannot be used: {other}",
                cert_file.display(),
                key_file.display()
            )),
        })
}

/// A client configuration trusting the certificates in `ca_file` (PEM), or without one the
/// system's roots (`/etc/ssl/certs`, Debian's `ca-certificates`).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("mqtt.ca_file", path)? {
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "mqtt.ca_file {} holds a certificate that cannot be trusted: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError(
                    "mqtts:// needs trusted roots: no system CA certificates were found \
                     (install ca-certificates), or set mqtt.ca_file"
                        .into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(setting, path, "certificate", e))?;
    if certs.is_empty() {
        return Err(pem_error(
            setting,
            path,
            "certificate",
            pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

fn pem_error(setting: &str, path: &Path, what: &str, e: pem::Error) -> TlsError {
    let path = path.display();
    TlsError(match e {
        pem::Error::Io(e) => format!("{setting} {path} cannot be read ({e})"),
        pem::Error::NoItemsFound => format!("{setting} {path} holds no PEM {what}"),
        other => format!("{setting} {path} is not a valid PEM {what} ({other})"),
    })
}

/// A self-signed certificate and its private key, both PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    /// Never printed; written to a file only readable by its owner.
    pub key_pem: String,
}

/// A self-signed certificate (ECDSA P-256, valid from yesterday for 365 days) whose
/// subjectAltName lists `hosts` and 127.0.0.1. For trials: clients must be given the
/// certificate itself to trust (`curl --cacert`, `mosquitto_pub --cafile`, `mqtt.ca_file`).
pub fn self_signed(hosts: &[String]) -> Result<SelfSigned, TlsError> {
    use chrono::Datelike;
    let mut names: Vec<String> = Vec::new();
    for name in hosts.iter().map(String::as_str).chain(["127.0.0.1"]) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_string());
        }
    }
    let bad = |e: rcgen::Error| TlsError(format!("cannot make a self-signed certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(names).map_err(bad)?;
    let mut dn = rcgen::DistinguishedName::new();
    let subject = hosts.first().map_or("127.0.0.1", String::as_str);
    dn.push(
        rcgen::DnType::CommonName,
        format!("Homeward self-signed {subject}"),
    );
    params.distinguished_name = dn;
    let ymd = |d: chrono::NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let today = chrono::Utc::now().date_naive();
    params.not_before = ymd(today - chrono::Days::new(1));
    params.not_after = ymd(today + chrono::Days::new(365));
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a [`self_signed`] pair to `dir/cert.pem` and `dir/key.pem` (mode 0600), creating
/// `dir`; refuses to replace existing files. Returns the two paths.
pub fn write_self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let pair = self_signed(hosts)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| TlsError(format!("cannot create {} ({e})", dir.display())))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(TlsError(format!(
                "{} already exists; remove it or choose another --out",
                path.display()
            )));
        }
    }
    let write = |path: &Path, mode: u32, contents: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| TlsError(format!("cannot write {} ({e})", path.display())))
    };
    write(&key_path, 0o600, &pair.key_pem)?;
    write(&cert_path, 0o644, &pair.cert_pem)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_loads_and_a_foreign_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_self_signed(dir.path(), &["localhost".into()]).unwrap();
        server_config(&cert, &key).unwrap();
        client_config(Some(&cert)).unwrap();
        // Not replaced.
        assert!(write_self_signed(dir.path(), &["localhost".into()]).is_err());

        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_self_signed(other.path(), &["localhost".into()]).unwrap();
        let err = server_config(&cert, &other_key).unwrap_err().to_string();
        assert!(err.contains("not the private key"), "{err}");

        let err = server_config(&dir.path().join("missing.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tls.cert_file") && err.contains("cannot be read"),
            "{err}"
        );
        let err = server_config(&key, &key).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = server_config(&cert, &cert).unwrap_err().to_string();
        assert!(err.starts_with("tls.key_file"), "{err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
}
