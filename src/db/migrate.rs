//! The migration runner. Rules for the files are in `migrations/README.md`.
//!
//! - Runs under a PostgreSQL advisory lock, so several instances starting together migrate once.
//! - Decides the storage mode once and records it in `homeward_storage`: TimescaleDB when the
//!   extension is installed (`pg_available_extensions`) and preloaded
//!   (`shared_preload_libraries`) and `CREATE EXTENSION` then succeeds, native partitioning
//!   otherwise. The catalogues are read first because the extension's files may be installed
//!   while its library is not preloaded, and then `CREATE EXTENSION` ends the session.
//! - After the files, grants the runtime roles their privileges ([`super::roles::GRANTS`]) when
//!   both exist, on every run, so tables added by new migrations get them at once.
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
    /// TimescaleDB hypertables with compression and retention policies.
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
    #[error("the database was migrated for TimescaleDB, but the server has no timescaledb extension or does not preload it (shared_preload_libraries)")]
    TimescaleMissing,
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
    /// Why TimescaleDB is not used, when this run decided the mode and chose native.
    pub native_reason: Option<String>,
    pub applied: Vec<&'static str>,
    /// The runtime roles exist and were granted their privileges.
    pub granted: bool,
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
    let (mode, native_reason) = storage_mode(client).await?;
    let applied: Vec<(String, Vec<u8>)> = client
        .query("SELECT name, checksum FROM homeward_migrations", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut report = Report {
        mode,
        native_reason,
        applied: Vec::new(),
        granted: false,
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
    if super::roles::exist(client).await? {
        client
            .batch_execute(super::roles::GRANTS)
            .await
            .map_err(|source| MigrateError::Failed {
                name: "grants".into(),
                source,
            })?;
        report.granted = true;
    } else {
        tracing::warn!(
            "the roles homeward_app and homeward_service do not exist, so nothing was granted \
             to them; see `homeward migrate --print-grants`"
        );
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

/// The recorded mode, or, on first run, the mode the server supports (see [`decide_mode`]).
async fn storage_mode(client: &mut Client) -> Result<(StorageMode, Option<String>), MigrateError> {
    if let Some(row) = client
        .query_opt("SELECT mode FROM homeward_storage", &[])
        .await?
    {
        let mode: String = row.get(0);
        let mode = StorageMode::parse(&mode).ok_or(MigrateError::UnknownMode(mode))?;
        if mode == StorageMode::TimescaleDb {
            // Never run a statement that loads the library when it is known not to be
            // preloaded: that ends the session. Say what is wrong instead.
            let probe = probe_timescale(client).await?;
            if !probe.available || probe.preloaded == Some(false) {
                return Err(MigrateError::TimescaleMissing);
            }
            // Keeping the extension current with the installed library version is the
            // operator's job (ALTER EXTENSION); here we only make sure it exists.
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await?;
        }
        return Ok((mode, None));
    }
    let probe = probe_timescale(client).await?;
    let (mode, reason) = match decide_mode(probe) {
        ModeDecision::Native(reason) => {
            if probe.available {
                tracing::warn!(
                    reason,
                    "TimescaleDB is not used: using native PostgreSQL partitioning"
                );
            } else {
                tracing::info!(
                    reason,
                    "TimescaleDB is not available: using native PostgreSQL partitioning"
                );
            }
            (StorageMode::Native, Some(reason.to_string()))
        }
        ModeDecision::TryTimescale => {
            // In a transaction, so that an ordinary failure (a role without the right to create
            // it, say) rolls back and leaves this session usable for the native path.
            let tx = client.transaction().await?;
            match tx
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await
            {
                Ok(()) => {
                    tx.commit().await?;
                    tracing::info!(
                        "TimescaleDB is available: using hypertables, compression and retention policies"
                    );
                    (StorageMode::TimescaleDb, None)
                }
                Err(e) => {
                    let why = e
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string());
                    // A FATAL error has closed the session: nothing more can run on it.
                    tx.rollback().await.map_err(|_| MigrateError::Postgres(e))?;
                    tracing::warn!(reason = %why, "TimescaleDB could not be enabled: using native PostgreSQL partitioning");
                    (StorageMode::Native, Some(why))
                }
            }
        }
    };
    client
        .execute(
            "INSERT INTO homeward_storage (mode) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&mode.as_str()],
        )
        .await?;
    Ok((mode, reason))
}

/// What the server says about TimescaleDB, read from its catalogues without loading anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimescaleProbe {
    /// The extension's files are installed (`pg_available_extensions`).
    pub available: bool,
    /// `shared_preload_libraries` names it; `None` when this role may not read the setting
    /// (it is visible only to superusers and members of `pg_read_all_settings`).
    pub preloaded: Option<bool>,
    /// `CREATE EXTENSION timescaledb` has already been run in this database.
    pub created: bool,
}

/// What to do about TimescaleDB on the first migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeDecision {
    /// Try `CREATE EXTENSION IF NOT EXISTS timescaledb` (inside a transaction).
    TryTimescale,
    /// Use native partitioning, for this reason (logged once).
    Native(&'static str),
}

/// Decides from the catalogues alone. `CREATE EXTENSION timescaledb` is only attempted when the
/// library is known to be preloaded (or the extension already exists here): with the files
/// installed but the library not preloaded, TimescaleDB's loader ends the session with a FATAL
/// error ("extension \"timescaledb\" must be preloaded"), which would leave the migration
/// running on a dead connection.
pub fn decide_mode(probe: TimescaleProbe) -> ModeDecision {
    if !probe.available {
        return ModeDecision::Native("the timescaledb extension is not installed on the server");
    }
    match probe.preloaded {
        Some(true) => ModeDecision::TryTimescale,
        Some(false) => ModeDecision::Native(
            "the timescaledb extension is installed but not in shared_preload_libraries \
             (add it there and restart PostgreSQL to use TimescaleDB)",
        ),
        None if probe.created => ModeDecision::TryTimescale,
        None => ModeDecision::Native(
            "cannot read shared_preload_libraries (needs a superuser or pg_read_all_settings), \
             so TimescaleDB is not tried; create the extension first to use it",
        ),
    }
}

/// Does a `shared_preload_libraries` value name TimescaleDB? Entries may be quoted, carry a
/// path (`$libdir/timescaledb`) or a `.so` suffix.
pub fn preloads_timescaledb(setting: &str) -> bool {
    setting.split(',').any(|entry| {
        let entry = entry.trim().trim_matches('"').trim();
        let base = entry.rsplit('/').next().unwrap_or(entry);
        let base = base.strip_suffix(".so").unwrap_or(base);
        base == "timescaledb"
    })
}

/// Reads the catalogues; loads no library and cannot fail for lack of TimescaleDB.
pub async fn probe_timescale(client: &Client) -> Result<TimescaleProbe, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
                    (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'),
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await?;
    let setting: Option<String> = row.get(1);
    Ok(TimescaleProbe {
        available: row.get(0),
        // pg_settings hides the row from roles that may not read it.
        preloaded: setting.map(|s| preloads_timescaledb(&s)),
        created: row.get(2),
    })
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

    #[test]
    fn the_mode_is_decided_without_loading_an_unpreloaded_library() {
        let probe = |available, preloaded, created| TimescaleProbe {
            available,
            preloaded,
            created,
        };
        // Not installed: native, whatever else holds.
        assert!(matches!(
            decide_mode(probe(false, Some(true), false)),
            ModeDecision::Native(r) if r.contains("not installed")
        ));
        // Installed but not preloaded (the state right after installing the package): native,
        // without trying CREATE EXTENSION, which would end the session.
        for created in [false, true] {
            assert!(matches!(
                decide_mode(probe(true, Some(false), created)),
                ModeDecision::Native(r) if r.contains("shared_preload_libraries")
            ));
        }
        // Installed and preloaded: try it.
        assert_eq!(
            decide_mode(probe(true, Some(true), false)),
            ModeDecision::TryTimescale
        );
        // The setting is hidden from this role: try only if the extension already exists.
        assert_eq!(
            decide_mode(probe(true, None, true)),
            ModeDecision::TryTimescale
        );
        assert!(matches!(
            decide_mode(probe(true, None, false)),
            ModeDecision::Native(_)
        ));
    }

    #[test]
    fn preload_settings_are_read_as_postgresql_writes_them() {
        for yes in [
            "timescaledb",
            "pg_stat_statements, timescaledb",
            "\"timescaledb\"",
            "$libdir/timescaledb",
            "timescaledb.so,auto_explain",
        ] {
            assert!(preloads_timescaledb(yes), "{yes}");
        }
        for no in ["", "pg_stat_statements", "timescaledb_toolkit"] {
            assert!(!preloads_timescaledb(no), "{no}");
        }
    }
}
