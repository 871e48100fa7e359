//! The plan of the derivation pass's alarm transitions. A pass runs its statements under
//! `plan_cache_mode = force_generic_plan`, each planned once per connection, and often while
//! the tables are small (a fresh install, a quiet night); the plan is then used as they grow.
//! So the transitions must reach their alarms by an index whatever the tables held when they
//! were planned: a plan made on empty tables must not read a whole table. (The pass's other
//! lookups by `ANY($1)`, of `device_health` and `devices`, were checked the same way by hand and
//! use their primary keys; they have no test here.)

use homeward_testkit::{spawn_app, TestApp};
use tokio_postgres::SimpleQueryMessage;

/// The generic plan of `sql` (with `params` parameters) as the service role, on the tables as
/// they are.
async fn generic_plan(app: &TestApp, sql: &str, params: usize) -> String {
    let c = app.service_pool.get().await.unwrap();
    c.batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    c.batch_execute(&format!("PREPARE probe AS {sql}"))
        .await
        .unwrap();
    let nulls = vec!["NULL"; params].join(", ");
    let plan = c
        .simple_query(&format!("EXPLAIN EXECUTE probe({nulls})"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    c.batch_execute("DEALLOCATE probe; RESET plan_cache_mode")
        .await
        .unwrap();
    plan
}

/// The tables `plan` reads whole.
fn scanned(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|l| l.split("Seq Scan on ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn the_transitions_reach_each_alarm_by_its_key_in_a_plan_made_on_empty_tables() {
    let app = spawn_app().await;
    // Before it locked `id = ANY(...)`: on empty tables that was planned as a scan of all of
    // `alarms`, then run on every pass as the table grew (5 of 8 ms a call at a few thousand).
    let plan = generic_plan(&app, &homeward::alarms::derive::step_many_sql(), 16).await;
    assert_eq!(
        scanned(&plan),
        Vec::<String>::new(),
        "tables read whole:\n{plan}"
    );
    assert!(
        plan.contains("Index Scan using alarms_pkey on alarms"),
        "each alarm is locked by its key:\n{plan}"
    );
    app.stop().await;
}
