//! The PostgreSQL that tests run against: one private cluster per checkout, shared by every
//! test process (nextest runs each test in its own process), started by whichever test needs it
//! first, under a file lock. Each test gets a fresh database cloned from a migrated template,
//! so tests are isolated and fast. `homeward-test-db stop` (this crate's binary, run by
//! `make test`) stops it and removes its files; a start that finds it stopped begins from an
//! empty cluster, so the clones of earlier runs never pile up.
//!
//! The cluster has the application's runtime roles (`homeward_app` under row-level security,
//! `homeward_service`), and the application under test connects as them ([`connections`]);
//! tests' own checks connect as the superuser, which sees every row.
//!
//! With `HOMEWARD_TEST_DATABASE_URL` set (a superuser URL, e.g. to a TimescaleDB server), tests
//! use that server instead.
//!
//! PostgreSQL clones a database only while no other session is connected to it. TimescaleDB's
//! background-worker scheduler keeps a connection to every database that has the extension, so
//! the finished template is sealed: its workers stopped (`timescaledb_pre_restore()`, which
//! stops them until `timescaledb_post_restore()`), then `IS_TEMPLATE true ALLOW_CONNECTIONS
//! false` (the scheduler does not run in template databases, and nothing can connect to it any
//! more), any session still there terminated; a clone that still finds one is retried.

use std::fs::OpenOptions;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;

use homeward::db::embedded::{EmbeddedPostgres, StartOptions};
use homeward::db::{migrate, roles, Connections, DbError, StorageMode};

/// Where the shared cluster lives: the system temp folder (reachable by the `postgres` user
/// even when the checkout sits in root's home), keyed by user and checkout.
pub fn cluster_dir() -> PathBuf {
    // The checkout is the folder above this crate's.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kit sits in the workspace")
        .to_string_lossy()
        .into_owned();
    let key = hex::encode(&Sha256::digest(checkout.as_bytes())[..6]);
    std::env::temp_dir().join(format!("homeward-test-{}-{key}", nix::unistd::geteuid()))
}

/// Connection settings for the server's maintenance database, plus the template's name.
pub struct TestServer {
    admin: tokio_postgres::Config,
    template: String,
}

impl TestServer {
    /// Finds or starts the shared cluster and makes sure the migrated template exists.
    pub async fn get() -> Result<Self, DbError> {
        let template = template_name();
        if let Ok(url) = std::env::var("HOMEWARD_TEST_DATABASE_URL") {
            let admin: tokio_postgres::Config = url.parse()?;
            let server = Self { admin, template };
            let _lock = lock()?;
            server.ensure_roles().await?;
            server.ensure_template().await?;
            return Ok(server);
        }
        let dir = cluster_dir();
        let _lock = lock()?;
        let pg = match EmbeddedPostgres::attach(&dir, None).await? {
            Some(pg) => pg,
            None => {
                // Nobody can be using a cluster that is not running: start from an empty one
                // rather than keep every database earlier runs cloned, which fills the disk run
                // after run (initdb and the template take a few seconds).
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| {
                        DbError::Unavailable(format!(
                            "cannot clear the old test cluster {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let options = StartOptions {
                    port: 0,
                    bin_dir: None,
                    // Tests never survive a machine crash, so skip the flushes that make
                    // commits durable against one; restarts and kills of PostgreSQL itself are
                    // still safe (the OS keeps the written pages).
                    server_settings: vec![
                        ("fsync".into(), "off".into()),
                        ("full_page_writes".into(), "off".into()),
                        ("max_connections".into(), "400".into()),
                    ],
                };
                EmbeddedPostgres::start(&dir, &options).await?
            }
        };
        let server = Self {
            admin: pg.pg_config("postgres"),
            template,
        };
        server.ensure_roles().await?;
        server.ensure_template().await?;
        Ok(server)
    }

    /// A new, migrated database of its own.
    pub async fn fresh_database(&self) -> Result<tokio_postgres::Config, DbError> {
        let name = format!("t_{}", homeward::secret::random_token(8));
        self.exec_while_in_use(
            &format!("CREATE DATABASE {name} TEMPLATE {}", self.template),
            &self.template,
        )
        .await?;
        Ok(self.config_for(&name))
    }

    /// The name of the migrated template that [`Self::fresh_database`] clones.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// A new, empty database (no migrations), for migration tests.
    pub async fn empty_database(&self) -> Result<tokio_postgres::Config, DbError> {
        let name = format!("e_{}", homeward::secret::random_token(8));
        self.exec(&format!("CREATE DATABASE {name}")).await?;
        Ok(self.config_for(&name))
    }

    pub fn config_for(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = self.admin.clone();
        config.dbname(dbname);
        config
    }

    /// The application's runtime roles (`homeward_app`, `homeward_service`), with the admin's
    /// password, so that [`role_config`] can connect as them. Before the template is built: its
    /// migration run grants them their privileges only if they exist.
    async fn ensure_roles(&self) -> Result<(), DbError> {
        let (client, conn) = self.admin.connect(NoTls).await?;
        let task = tokio::spawn(conn);
        let result = roles::ensure(&client, &password_of(&self.admin)).await;
        drop(client);
        let _ = task.await;
        Ok(result?)
    }

    async fn exec(&self, sql: &str) -> Result<(), DbError> {
        let (client, conn) = self.admin.connect(NoTls).await?;
        let task = tokio::spawn(conn);
        let result = client.batch_execute(sql).await;
        drop(client);
        let _ = task.await;
        Ok(result?)
    }

    /// Runs `sql` (a clone or rename of `db`), retrying while another session is connected to
    /// `db` ("being accessed by other users"), and ending such sessions between tries.
    async fn exec_while_in_use(&self, sql: &str, db: &str) -> Result<(), DbError> {
        let mut delay = std::time::Duration::from_millis(50);
        for attempt in 1.. {
            match self.exec(sql).await {
                Err(DbError::Postgres(e))
                    if attempt < 20
                        && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    tracing::debug!(db, attempt, "database in use; retrying");
                    self.exec(&format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                          WHERE datname = '{db}' AND pid <> pg_backend_pid()"
                    ))
                    .await?;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    async fn ensure_template(&self) -> Result<(), DbError> {
        let (client, conn) = self.admin.connect(NoTls).await?;
        let task = tokio::spawn(conn);
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&self.template],
            )
            .await?
            .is_some();
        drop(client);
        let _ = task.await;
        if exists {
            return Ok(());
        }
        // Build under another name and rename, so a half-built template is never cloned.
        let building = format!("{}_building", self.template);
        // FORCE: a scheduler (or a killed builder's session) may still be connected.
        self.exec(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await?;
        self.exec(&format!("CREATE DATABASE {building}")).await?;
        {
            let (mut client, conn) = self.config_for(&building).connect(NoTls).await?;
            let task = tokio::spawn(conn);
            let report = migrate::run(&mut client).await?;
            if report.mode == StorageMode::TimescaleDb {
                // Stops this database's background workers (and keeps them stopped here; the
                // setting is per database, so clones do not inherit it).
                client
                    .batch_execute("SELECT timescaledb_pre_restore()")
                    .await?;
            }
            drop(client);
            let _ = task.await;
        }
        self.exec(&format!(
            "ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false"
        ))
        .await?;
        self.exec_while_in_use(
            &format!("ALTER DATABASE {building} RENAME TO {}", self.template),
            &building,
        )
        .await?;
        self.exec(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true",
            self.template
        ))
        .await?;
        Ok(())
    }
}

/// How to connect to the database of `owner` (a test database's superuser settings) as one of
/// the application's runtime roles, which the kit gives the same password.
pub fn role_config(owner: &tokio_postgres::Config, role: &str) -> tokio_postgres::Config {
    let mut config = owner.clone();
    config.user(role).password(password_of(owner));
    config
}

/// How the application connects to the database of `owner`, as in production: migrations as
/// the owner, the request path as `homeward_app`, the service work as `homeward_service`.
pub fn connections(owner: &tokio_postgres::Config) -> Connections {
    Connections {
        owner: owner.clone(),
        app: role_config(owner, roles::APP_ROLE),
        service: role_config(owner, roles::SERVICE_ROLE),
    }
}

/// The password of a superuser's settings; a fixed one when they have none (a server that
/// trusts its clients), which the roles then get.
fn password_of(config: &tokio_postgres::Config) -> String {
    config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| "homeward-test".to_owned())
}

/// Stops the shared cluster, if it runs, and removes its files. Says whether it was running.
pub async fn stop() -> Result<bool, DbError> {
    let dir = cluster_dir();
    let _lock = lock()?;
    let was_running = match EmbeddedPostgres::attach(&dir, None).await? {
        Some(pg) => {
            pg.stop_attached().await?;
            true
        }
        None => false,
    };
    // Its databases are the runs' clones, of no use after the run: a cluster left behind by
    // each checkout filled the disk of a machine that builds many.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| {
            DbError::Unavailable(format!(
                "cannot remove the test cluster {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(was_running)
}

fn template_name() -> String {
    let mut hasher = Sha256::new();
    // How the template is built (sealed against connections since "sealed-1"), so a cluster
    // holding a template built the older way gets a new one.
    hasher.update(b"sealed-1");
    for migration in migrate::all().unwrap_or_default() {
        hasher.update(migration.name.as_bytes());
        hasher.update(migration.sql.as_bytes());
    }
    format!("homeward_tpl_{}", hex::encode(&hasher.finalize()[..6]))
}

fn lock() -> Result<Flock<std::fs::File>, DbError> {
    let path = cluster_dir().with_extension("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| DbError::Unavailable(format!("test cluster lock: {e}")))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| DbError::Unavailable(format!("test cluster lock: {e}")))
}
