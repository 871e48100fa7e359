//! The migration runner. Rules for the files are in `migrations/README.md`.
//!
//! - Runs under a PostgreSQL advisory lock, so several instances starting together migrate once.
//! - Decides the storage mode once, by trying `CREATE EXTENSION timescaledb` (the extension's
//!   files may be installed while its library is not preloaded; then the statement fails and
//!   we take the native path), and records it in `homeward_storage`.
//! - Each applied file is recorded with a SHA-256 of its text; an applied file that changed is
//!   an error, because migrations are never edited once landed.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

mod embedded_files {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// Advisory lock key for migrations ("homeward" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x686f_6d65_7761_7264;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// Plain PostgreSQL with declarative partitioning.
    Native,
    /// TimescaleDB hypertables, compression, retention policies and continuous aggregates.
    TimescaleDb,
}

impl StorageMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::TimescaleDb => "timescaledb",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "timescaledb" => Some(Self::TimescaleDb),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration {name}: {source}")]
    Failed {
        name: String,
        source: tokio_postgres::Error,
    },
    #[error("migration {name} was edited after it was applied; migrations are never edited once landed, add a new one instead")]
    Edited { name: String },
    #[error("bad migration file name {0}: expected NNNN_purpose[.native|.timescale].sql")]
    BadName(String),
    #[error("the database records storage mode `{0}`, which this version does not know")]
    UnknownMode(String),
    #[error("migrations: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// One migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub only_for: Option<StorageMode>,
    pub sql: &'static str,
}

impl Migration {
    fn no_transaction(&self) -> bool {
        self.sql.starts_with("-- homeward:no-transaction")
    }

    fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).to_vec()
    }
}

/// Every migration embedded in this binary, in order.
pub fn all() -> Result<Vec<Migration>, MigrateError> {
    embedded_files::FILES
        .iter()
        .map(|(name, sql)| parse_name(name, sql))
        .collect()
}

fn parse_name(name: &'static str, sql: &'static str) -> Result<Migration, MigrateError> {
    let bad = || MigrateError::BadName(name.to_string());
    let stem = name.strip_suffix(".sql").ok_or_else(bad)?;
    let (stem, only_for) = if let Some(s) = stem.strip_suffix(".native") {
        (s, Some(StorageMode::Native))
    } else if let Some(s) = stem.strip_suffix(".timescale") {
        (s, Some(StorageMode::TimescaleDb))
    } else {
        (stem, None)
    };
    let (number, purpose) = stem.split_once('_').ok_or_else(bad)?;
    if number.len() != 4 || purpose.is_empty() || stem.contains('.') {
        return Err(bad());
    }
    let version = number.parse::<i32>().map_err(|_| bad())?;
    Ok(Migration {
        version,
        name,
        only_for,
        sql,
    })
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: StorageMode,
    pub applied: Vec<&'static str>,
}

/// Applies every pending migration. Safe to call concurrently and repeatedly.
pub async fn run(client: &mut Client) -> Result<Report, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = run_locked(client).await;
    // Unlock even after a failure; the session ends soon anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn run_locked(client: &mut Client) -> Result<Report, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS homeward_migrations (
                 version    integer NOT NULL,
                 name       text PRIMARY KEY,
                 checksum   bytea NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE TABLE IF NOT EXISTS homeward_storage (
                 singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                 mode       text NOT NULL,
                 decided_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let mode = storage_mode(client).await?;
    let applied: Vec<(String, Vec<u8>)> = client
        .query("SELECT name, checksum FROM homeward_migrations", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut report = Report {
        mode,
        applied: Vec::new(),
    };
    for migration in all()? {
        if migration.only_for.is_some_and(|m| m != mode) {
            continue;
        }
        if let Some((_, checksum)) = applied.iter().find(|(n, _)| n == migration.name) {
            if *checksum != migration.checksum() {
                return Err(MigrateError::Edited {
                    name: migration.name.to_string(),
                });
            }
            continue;
        }
        apply(client, &migration).await?;
        tracing::info!(migration = migration.name, "applied migration");
        report.applied.push(migration.name);
    }
    Ok(report)
}

async fn apply(client: &mut Client, migration: &Migration) -> Result<(), MigrateError> {
    let failed = |source| MigrateError::Failed {
        name: migration.name.to_string(),
        source,
    };
    let record = "INSERT INTO homeward_migrations (version, name, checksum) VALUES ($1, $2, $3)";
    if migration.no_transaction() {
        // Exactly one statement, sent alone so PostgreSQL runs it outside a transaction block.
        client.batch_execute(migration.sql).await.map_err(failed)?;
        client
            .execute(
                record,
                &[&migration.version, &migration.name, &migration.checksum()],
            )
            .await
            .map_err(failed)?;
    } else {
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            record,
            &[&migration.version, &migration.name, &migration.checksum()],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
    }
    Ok(())
}

/// The recorded mode, or, on first run, the result of trying to enable TimescaleDB.
async fn storage_mode(client: &mut Client) -> Result<StorageMode, MigrateError> {
    if let Some(row) = client
        .query_opt("SELECT mode FROM homeward_storage", &[])
        .await?
    {
        let mode: String = row.get(0);
        let mode = StorageMode::parse(&mode).ok_or(MigrateError::UnknownMode(mode))?;
        if mode == StorageMode::TimescaleDb {
            // Keep the extension current with the installed library version is the operator's
            // job (ALTER EXTENSION); here we only make sure it exists.
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await?;
        }
        return Ok(mode);
    }
    let mode = match client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        Ok(()) => {
            tracing::info!("TimescaleDB is available: using hypertables, compression and continuous aggregates");
            StorageMode::TimescaleDb
        }
        Err(e) => {
            let why = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            tracing::info!(reason = %why, "TimescaleDB is not available: using native PostgreSQL partitioning");
            StorageMode::Native
        }
    };
    client
        .execute(
            "INSERT INTO homeward_storage (mode) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&mode.as_str()],
        )
        .await?;
    Ok(mode)
}

/// The mode recorded in an already migrated database.
pub async fn recorded_mode(client: &Client) -> Result<Option<StorageMode>, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('homeward_storage') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    match client
        .query_opt("SELECT mode FROM homeward_storage", &[])
        .await?
    {
        Some(row) => {
            let mode: String = row.get(0);
            Ok(Some(
                StorageMode::parse(&mode).ok_or(MigrateError::UnknownMode(mode))?,
            ))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_valid_name_and_versions_are_ordered() {
        let all = all().expect("names parse");
        assert!(!all.is_empty());
        for pair in all.windows(2) {
            assert!(
                pair[0].version <= pair[1].version,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for m in &all {
            if m.no_transaction() {
                // One statement only: no semicolon before the final one.
                let body = m.sql.trim_end().trim_end_matches(';');
                assert!(
                    !body.contains(';'),
                    "{} must hold exactly one statement",
                    m.name
                );
            }
        }
    }

    #[test]
    fn names_parse() {
        let m = parse_name("0003_rollups.timescale.sql", "").unwrap();
        assert_eq!((m.version, m.only_for), (3, Some(StorageMode::TimescaleDb)));
        assert!(parse_name("3_x.sql", "").is_err());
        assert!(parse_name("0003_x.other.sql", "").is_err());
    }
}
