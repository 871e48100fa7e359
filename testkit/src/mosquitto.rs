//! A Mosquitto broker from Debian's packages, for interoperability and durability tests.

use std::path::Path;
use std::time::Duration;

use crate::free_port;

/// A Mosquitto broker on a free port, anonymous, in memory; killed on drop. Its inflight window
/// is the bounded one Homeward's operations guide recommends (with `max_inflight_messages 0`,
/// Mosquitto 2.0.11 reuses packet ids that are still unacknowledged).
pub struct Mosquitto {
    child: std::process::Child,
    /// Its (first) listener.
    pub port: u16,
    /// Its MQTT over TLS listener ([`Mosquitto::start_tls`]).
    pub tls_port: Option<u16>,
    /// Every listener, in the order its configuration names them.
    pub listeners: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Also listens for MQTT over TLS on `tls_port`, with this PEM certificate and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Self {
        let listeners = if tls.is_some() { 2 } else { 1 };
        let mut this = Self::start_configured(listeners, |ports| {
            let mut config = format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 10000\nmax_queued_messages 1000000\n",
                ports[0]
            );
            if let Some((cert, key)) = tls {
                // Run as root, Mosquitto would switch to its own user, who cannot read the key
                // in the test's private folder.
                config.push_str(&format!(
                    "user root\nlistener {} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                    ports[1],
                    cert.display(),
                    key.display()
                ));
            }
            config
        });
        this.tls_port = this.listeners.get(1).copied();
        this
    }

    /// Mosquitto on a configuration of the caller's: `listeners` free ports are picked and
    /// `config` writes the configuration file's text from them. Returns once every one of them
    /// accepts connections.
    pub fn start_configured(listeners: usize, config: impl FnOnce(&[u16]) -> String) -> Self {
        let ports: Vec<u16> = (0..listeners)
            .map(|_| free_port().expect("a free port"))
            .collect();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, config(&ports)).expect("the configuration is written");
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/install-deps.sh test)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for &port in &ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "mosquitto listens");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self {
            child,
            port: ports[0],
            tls_port: None,
            listeners: ports,
            _dir: dir,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Makes Mosquitto read its password and ACL files again (SIGHUP).
    pub fn reload(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("mosquitto runs");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
