//! Device credentials: a file of `uid,secret,kind` lines, written by `create-devices` (which
//! runs `homeward admin create-device`) or by hand.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use homeward_device_core::device::Role;

/// One device's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// MQTT user name and client id.
    pub uid: String,
    /// MQTT password.
    pub secret: String,
    pub role: Role,
}

/// `pendant` or `hub` (`fall_detector` counts as a pendant).
pub fn parse_role(kind: &str) -> Option<Role> {
    match kind {
        "pendant" | "fall_detector" => Some(Role::Pendant),
        "hub" => Some(Role::Hub),
        _ => None,
    }
}

/// The kind `homeward admin create-device` takes for a role.
pub fn kind_name(role: Role) -> &'static str {
    match role {
        Role::Pendant => "pendant",
        Role::Hub => "hub",
    }
}

/// Reads `uid,secret,kind` lines; blank lines and `#` comments are skipped.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Credential>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Parses the text of a credentials file.
pub fn parse(text: &str) -> anyhow::Result<Vec<Credential>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [uid, secret, kind] = fields[..] else {
            bail!("line {}: expected uid,secret,kind", n + 1);
        };
        let role = parse_role(kind)
            .with_context(|| format!("line {}: kind `{kind}` is not pendant or hub", n + 1))?;
        out.push(Credential {
            uid: uid.to_string(),
            secret: secret.to_string(),
            role,
        });
    }
    Ok(out)
}

/// Writes a credentials file.
pub fn write_file(path: &Path, creds: &[Credential]) -> anyhow::Result<()> {
    let mut text = String::from("# uid,secret,kind (homeward-sim credentials; keep private)\n");
    for c in creds {
        text.push_str(&format!("{},{},{}\n", c.uid, c.secret, kind_name(c.role)));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Creates a device with `homeward [global args] admin create-device --org ORG --uid UID
/// --kind KIND` and reads the secret from its output.
pub fn create_device(
    homeward: &Path,
    global_args: &[String],
    org: &str,
    uid: &str,
    role: Role,
) -> anyhow::Result<Credential> {
    let output = Command::new(homeward)
        .args(global_args)
        .args([
            "admin",
            "create-device",
            "--org",
            org,
            "--uid",
            uid,
            "--kind",
        ])
        .arg(kind_name(role))
        .output()
        .with_context(|| format!("running {}", homeward.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "homeward admin create-device {uid}: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .context("no `secret:` line in the output of create-device")?;
    Ok(Credential {
        uid: uid.to_string(),
        secret: secret.trim().to_string(),
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let creds = parse("# c\n\nsim-p-1, s3cret ,pendant\nsim-h-1,x,hub\n").unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].secret, "s3cret");
        assert_eq!(creds[1].role, Role::Hub);
        assert!(parse("a,b\n").is_err());
        assert!(parse("a,b,phone\n").is_err());
    }
}
