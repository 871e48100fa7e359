//! The database roles Homeward runs as, and the privileges they hold.
//!
//! - The **owner** (the embedded cluster's superuser, or the role of `database.url`) runs the
//!   migrations and the admin commands and owns every table and function.
//! - [`APP_ROLE`] serves the request path (API and console). Row-level security applies to it:
//!   each connection sees only the organisations its caller may see ([`crate::db::tenancy`]).
//! - [`SERVICE_ROLE`] runs ingest, the derivations, the live relay, storage maintenance and the
//!   credential checks that happen before a caller is known. It has `BYPASSRLS`, because its
//!   work spans organisations (one batch holds many devices' events).
//!
//! Neither runtime role owns anything, so neither can alter or drop a table; both may only
//! insert and read raw events ([`GRANTS`]). Retention drops partitions through SECURITY DEFINER
//! functions of the owner (migration 0018) that only the service role may call.
//!
//! Roles belong to the cluster. The embedded cluster creates both at every start
//! ([`ensure`]); with an external database the operator creates them
//! (`homeward migrate --print-grants`, `docs/operations.md`), and the migration runner grants
//! them their privileges after every run, once they exist.

use tokio_postgres::Client;

/// The request path's role.
pub const APP_ROLE: &str = "homeward_app";
/// The role of ingest, derivations, the live relay, maintenance and credential checks.
pub const SERVICE_ROLE: &str = "homeward_service";

/// The privileges of both roles, applied by the owner after every migration run.
pub const GRANTS: &str = include_str!("grants.sql");

/// Creates [`APP_ROLE`] and [`SERVICE_ROLE`] if missing and (re)sets their attributes and
/// password. Needs a superuser (only one may grant `BYPASSRLS`); idempotent, and safe when two
/// processes run it at once.
pub async fn ensure(client: &Client, password: &str) -> Result<(), tokio_postgres::Error> {
    let password = quote_literal(password);
    for (role, attributes) in [(APP_ROLE, "NOBYPASSRLS"), (SERVICE_ROLE, "BYPASSRLS")] {
        client
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
                 ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                     {attributes} PASSWORD {password};"
            ))
            .await?;
    }
    Ok(())
}

/// Do both roles exist in this cluster?
pub async fn exist(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
            &[&APP_ROLE, &SERVICE_ROLE],
        )
        .await?
        .get(0);
    Ok(found == 2)
}

/// What `homeward migrate --print-grants` prints: the roles to create once per cluster, then
/// [`GRANTS`].
pub fn operator_sql() -> String {
    format!(
        "-- Once per cluster, as a superuser (only a superuser may grant BYPASSRLS).\n\
         -- Choose the passwords; put them in database.app_url and database.service_url.\n\
         CREATE ROLE {APP_ROLE} LOGIN NOBYPASSRLS PASSWORD 'choose-a-password';\n\
         CREATE ROLE {SERVICE_ROLE} LOGIN BYPASSRLS PASSWORD 'choose-another-password';\n\
         \n\
         -- In Homeward's database, as the owner that runs the migrations, after them.\n\
         -- `homeward migrate` and `homeward serve` apply this themselves once the roles exist.\n\
         {GRANTS}"
    )
}

/// A SQL string literal (standard-conforming strings, PostgreSQL's default since 9.1).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sql_creates_both_roles_then_grants() {
        let sql = operator_sql();
        let create_app = sql.find("CREATE ROLE homeward_app").expect("the app role");
        let create_service = sql
            .find("CREATE ROLE homeward_service LOGIN BYPASSRLS")
            .expect("the service role, bypassing row-level security");
        let grants = sql.find(GRANTS).expect("the grants");
        assert!(create_app < grants && create_service < grants);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
