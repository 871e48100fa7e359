//! `homeward admin export-mosquitto`: the device credentials and topic ACL for a Mosquitto
//! broker that checks devices itself, as the embedded broker would.
//!
//! - The password file holds every active device (user name = uid) with the Mosquitto hash
//!   kept since its secret was created or rotated, and Homeward's own user from `mqtt.url`.
//!   Disabled devices are left out, and so are devices whose secret predates Mosquitto hashes
//!   (they must be rotated) and devices whose id is reserved for Homeward's own clients.
//! - The ACL file gives each device, by pattern on its user name, exactly the embedded
//!   broker's device ACL ([`super::broker_auth::device_acl`]): publish its own `events` and
//!   `status`, subscribe to its own `downlink`. Homeward's user reads every Homeward topic and
//!   publishes downlinks.
//! - Both files are written atomically (a temporary file in the same folder, then renamed) with
//!   mode 0600, keeping the owner and group of a file they replace, so a broker that reloads
//!   them (SIGHUP) sees either the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use homeward_proto::topic;
use homeward_proto::DeviceId;
use tokio_postgres::GenericClient;

use super::reserved_device_id;
use crate::config::Settings;

/// What an export wrote and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoExport {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    /// Homeward's own MQTT user, from `mqtt.url`.
    pub service_user: String,
    /// Devices written to the password file.
    pub devices: usize,
    /// Disabled devices, left out.
    pub disabled: usize,
    /// Active devices whose secret was set before Mosquitto hashes were kept: left out until
    /// their secret is rotated.
    pub needs_rotation: Vec<String>,
    /// Devices registered under an id reserved for Homeward's own clients: left out for good.
    pub reserved: Vec<String>,
}

impl MosquittoExport {
    /// What to tell the operator, one line each.
    pub fn report(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "wrote {}: {} device(s) and Homeward's user `{}`",
                self.password_file.display(),
                self.devices,
                self.service_user
            ),
            format!(
                "wrote {}: each device may publish on {}<uid>/events and .../status and \
                 subscribe to .../downlink; `{}` reads {}# and publishes downlinks",
                self.acl_file.display(),
                topic::PREFIX,
                self.service_user,
                topic::PREFIX
            ),
        ];
        if self.disabled > 0 {
            lines.push(format!("left out {} disabled device(s)", self.disabled));
        }
        if !self.needs_rotation.is_empty() {
            lines.push(format!(
                "NOT EXPORTED: {} device(s) whose secret predates Mosquitto hashes: {}",
                self.needs_rotation.len(),
                self.needs_rotation.join(", ")
            ));
            lines.push(
                "  rotate each one's secret (homeward admin rotate-device-secret --uid <uid>, or \
                 POST /v1/devices/<uid>/rotate-secret), give the device its new secret, and \
                 export again"
                    .to_owned(),
            );
        }
        if !self.reserved.is_empty() {
            lines.push(format!(
                "NOT EXPORTED: device id(s) reserved for Homeward's own clients: {}",
                self.reserved.join(", ")
            ));
        }
        lines.push(
            "reload Mosquitto to apply (SIGHUP: systemctl reload mosquitto, or kill -HUP <pid>)"
                .to_owned(),
        );
        lines
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `mqtt.url` does not name Homeward's user and password.
    #[error(
        "mqtt.url must name Homeward's own MQTT user and password \
         (mqtt://user:password@host:port): the files give that user Homeward's access"
    )]
    NoServiceUser,
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the password file and the ACL file for Mosquitto.
pub async fn export_mosquitto(
    client: &impl GenericClient,
    settings: &Settings,
    password_file: &Path,
    acl_file: &Path,
) -> Result<MosquittoExport, ExportError> {
    let url = settings.broker_url().ok_or(ExportError::NoServiceUser)?;
    let (Some(user), Some(password)) = (url.username, url.password) else {
        return Err(ExportError::NoServiceUser);
    };
    if !valid_user_name(&user) {
        return Err(ExportError::Invalid(format!(
            "mqtt.url's user `{user}` cannot be written to a Mosquitto password file: use one \
             without ':', '#', '+', '/', spaces or control characters"
        )));
    }
    let rows = client
        .query(
            "SELECT uid, disabled_at IS NOT NULL, secret_mosquitto_hash FROM devices ORDER BY uid",
            &[],
        )
        .await?;
    let mut export = MosquittoExport {
        password_file: password_file.to_owned(),
        acl_file: acl_file.to_owned(),
        service_user: user.clone(),
        devices: 0,
        disabled: 0,
        needs_rotation: Vec::new(),
        reserved: Vec::new(),
    };
    let mut passwords = format!("{user}:{}\n", super::mosquitto::hash(password.expose()));
    for row in &rows {
        let uid: String = row.get(0);
        if uid == user {
            return Err(ExportError::Invalid(format!(
                "mqtt.url's user `{user}` is also a device's uid; give Homeward's user a name \
                 beginning with `homeward`, which no device may take"
            )));
        }
        if row.get::<_, bool>(1) {
            export.disabled += 1;
        } else if reserved_device_id(&uid).is_some() {
            export.reserved.push(uid);
        } else if let Some(hash) = row.get::<_, Option<String>>(2) {
            passwords.push_str(&format!("{uid}:{hash}\n"));
            export.devices += 1;
        } else {
            export.needs_rotation.push(uid);
        }
    }
    write_private(password_file, passwords.as_bytes())?;
    write_private(acl_file, acl_file_text(&user).as_bytes())?;
    Ok(export)
}

/// A name Mosquitto can take as a user name in both files and in pattern substitution.
fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '#' | '+' | '/'))
}

/// The ACL file: the embedded broker's device ACL with the device's id as `%u` (user name,
/// which Mosquitto's `use_username_as_clientid` makes the client id too), and Homeward's user.
fn acl_file_text(service_user: &str) -> String {
    // Any valid id that is no other level of a topic stands for the device.
    const MARK: &str = "UID";
    let device = DeviceId::new(MARK).expect("a valid device id");
    let acl = super::broker_auth::device_acl(&device);
    let pattern = |filter: &str| {
        filter
            .split('/')
            .map(|level| if level == MARK { "%u" } else { level })
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut text = String::from(
        "# Written by `homeward admin export-mosquitto`; changes are overwritten by the next export.\n\
         # Devices (user name = client id = uid): the same topics as on Homeward's embedded broker.\n",
    );
    for filter in &acl.publish {
        text.push_str(&format!("pattern write {}\n", pattern(filter)));
    }
    for filter in &acl.subscribe {
        text.push_str(&format!("pattern read {}\n", pattern(filter)));
    }
    text.push_str(&format!(
        "\n# Homeward's own user: reads every device's topics, publishes downlinks.\n\
         user {service_user}\n\
         topic read {}#\n\
         topic write {}\n",
        topic::PREFIX,
        topic::DOWNLINK_FILTER
    ));
    text
}

/// Writes `contents` to `path` atomically with mode 0600: a temporary file beside it, synced,
/// then renamed over it. A file it replaces keeps its owner and group (an operator who gave the
/// file to the broker's user once need not do it again); if that cannot be done the old file is
/// left as it was.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ExportError> {
    let fail = |source| ExportError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let previous = std::fs::metadata(path).ok();
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(previous) = &previous {
            let mine = file.metadata()?;
            if (mine.uid(), mine.gid()) != (previous.uid(), previous.gid()) {
                std::os::unix::fs::fchown(&file, Some(previous.uid()), Some(previous.gid()))?;
            }
        }
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the folder is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_file_is_the_embedded_brokers_acl() {
        assert_eq!(
            acl_file_text("homeward"),
            "# Written by `homeward admin export-mosquitto`; changes are overwritten by the next export.\n\
             # Devices (user name = client id = uid): the same topics as on Homeward's embedded broker.\n\
             pattern write homeward/v1/%u/events\n\
             pattern write homeward/v1/%u/status\n\
             pattern read homeward/v1/%u/downlink\n\
             \n\
             # Homeward's own user: reads every device's topics, publishes downlinks.\n\
             user homeward\n\
             topic read homeward/v1/#\n\
             topic write homeward/v1/+/downlink\n"
        );
    }

    #[test]
    fn user_names_mosquitto_cannot_take_are_refused() {
        assert!(valid_user_name("homeward"));
        assert!(valid_user_name("homeward-svc_1"));
        for bad in ["", "a:b", "a b", "a\nb", "a/b", "a+", "#a"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn files_are_written_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        write_private(&path, b"one\n").unwrap();
        write_private(&path, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        assert!(write_private(&dir.path().join("missing/passwd"), b"x").is_err());
    }

    /// Only root can give a file away; elsewhere there is nothing to check.
    #[test]
    fn a_replaced_file_keeps_its_owner() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl");
        std::fs::write(&path, "old").unwrap();
        std::os::unix::fs::chown(&path, Some(4242), Some(4343)).unwrap();
        write_private(&path, b"new").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
        assert_eq!(meta.mode() & 0o777, 0o600);
    }
}
