//! The database: the connection pools, the embedded PostgreSQL, migrations, the roles Homeward
//! connects as ([`roles`]: migrations as the owner, the request path as `homeward_app` under
//! row-level security ([`tenancy`]), the rest as `homeward_service`) and the storage policy
//! (TimescaleDB or native partitioning).
//!
//! Pool connections are verified when recycled (a cheap query), because after a database
//! restart a fast-recycled connection would be dead; a failed check drops it and the pool opens
//! a new one. That is what lets every part of Homeward recover from a database outage without a
//! restart.

pub mod cached;
pub mod embedded;
pub mod maintenance;
pub mod migrate;
pub mod roles;
pub mod tenancy;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Settings;
pub use embedded::EmbeddedPostgres;
pub use migrate::StorageMode;

pub type Client = deadpool_postgres::Client;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// How Homeward connects: as the owner (migrations), the request path's role and the service
/// role (see [`roles`]).
#[derive(Clone)]
pub struct Connections {
    pub owner: tokio_postgres::Config,
    pub app: tokio_postgres::Config,
    pub service: tokio_postgres::Config,
}

/// The pools plus, when Homeward runs its own PostgreSQL, that cluster.
pub struct Database {
    /// The request path's pool ([`roles::APP_ROLE`]): row-level security applies; handlers take
    /// connections through `AppState::db`, which sets the caller's organisations.
    pub pool: Pool,
    /// Ingest, derivations, the live relay and storage maintenance ([`roles::SERVICE_ROLE`],
    /// which bypasses row-level security).
    pub service_pool: Pool,
    /// A few connections of their own for credential checks (tokens, device secrets), so that a
    /// flood of requests with bad credentials cannot take the connections ingest and the API
    /// need, and a busy pool cannot stop devices and users from signing in. Service role: a
    /// credential is checked before anyone's organisation is known.
    pub auth_pool: Pool,
    /// How to connect as the owner, to migrate; `None` when the pools were handed in without
    /// it (migrations then run on a service connection).
    owner: Option<tokio_postgres::Config>,
    /// How the service pool connects, for a connection of one's own outside it (the live
    /// stream's `LISTEN`); `None` when the pools were handed in without it.
    connect: Option<tokio_postgres::Config>,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `database.url` (with `database.app_url` and `database.service_url`), or
    /// starts (or, with `attach`, finds) the embedded cluster.
    pub async fn open(settings: &Settings) -> Result<Self, DbError> {
        let (connections, embedded) = match &settings.database.url {
            Some(url) => {
                // Validated when the configuration was loaded.
                let parse = |url: &crate::config::Secret<String>| {
                    url.expose()
                        .parse::<tokio_postgres::Config>()
                        .map_err(|e| DbError::Unavailable(e.to_string()))
                };
                let owner = parse(url)?;
                let app = match &settings.database.app_url {
                    Some(u) => parse(u)?,
                    None => {
                        tracing::warn!(
                            "database.app_url is not set: the API runs as the owner of the \
                             database, so row-level security is not in force; see \
                             docs/operations.md"
                        );
                        owner.clone()
                    }
                };
                let service = match &settings.database.service_url {
                    Some(u) => parse(u)?,
                    None => owner.clone(),
                };
                (
                    Connections {
                        owner,
                        app,
                        service,
                    },
                    None,
                )
            }
            None => {
                let options = embedded::StartOptions {
                    port: settings.database.embedded.port,
                    bin_dir: settings.database.embedded.bin_dir.clone(),
                    server_settings: Vec::new(),
                };
                let pg = EmbeddedPostgres::start(&settings.data_dir, &options).await?;
                (pg.connections(embedded::DATABASE_NAME), Some(pg))
            }
        };
        let mut db = Self::connect(
            connections,
            settings.database.pool_size,
            settings.database.auth_pool_size,
            settings.database.acquire_timeout_secs,
        );
        db.embedded = embedded;
        Ok(db)
    }

    /// Pools for each role (`pool_size` connections each for the request path and the
    /// service role, `auth_pool_size` for credential checks). Connects lazily.
    pub fn connect(
        connections: Connections,
        pool_size: usize,
        auth_pool_size: usize,
        acquire_timeout_secs: u64,
    ) -> Self {
        let Connections {
            owner,
            app,
            service,
        } = connections;
        Self {
            pool: build_pool(app, pool_size, acquire_timeout_secs),
            service_pool: build_pool(service.clone(), pool_size, acquire_timeout_secs),
            auth_pool: build_pool(service.clone(), auth_pool_size, acquire_timeout_secs),
            owner: Some(owner),
            connect: Some(service),
            embedded: None,
        }
    }

    /// For admin commands: the configured database, or the embedded cluster of a running
    /// `serve` if there is one, else a temporarily started embedded cluster. Admin commands
    /// run as the owner: every pool connects as it.
    pub async fn open_for_admin(settings: &Settings) -> Result<Self, DbError> {
        let owner = match &settings.database.url {
            Some(url) => Some(
                url.expose()
                    .parse::<tokio_postgres::Config>()
                    .map_err(|e| DbError::Unavailable(e.to_string()))?,
            ),
            None => EmbeddedPostgres::attach(
                &settings.data_dir,
                settings.database.embedded.bin_dir.as_deref(),
            )
            .await?
            .map(|pg| pg.pg_config(embedded::DATABASE_NAME)),
        };
        match owner {
            Some(owner) => {
                let pool = build_pool(owner.clone(), 2, settings.database.acquire_timeout_secs);
                Ok(Self::from_pool(pool).with_connect_config(owner))
            }
            None => {
                // No cluster runs: start one for this command, and connect as its owner.
                let mut db = Self::open(settings).await?;
                let owner = db.owner.clone().expect("open knows the owner");
                let pool = build_pool(owner.clone(), 2, settings.database.acquire_timeout_secs);
                db.pool = pool.clone();
                db.service_pool = pool.clone();
                db.auth_pool = pool;
                db.connect = Some(owner);
                Ok(db)
            }
        }
    }

    /// One pool for everything (credential checks and migrations included).
    pub fn from_pool(pool: Pool) -> Self {
        Self::from_pools(pool.clone(), pool)
    }

    /// A pool for everything but credential checks, and one for them.
    pub fn from_pools(pool: Pool, auth_pool: Pool) -> Self {
        Self {
            service_pool: pool.clone(),
            pool,
            auth_pool,
            owner: None,
            connect: None,
            embedded: None,
        }
    }

    /// Says how the service pool connects (tests that build their own pools), so that parts
    /// needing a connection of their own can open one.
    pub fn with_connect_config(mut self, config: tokio_postgres::Config) -> Self {
        self.connect = Some(config);
        self
    }

    /// How the service pool connects, when known.
    pub fn connect_config(&self) -> Option<&tokio_postgres::Config> {
        self.connect.as_ref()
    }

    /// Applies pending migrations as the owner, then grants the runtime roles their privileges
    /// (when they exist).
    pub async fn migrate(&self) -> Result<migrate::Report, DbError> {
        match &self.owner {
            Some(owner) => {
                let (mut client, connection) = owner.connect(NoTls).await?;
                let conn = tokio::spawn(connection);
                let report = migrate::run(&mut client).await;
                drop(client);
                let _ = conn.await;
                Ok(report?)
            }
            None => {
                let mut client = self
                    .service_pool
                    .get()
                    .await
                    .map_err(|e| DbError::Unavailable(e.to_string()))?;
                Ok(migrate::run(&mut client).await?)
            }
        }
    }

    pub fn embedded(&self) -> Option<&EmbeddedPostgres> {
        self.embedded.as_ref()
    }

    pub fn embedded_mut(&mut self) -> Option<&mut EmbeddedPostgres> {
        self.embedded.as_mut()
    }

    /// Closes the pools and stops the embedded cluster if this process started it.
    pub async fn close(mut self) -> Result<(), DbError> {
        self.pool.close();
        self.service_pool.close();
        self.auth_pool.close();
        if let Some(pg) = self.embedded.as_mut() {
            pg.stop().await?;
        }
        Ok(())
    }
}

/// A pool whose connections plan every statement for its parameters and forget the request
/// path's organisations ([`tenancy::RESET`]) each time they are handed out.
pub fn build_pool(
    mut pg_config: tokio_postgres::Config,
    size: usize,
    acquire_timeout_secs: u64,
) -> Pool {
    // Hot statements are prepared once per connection (`db::cached`), but always planned for
    // their parameters: the alarm tables grow from empty, and a generic plan made while they
    // were small kept scanning a whole organisation's alarms for a lookup by id.
    let options = match pg_config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} -c plan_cache_mode=force_custom_plan"),
        _ => "-c plan_cache_mode=force_custom_plan".to_owned(),
    };
    pg_config.options(&options);
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            // Also verifies the connection: after a database restart a fast-recycled one
            // would be dead.
            recycling_method: RecyclingMethod::Custom(tenancy::RESET.to_owned()),
        },
    );
    let timeout = Some(Duration::from_secs(acquire_timeout_secs));
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

/// True when the error means "the database is not there" rather than "the query is wrong": the
/// connection is closed or broken, or the server is shutting down or not yet accepting.
pub fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown,
        // cannot connect now).
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        }
        // No SQLSTATE: an I/O error on the socket.
        None => e.as_db_error().is_none(),
    }
}

/// True when doing the same work again may succeed: the database is away
/// ([`is_connection_error`]), or the transaction lost a deadlock (40P01) or a serialization
/// conflict (40001) to another one, and was rolled back. Anything else is the query or the data.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    is_connection_error(e)
        || e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

/// Is the database answering? Used by `/readyz`.
pub async fn ping(pool: &Pool) -> bool {
    let check = async {
        let client = pool.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}
