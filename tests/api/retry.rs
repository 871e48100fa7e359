//! Which database errors the writer and the alarm derivation retry (`db::is_transient`): a lost
//! connection, a deadlock and a serialization failure, and nothing the query or data caused.

use homeward::db::{is_connection_error, is_transient};
use homeward_testkit::cluster::TestServer;
use tokio_postgres::NoTls;

/// The error PostgreSQL returns when a statement raises `sqlstate`.
async fn raised(client: &tokio_postgres::Client, sqlstate: &str) -> tokio_postgres::Error {
    let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$");
    client.batch_execute(&sql).await.unwrap_err()
}

#[tokio::test]
async fn only_lost_connections_deadlocks_and_serialization_failures_are_worth_retrying() {
    let server = TestServer::get().await.expect("test PostgreSQL");
    let config = server.fresh_database().await.expect("fresh database");
    let (client, conn) = config.connect(NoTls).await.unwrap();
    let conn = tokio::spawn(conn);

    // (SQLSTATE, connection error, transient)
    for (code, connection, transient) in [
        ("40P01", false, true),  // deadlock detected
        ("40001", false, true),  // serialization failure
        ("57P01", true, true),   // admin shutdown
        ("08006", true, true),   // connection failure
        ("23505", false, false), // unique violation
        ("22012", false, false), // division by zero
        ("42P01", false, false), // undefined table
    ] {
        let e = raised(&client, code).await;
        assert_eq!(e.code().map(|c| c.code()), Some(code));
        assert_eq!(is_connection_error(&e), connection, "{code}");
        assert_eq!(is_transient(&e), transient, "{code}");
    }
    let e = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert!(!is_transient(&e));

    // A connection the server ended.
    let (killer, killer_conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(killer_conn);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let _ = conn.await;
    let e = client.batch_execute("SELECT 1").await.unwrap_err();
    assert!(is_connection_error(&e), "{e}");
    assert!(is_transient(&e), "{e}");
}
