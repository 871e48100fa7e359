//! The database: the connection pool, the embedded PostgreSQL, migrations and the storage
//! policy (TimescaleDB or native partitioning).
//!
//! Pool connections are verified when recycled (a cheap query), because after a database
//! restart a fast-recycled connection would be dead; a failed check drops it and the pool opens
//! a new one. That is what lets every part of Homeward recover from a database outage without a
//! restart.

pub mod cached;
pub mod embedded;
pub mod maintenance;
pub mod migrate;

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

/// The pools plus, when Homeward runs its own PostgreSQL, that cluster.
pub struct Database {
    pub pool: Pool,
    /// A few connections of their own for credential checks (tokens, device secrets), so that a
    /// flood of requests with bad credentials cannot take the connections ingest and the API
    /// need, and a busy pool cannot stop devices and users from signing in.
    pub auth_pool: Pool,
    /// How the pools connect, for a connection of one's own outside them (the live stream's
    /// `LISTEN`); `None` when the pools were handed in without it.
    connect: Option<tokio_postgres::Config>,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `database.url`, or starts (or, with `attach`, finds) the embedded cluster.
    pub async fn open(settings: &Settings) -> Result<Self, DbError> {
        let (pg_config, embedded) = match &settings.database.url {
            Some(url) => {
                // Validated when the configuration was loaded.
                let config: tokio_postgres::Config = url
                    .expose()
                    .parse()
                    .map_err(|e: tokio_postgres::Error| DbError::Unavailable(e.to_string()))?;
                (config, None)
            }
            None => {
                let options = embedded::StartOptions {
                    port: settings.database.embedded.port,
                    bin_dir: settings.database.embedded.bin_dir.clone(),
                    server_settings: Vec::new(),
                };
                let pg = EmbeddedPostgres::start(&settings.data_dir, &options).await?;
                (pg.pg_config(embedded::DATABASE_NAME), Some(pg))
            }
        };
        let auth_pool = build_pool(
            pg_config.clone(),
            settings.database.auth_pool_size,
            settings.database.acquire_timeout_secs,
        );
        let pool = build_pool(
            pg_config.clone(),
            settings.database.pool_size,
            settings.database.acquire_timeout_secs,
        );
        Ok(Self {
            pool,
            auth_pool,
            connect: Some(pg_config),
            embedded,
        })
    }

    /// For admin commands: the configured database, or the embedded cluster of a running
    /// `serve` if there is one, else a temporarily started embedded cluster.
    pub async fn open_for_admin(settings: &Settings) -> Result<Self, DbError> {
        if settings.database.url.is_none() {
            if let Some(pg) = EmbeddedPostgres::attach(
                &settings.data_dir,
                settings.database.embedded.bin_dir.as_deref(),
            )
            .await?
            {
                let pool = build_pool(
                    pg.pg_config(embedded::DATABASE_NAME),
                    2,
                    settings.database.acquire_timeout_secs,
                );
                return Ok(Self {
                    auth_pool: pool.clone(),
                    pool,
                    connect: Some(pg.pg_config(embedded::DATABASE_NAME)),
                    embedded: None,
                });
            }
        }
        Self::open(settings).await
    }

    /// One pool for everything (credential checks included).
    pub fn from_pool(pool: Pool) -> Self {
        Self::from_pools(pool.clone(), pool)
    }

    /// A pool, and another for credential checks.
    pub fn from_pools(pool: Pool, auth_pool: Pool) -> Self {
        Self {
            pool,
            auth_pool,
            connect: None,
            embedded: None,
        }
    }

    /// Says how the pools connect (tests that build their own pools), so that parts needing a
    /// connection of their own can open one.
    pub fn with_connect_config(mut self, config: tokio_postgres::Config) -> Self {
        self.connect = Some(config);
        self
    }

    /// How the pools connect, when known.
    pub fn connect_config(&self) -> Option<&tokio_postgres::Config> {
        self.connect.as_ref()
    }

    pub fn embedded(&self) -> Option<&EmbeddedPostgres> {
        self.embedded.as_ref()
    }

    pub fn embedded_mut(&mut self) -> Option<&mut EmbeddedPostgres> {
        self.embedded.as_mut()
    }

    /// Closes the pool and stops the embedded cluster if this process started it.
    pub async fn close(mut self) -> Result<(), DbError> {
        self.pool.close();
        self.auth_pool.close();
        if let Some(pg) = self.embedded.as_mut() {
            pg.stop().await?;
        }
        Ok(())
    }
}

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
            recycling_method: RecyclingMethod::Verified,
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
