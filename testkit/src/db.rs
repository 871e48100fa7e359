//! Stored rows as tests compare them.

/// A `postgres://` URL for a test database, for child processes.
pub fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("unexpected host {other:?}"),
    };
    format!(
        "postgres://{}:{}@{}:{}/{}",
        config.get_user().expect("a user"),
        String::from_utf8(config.get_password().expect("a password").to_vec())
            .expect("a UTF-8 password"),
        host,
        config.get_ports()[0],
        config.get_dbname().expect("a database")
    )
}

/// The environment that points a `homeward serve` child process at a test database as in
/// production: `database.url` as the owner (migrations), `database.app_url` and
/// `database.service_url` as the runtime roles.
pub fn serve_database_envs(owner: &tokio_postgres::Config) -> Vec<(&'static str, String)> {
    use homeward::db::roles::{APP_ROLE, SERVICE_ROLE};
    let role = |r| url_of(&crate::cluster::role_config(owner, r));
    vec![
        ("HOMEWARD__DATABASE__URL", url_of(owner)),
        ("HOMEWARD__DATABASE__APP_URL", role(APP_ROLE)),
        ("HOMEWARD__DATABASE__SERVICE_URL", role(SERVICE_ROLE)),
    ]
}

/// (rows, distinct seqs) stored for one device.
pub async fn event_counts(pool: &deadpool_postgres::Pool, uid: &str) -> (i64, i64) {
    let client = pool.get().await.expect("a connection");
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT e.seq) FROM events e JOIN devices d ON d.id = e.device_id WHERE d.uid = $1",
            &[&uid],
        )
        .await
        .expect("the counts");
    (row.get(0), row.get(1))
}

/// Every derived row (visits, alarms, alarm history, device health) without surrogate ids, in
/// a stable order: what a rebuild from the raw events and the reference data must reproduce.
/// Alarm history names its alarm by the event that opened it, not by the alarm's id.
#[derive(Debug, PartialEq, Eq)]
pub struct Derived {
    pub visits: Vec<String>,
    pub alarms: Vec<String>,
    pub alarm_events: Vec<String>,
    pub device_health: Vec<String>,
}

pub async fn derived_snapshot(pool: &deadpool_postgres::Pool) -> Derived {
    let client = pool.get().await.expect("a connection");
    let rows = |sql: &'static str| {
        let client = &client;
        async move {
            let mut rows: Vec<String> = client
                .query(sql, &[])
                .await
                .expect("the rows")
                .iter()
                .map(|r| r.get(0))
                .collect();
            rows.sort();
            rows
        }
    };
    Derived {
        visits: rows("SELECT (to_jsonb(v) - 'id')::text FROM visits v").await,
        alarms: rows("SELECT (to_jsonb(a) - 'id')::text FROM alarms a").await,
        alarm_events: rows(
            "SELECT (to_jsonb(e) - 'id' - 'alarm_id'
                     || jsonb_build_object('alarm', jsonb_build_array(a.source_device_id, a.source_seq, a.kind)))::text
               FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id",
        )
        .await,
        device_health: rows("SELECT to_jsonb(h)::text FROM device_health h").await,
    }
}
