//! The embedded PostgreSQL: a private cluster run from the machine's own PostgreSQL
//! installation, in `<data_dir>/postgres`, so that `homeward serve` needs nothing else.
//!
//! - Created with `initdb` on first start (password authentication, the password kept in
//!   `<data_dir>/postgres.password`, readable only by its owner), reused afterwards.
//! - Every start creates (or updates) the runtime roles `homeward_app` and `homeward_service`
//!   ([`super::roles`]), with the superuser's password: they exist to limit what the
//!   application's own queries can do, not to keep a secret from whoever can read that file.
//! - Listens on 127.0.0.1 only, on `database.embedded.port` (0: a free port each start), with no
//!   Unix socket (socket paths have a short length limit and permissions of their own).
//! - PostgreSQL refuses to run as root. When Homeward runs as root, the cluster's files belong
//!   to the `postgres` system user and every PostgreSQL program runs as that user.
//! - A cluster left running by a process that was killed is stopped and started again, so a
//!   crash never leaves Homeward unable to start.
//! - [`EmbeddedPostgres::stop`] stops it cleanly (`pg_ctl stop -m fast`).
//! - When the installation has TimescaleDB's library (`timescaledb.so` in the folder PostgreSQL
//!   loads libraries from), the server is started with `shared_preload_libraries=timescaledb`
//!   (TimescaleDB works only when preloaded) and `timescaledb.telemetry_level=off` (it would
//!   otherwise report usage to its vendor), as command-line settings at every start, so
//!   `postgresql.conf` is never edited. The migrations then choose the TimescaleDB mode.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use nix::unistd::{Gid, Uid, User};
use tokio::process::Command;

/// The database Homeward's own data lives in, inside the embedded cluster.
pub const DATABASE_NAME: &str = "homeward";
/// The cluster's superuser.
pub const SUPERUSER: &str = "homeward";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("no PostgreSQL installation found ({0}); install PostgreSQL 15 or newer (Debian: apt-get install postgresql) or set database.embedded.bin_dir, or set database.url")]
    NotInstalled(String),
    #[error("running as root, but there is no `postgres` system user to run PostgreSQL as; install Debian's postgresql package or run Homeward as a normal user")]
    NoPostgresUser,
    #[error("the postgres user cannot reach {path} (folder {blocked} is not open to other users); choose a data folder outside it with --data-dir, e.g. /var/lib/homeward")]
    Unreachable { path: PathBuf, blocked: PathBuf },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("embedded PostgreSQL: {0}")]
    Io(#[from] std::io::Error),
}

/// A running embedded cluster. Dropping it does not stop PostgreSQL; call [`Self::stop`].
#[derive(Debug)]
pub struct EmbeddedPostgres {
    pgdata: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(Uid, Gid)>,
    running: bool,
    /// Preload TimescaleDB (its library was found in this installation).
    timescaledb: bool,
}

/// Options for [`EmbeddedPostgres::start`].
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub port: u16,
    pub bin_dir: Option<PathBuf>,
    /// Extra `-c name=value` server settings (tests turn off fsync for speed).
    pub server_settings: Vec<(String, String)>,
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir` if needed and starts it.
    pub async fn start(data_dir: &Path, options: &StartOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir(options.bin_dir.as_deref())?;
        let run_as = postgres_user_if_root()?;
        std::fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let pgdata = data_dir.join("postgres");
        if let Some((uid, gid)) = run_as {
            check_reachable(&data_dir, uid, gid)?;
        }
        let password = ensure_password(&data_dir)?;
        let timescaledb = match library_dir(&bin_dir).await {
            Some(dir) => has_timescaledb(&dir),
            None => false,
        };
        if timescaledb {
            tracing::info!(
                "TimescaleDB is installed: the embedded PostgreSQL preloads it, with its telemetry off"
            );
        }
        let mut this = Self {
            pgdata,
            bin_dir,
            port: options.port,
            password,
            run_as,
            running: false,
            timescaledb,
        };
        if !this.pgdata.join("PG_VERSION").is_file() {
            this.initdb(&data_dir).await?;
        } else if this.is_running().await {
            // Left behind by a Homeward that was killed: restart it under our settings.
            tracing::warn!(pgdata = %this.pgdata.display(), "embedded PostgreSQL was still running from an earlier run; restarting it");
            this.pg_ctl_stop().await?;
        }
        if this.port == 0 {
            this.port = free_port()?;
        }
        this.pg_ctl_start(&options.server_settings).await?;
        this.running = true;
        this.ensure_database().await?;
        tracing::info!(port = this.port, pgdata = %this.pgdata.display(), "embedded PostgreSQL started");
        Ok(this)
    }

    /// Connects to a cluster that another Homeward process (a running `serve`) started, without
    /// taking ownership of it. Returns `None` when none is running there.
    pub async fn attach(
        data_dir: &Path,
        bin_dir: Option<&Path>,
    ) -> Result<Option<Self>, EmbeddedError> {
        // Absolute: pg_ctl runs in `/` when it runs as the postgres user, where a relative
        // `--data-dir` would name another folder and the running cluster would go unseen.
        let data_dir = &data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let pgdata = data_dir.join("postgres");
        let pid_file = pgdata.join("postmaster.pid");
        let Ok(contents) = std::fs::read_to_string(&pid_file) else {
            return Ok(None);
        };
        // postmaster.pid line 4 is the port (PostgreSQL's documented layout).
        let Some(port) = contents
            .lines()
            .nth(3)
            .and_then(|l| l.trim().parse::<u16>().ok())
        else {
            return Ok(None);
        };
        let password = std::fs::read_to_string(data_dir.join("postgres.password"))?
            .trim()
            .to_string();
        let this = Self {
            pgdata,
            bin_dir: find_bin_dir(bin_dir)?,
            port,
            password,
            run_as: postgres_user_if_root()?,
            running: false,     // not ours to stop
            timescaledb: false, // not ours to start
        };
        Ok(this.is_running().await.then_some(this))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection settings for `dbname` in this cluster.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(self.password.as_bytes())
            .dbname(dbname)
            .application_name("homeward");
        config
    }

    /// Connection settings for `dbname` as `role` (one of [`super::roles`], which share the
    /// superuser's password: whoever can read that file could be the superuser anyway).
    pub fn pg_config_as(&self, dbname: &str, role: &str) -> tokio_postgres::Config {
        let mut config = self.pg_config(dbname);
        config.user(role);
        config
    }

    /// How Homeward connects to `dbname`: migrations as the superuser, the request path and the
    /// service work as their roles.
    pub fn connections(&self, dbname: &str) -> super::Connections {
        super::Connections {
            owner: self.pg_config(dbname),
            app: self.pg_config_as(dbname, super::roles::APP_ROLE),
            service: self.pg_config_as(dbname, super::roles::SERVICE_ROLE),
        }
    }

    /// A URL for `dbname`, for tools and child processes (contains the password).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}",
            self.password, self.port
        )
    }

    /// A URL for `dbname` as `role` (see [`Self::pg_config_as`]), for child processes.
    pub fn url_as(&self, dbname: &str, role: &str) -> String {
        format!(
            "postgres://{role}:{}@127.0.0.1:{}/{dbname}",
            self.password, self.port
        )
    }

    /// Stops the cluster (fast shutdown: open transactions roll back, committed data is safe).
    pub async fn stop(&mut self) -> Result<(), EmbeddedError> {
        if self.running {
            self.pg_ctl_stop().await?;
            self.running = false;
            tracing::info!("embedded PostgreSQL stopped");
        }
        Ok(())
    }

    /// Stops a cluster found with [`Self::attach`] (it belongs to another process).
    pub async fn stop_attached(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl_stop().await
    }

    /// Stops the server but keeps the cluster, as in a database outage; [`Self::resume`]
    /// starts it again on the same port. Used by the outage tests.
    pub async fn halt(&mut self) -> Result<(), EmbeddedError> {
        self.pg_ctl_stop().await
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: no shutdown checkpoint,
    /// so [`Self::resume`] recovers from the write-ahead log). Used by the crash tests.
    pub async fn crash(&mut self) -> Result<(), EmbeddedError> {
        self.pg_ctl_stop_mode("immediate").await
    }

    pub async fn resume(&mut self) -> Result<(), EmbeddedError> {
        self.pg_ctl_start(&[]).await
    }

    async fn is_running(&self) -> bool {
        // pg_ctl status: exit 0 running, 3 not running, 4 no data directory.
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.pgdata);
        matches!(cmd.output().await, Ok(o) if o.status.success())
    }

    async fn initdb(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating the embedded PostgreSQL cluster");
        std::fs::create_dir_all(&self.pgdata)?;
        std::fs::set_permissions(&self.pgdata, std::fs::Permissions::from_mode(0o700))?;
        // initdb reads the password from a file that the postgres user must be able to read.
        let pwfile = data_dir.join(".initdb-password");
        write_private(&pwfile, format!("{}\n", self.password).as_bytes())?;
        self.chown(&self.pgdata)?;
        self.chown(&pwfile)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.pgdata)
            .arg("-U")
            .arg(SUPERUSER)
            .arg("--auth=scram-sha-256")
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("--encoding=UTF8")
            .arg("--locale=C");
        let result = run(cmd, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    async fn pg_ctl_start(&self, settings: &[(String, String)]) -> Result<(), EmbeddedError> {
        let opts = server_options(self.port, self.timescaledb, settings);
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-w")
            .arg("-t")
            .arg("120")
            .arg("-l")
            .arg(self.pgdata.join("postgres.log"))
            .arg("-o")
            .arg(opts);
        run(
            cmd,
            "starting the embedded PostgreSQL (see postgres.log in its data folder)",
        )
        .await?;
        Ok(())
    }

    async fn pg_ctl_stop(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl_stop_mode("fast").await
    }

    async fn pg_ctl_stop_mode(&self, mode: &str) -> Result<(), EmbeddedError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-m")
            .arg(mode)
            .arg("-w")
            .arg("-t")
            .arg("120");
        run(cmd, "stopping the embedded PostgreSQL").await?;
        Ok(())
    }

    async fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let (client, connection) = self
            .pg_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| EmbeddedError::Command {
                what: "connecting to the embedded PostgreSQL".into(),
                detail: e.to_string(),
            })?;
        let conn = tokio::spawn(connection);
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&DATABASE_NAME],
            )
            .await
            .map_err(|e| EmbeddedError::Command {
                what: "checking the homeward database".into(),
                detail: e.to_string(),
            })?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {DATABASE_NAME}"))
                .await
                .map_err(|e| EmbeddedError::Command {
                    what: "creating the homeward database".into(),
                    detail: e.to_string(),
                })?;
        }
        super::roles::ensure(&client, &self.password)
            .await
            .map_err(|e| EmbeddedError::Command {
                what: "creating Homeward's database roles".into(),
                detail: e.to_string(),
            })?;
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
            // The postgres user may not be able to read root's working directory.
            cmd.current_dir("/");
        }
        cmd.env("LC_ALL", "C").kill_on_drop(false);
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedError> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .map_err(|e| EmbeddedError::Io(std::io::Error::from(e)))?;
        }
        Ok(())
    }
}

async fn run(mut cmd: Command, what: &str) -> Result<Output, EmbeddedError> {
    let output = cmd.output().await?;
    if output.status.success() {
        return Ok(output);
    }
    let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    Err(EmbeddedError::Command {
        what: what.to_string(),
        detail: detail.replace('\n', " | "),
    })
}

fn ensure_password(data_dir: &Path) -> Result<String, EmbeddedError> {
    let path = data_dir.join("postgres.password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let password = crate::secret::random_token(24);
    write_private(&path, password.as_bytes())?;
    Ok(password)
}

/// Writes a file only its owner can read, from the moment it exists: created with mode 0600
/// (not written and then restricted, which leaves it readable by everyone in between under the
/// usual umask); an existing file is restricted before anything is written to it.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn postgres_user_if_root() -> Result<Option<(Uid, Gid)>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or(EmbeddedError::NoPostgresUser)?;
    Ok(Some((user.uid, user.gid)))
}

/// Finds the folder with `initdb` and `pg_ctl`.
pub fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = configured {
        return if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
            Ok(dir.to_path_buf())
        } else {
            Err(EmbeddedError::NotInstalled(format!(
                "{} has no pg_ctl and initdb",
                dir.display()
            )))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((version, bin)) = versions.pop() {
        if version < 15 {
            return Err(EmbeddedError::NotInstalled(format!(
                "found PostgreSQL {version}, need 15 or newer"
            )));
        }
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    Err(EmbeddedError::NotInstalled(
        "no /usr/lib/postgresql/<version>/bin and no pg_ctl on PATH".into(),
    ))
}

/// The `postgres` options of every start: loopback only, no Unix socket, TimescaleDB preloaded
/// (telemetry off) when installed, then the caller's settings (which may override these).
fn server_options(port: u16, timescaledb: bool, settings: &[(String, String)]) -> String {
    let mut opts = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories= -c max_connections=200"
    );
    if timescaledb {
        opts.push_str(
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off",
        );
    }
    for (k, v) in settings {
        opts.push_str(&format!(" -c {k}={v}"));
    }
    opts
}

/// The folder this installation loads extension libraries from: `pg_config --pkglibdir` beside
/// `initdb`, else `<bin>/../lib` (the layout of Debian's packages).
async fn library_dir(bin_dir: &Path) -> Option<PathBuf> {
    let pg_config = bin_dir.join("pg_config");
    if pg_config.is_file() {
        if let Ok(out) = Command::new(&pg_config).arg("--pkglibdir").output().await {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && dir.is_dir() {
                return Some(dir);
            }
        }
    }
    let dir = bin_dir.parent()?.join("lib");
    dir.is_dir().then_some(dir)
}

/// Is TimescaleDB's loader library there? Preloading `timescaledb` loads `timescaledb.so`
/// (which then loads the versioned `timescaledb-<version>.so`); without it PostgreSQL would not
/// start, so only that file counts.
pub fn has_timescaledb(library_dir: &Path) -> bool {
    library_dir.join("timescaledb.so").is_file()
}

/// The postgres user needs search permission on every folder above its data.
fn check_reachable(dir: &Path, uid: Uid, gid: Gid) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors() {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let ok = if meta.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        // The data folder itself is ours to hand over; only its parents matter.
        if !ok && ancestor != dir {
            return Err(EmbeddedError::Unreachable {
                path: dir.to_path_buf(),
                blocked: ancestor.to_path_buf(),
            });
        }
    }
    // Let the postgres user into the data folder without opening it to everyone else.
    nix::unistd::chown(dir, None, Some(gid)).map_err(|e| EmbeddedError::Io(e.into()))?;
    let mode = std::fs::metadata(dir)?.mode() & 0o7777;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o010))?;
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn secrets_are_written_private_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postgres.password");
        write_private(&path, b"first").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A file left readable by others is restricted before it is written.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"second").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(ensure_password(dir.path()).unwrap(), "second");
    }

    #[test]
    fn timescaledb_is_preloaded_only_when_its_loader_library_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_timescaledb(dir.path()), "empty folder");
        // The versioned library alone cannot be preloaded as `timescaledb`.
        std::fs::write(dir.path().join("timescaledb-2.22.1.so"), b"").unwrap();
        std::fs::write(dir.path().join("timescaledb-tsl-2.22.1.so"), b"").unwrap();
        assert!(!has_timescaledb(dir.path()));
        std::fs::write(dir.path().join("timescaledb.so"), b"").unwrap();
        assert!(has_timescaledb(dir.path()));

        let with = server_options(5432, true, &[("fsync".into(), "off".into())]);
        assert!(
            with.contains(
                " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            ),
            "{with}"
        );
        assert!(
            with.ends_with(" -c fsync=off"),
            "the caller's settings come last: {with}"
        );
        let without = server_options(5432, false, &[]);
        assert!(!without.contains("timescaledb"), "{without}");
    }

    #[tokio::test]
    async fn the_library_folder_of_this_installation_is_found() {
        // Whatever PostgreSQL this machine has: its library folder holds PostgreSQL's own
        // modules (plpgsql.so ships with every server).
        let Ok(bin) = find_bin_dir(None) else {
            return;
        };
        let dir = library_dir(&bin).await.expect("a library folder");
        assert!(dir.join("plpgsql.so").is_file(), "{}", dir.display());
    }
}
