//! What the database itself enforces on the application's roles: raw events are insert-only,
//! row-level security keeps each connection of the request path to its caller's organisations,
//! and every table the migrations create is granted to the roles. Checked through the
//! application's own pools, taken as the application takes them.

use homeward::auth::{OrgKind, Role};
use homeward::db::{roles, tenancy};
use homeward_testkit::{spawn_app, TestApp};
use tokio_postgres::error::SqlState;

/// Stores one raw event for a new device of `org` (through the owner's pool).
async fn one_event(app: &TestApp, org: &homeward::auth::Organisation) {
    app.device(org, "rls-hub-1", "hub").await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO events (device_id, seq, kind, occurred_at, data)
             SELECT id, 1, 1, now(), '{}'::jsonb FROM devices WHERE uid = 'rls-hub-1'",
            &[],
        )
        .await
        .unwrap();
}

/// A person of `org` with this external reference (through the owner's pool).
async fn person(app: &TestApp, org: i32, reference: &str) {
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO people (organisation_id, external_ref) VALUES ($1, $2)",
            &[&org, &reference],
        )
        .await
        .unwrap();
}

/// Every person's reference a connection can see, with no filter at all.
async fn people(client: &deadpool_postgres::Client) -> Vec<String> {
    let mut refs: Vec<String> = client
        .query("SELECT external_ref FROM people", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    refs.sort();
    refs
}

fn refused(result: Result<u64, tokio_postgres::Error>, what: &str) {
    let err = result.expect_err(what);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{what}: {err}"
    );
}

#[tokio::test]
async fn raw_events_cannot_be_changed_or_removed_through_the_applications_pools() {
    let app = spawn_app().await;
    let (org, _) = app
        .org_with_user("Events Ltd", OrgKind::Provider, Role::ProviderAdmin)
        .await;
    one_event(&app, &org).await;

    // The request path (as a caller of the device's own organisation), and the service role
    // that ingest writes with.
    let request = tenancy::checkout(&app.app_pool, org.id).await.unwrap();
    let service = app.service_pool.get().await.unwrap();
    for (who, client) in [("request path", &**request), ("service", &**service)] {
        let seen: i64 = client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 1, "{who} reads raw events");
        refused(
            client
                .execute("UPDATE events SET data = '{\"edited\":true}'", &[])
                .await,
            &format!("{who}: UPDATE"),
        );
        refused(
            client.execute("DELETE FROM events", &[]).await,
            &format!("{who}: DELETE"),
        );
        refused(
            client.execute("TRUNCATE events", &[]).await,
            &format!("{who}: TRUNCATE"),
        );
        // Not through a partition either, nor by dropping one.
        refused(
            client.execute("DELETE FROM events_default", &[]).await,
            &format!("{who}: DELETE from the DEFAULT partition"),
        );
        let dropped = client.execute("DROP TABLE events_default", &[]).await;
        assert!(dropped.is_err(), "{who}: DROP TABLE of a partition");
    }
    // Retention is the maintenance functions' alone: the request path may not call them.
    refused(
        request
            .execute(
                "SELECT homeward_drop_partitions_before('events', '2999-01-01')",
                &[],
            )
            .await,
        "request path: retention",
    );
    let stored: i64 = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events WHERE data = '{}'::jsonb", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the event is there, unchanged");
}

#[tokio::test]
async fn an_unfiltered_query_on_the_request_path_sees_only_the_callers_organisations() {
    let app = spawn_app().await;
    let a = app.organisation("Provider A", OrgKind::Provider).await;
    let b = app.organisation("Provider B", OrgKind::Provider).await;
    let c = app.organisation("Provider C", OrgKind::Provider).await;
    let council = app.organisation("Council", OrgKind::Commissioner).await;
    for (org, refs) in [(&a, ["a1", "a2"]), (&b, ["b1", "b2"]), (&c, ["c1", "c2"])] {
        for r in refs {
            person(&app, org.id, r).await;
        }
    }
    // The council contracts A and C, not B.
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on)
             VALUES ($1, $2, 'CA', '2026-01-01'), ($1, $3, 'CC', '2026-01-01')",
            &[&council.id, &a.id, &c.id],
        )
        .await
        .unwrap();

    // A provider: its own people only, though the query names no organisation.
    let provider = tenancy::checkout(&app.app_pool, a.id).await.unwrap();
    assert_eq!(people(&provider).await, ["a1", "a2"]);
    // Nor can it write another organisation's rows, or change one of its own into one.
    let policy_refused = |result: Result<u64, tokio_postgres::Error>, what: &str| {
        let err = result.expect_err(what);
        let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert!(message.contains("row-level security"), "{what}: {err:?}");
    };
    policy_refused(
        provider
            .execute(
                "INSERT INTO people (organisation_id, external_ref) VALUES ($1, 'sneaked')",
                &[&b.id],
            )
            .await,
        "a new row of another organisation",
    );
    policy_refused(
        provider
            .execute("UPDATE people SET organisation_id = $1", &[&b.id])
            .await,
        "handing its rows to another organisation",
    );
    let moved = provider
        .execute(
            "UPDATE people SET external_ref = 'x' WHERE organisation_id = $1",
            &[&b.id],
        )
        .await
        .unwrap();
    assert_eq!(
        moved, 0,
        "another organisation's rows are not there to update"
    );
    drop(provider);

    // A commissioner: the providers it contracts, not the one it does not.
    let commissioner = tenancy::checkout(&app.app_pool, council.id).await.unwrap();
    assert_eq!(people(&commissioner).await, ["a1", "a2", "c1", "c2"]);
    let contracts: i64 = commissioner
        .query_one("SELECT count(*) FROM contracts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(contracts, 2);
    drop(commissioner);

    // A connection whose organisations nobody set (or the pool reset) sees nothing: the pool
    // hands every connection out reset, whoever used it before.
    let mut unset = Vec::new();
    for _ in 0..8 {
        unset.push(app.app_pool.get().await.unwrap());
    }
    for client in &unset {
        assert!(people(client).await.is_empty(), "fails closed");
    }
    drop(unset);

    // The owner (migrations, admin commands) is not limited.
    assert_eq!(people(&app.pool.get().await.unwrap()).await.len(), 6);
}

/// The application under test serves requests as `homeward_app` (no superuser, no bypass) and
/// ingests as `homeward_service`, so the whole suite runs the request path under row-level
/// security.
#[tokio::test]
async fn the_api_runs_as_the_application_role_under_row_level_security() {
    let app = spawn_app().await;
    let client = app.app_pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls
               FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), roles::APP_ROLE);
    assert!(!row.get::<_, bool>(1) && !row.get::<_, bool>(2));
    let service = app.service_pool.get().await.unwrap();
    let user: String = service
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, roles::SERVICE_ROLE);
}

/// Every table and view a migration creates is granted to both roles (the runner grants after
/// each run); a table without grants would fail at its first use on the request path.
#[tokio::test]
async fn every_table_is_granted_to_the_application_roles() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    let missing: Vec<String> = client
        .query(
            "SELECT format('%s to %s', c.relname, r)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                    unnest(ARRAY[$1, $2]) r
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                AND NOT c.relispartition
                AND NOT has_table_privilege(r, c.oid, 'SELECT')
              ORDER BY 1",
            &[&roles::APP_ROLE, &roles::SERVICE_ROLE],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "tables without grants: {missing:?}");
    // Append-only for both; everything else may be written.
    for role in [roles::APP_ROLE, roles::SERVICE_ROLE] {
        for (table, privilege, expected) in [
            ("events", "INSERT", true),
            ("events", "UPDATE", false),
            ("events", "DELETE", false),
            ("events", "TRUNCATE", false),
            ("people", "UPDATE", true),
            ("people", "TRUNCATE", false),
            ("homeward_migrations", "INSERT", false),
        ] {
            let has: bool = client
                .query_one(
                    "SELECT has_table_privilege($1, $2, $3)",
                    &[&role, &table, &privilege],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(has, expected, "{role} {privilege} on {table}");
        }
    }
}

/// The one-line policy a new tenant table gets (the audit log's, say, whose platform rows have
/// no organisation): its rows show to their organisation's callers only, platform rows to none.
#[tokio::test]
async fn the_policy_helper_covers_a_new_table_in_one_line() {
    let app = spawn_app().await;
    let a = app.organisation("Helper A", OrgKind::Provider).await;
    let b = app.organisation("Helper B", OrgKind::Provider).await;
    let owner = app.pool.get().await.unwrap();
    owner
        .batch_execute(&format!(
            "CREATE TABLE audit_like (organisation_id integer, what text NOT NULL);
             SELECT homeward_tenant_policy('audit_like', 'organisation_id');
             INSERT INTO audit_like VALUES ({a}, 'a'), ({b}, 'b'), (NULL, 'platform');
             GRANT SELECT, INSERT ON audit_like TO {role};",
            a = a.id,
            b = b.id,
            role = roles::APP_ROLE
        ))
        .await
        .unwrap();
    let client = tenancy::checkout(&app.app_pool, a.id).await.unwrap();
    let seen: Vec<String> = client
        .query("SELECT what FROM audit_like ORDER BY what", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["a"]);
    let platform = client
        .execute("INSERT INTO audit_like VALUES (NULL, 'sneaked')", &[])
        .await;
    assert!(
        platform.is_err(),
        "a platform row is not the caller's to write"
    );
}
