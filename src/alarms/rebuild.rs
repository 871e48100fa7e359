//! Recomputing the derived alarm tables (`alarms`, `alarm_events`, `device_health`) from the
//! sources of truth: raw `events`, reference data (`devices`) and staff actions
//! (`alarm_actions`). Events and actions are replayed merged in time order through the same
//! functions as live derivation, in one transaction, and every alarm keeps its id (by the event
//! that opened it) so staff actions still point at it. Every derived table can
//! be rebuilt from raw events and the reference data."

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::derive::{self, ActionRow, IdMap, Input, Known, Rules};
use super::model::{Action, AlarmKind, Outcome};
use super::{AlarmError, AlarmSettings};

/// What a rebuild did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    pub events: usize,
    pub actions: usize,
    /// Staff actions that no longer apply (their alarm is not in a state they start from).
    pub skipped_actions: usize,
    pub alarms: i64,
}

/// Rebuilds with the default settings, as of now.
pub async fn rebuild(pool: &deadpool_postgres::Pool) -> Result<RebuildReport, AlarmError> {
    rebuild_with(pool, &AlarmSettings::default(), Utc::now()).await
}

/// Rebuilds with `settings`; `now` decides which devices are missing at the end.
pub async fn rebuild_with(
    pool: &deadpool_postgres::Pool,
    settings: &AlarmSettings,
    now: DateTime<Utc>,
) -> Result<RebuildReport, AlarmError> {
    let rules = Rules::from(settings);
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // Live derivation waits while this runs; readers see the old rows until commit.
    tx.batch_execute(
        "LOCK TABLE alarms, alarm_events, device_health, alarm_cursor IN EXCLUSIVE MODE",
    )
    .await?;
    let mut ids = IdMap::new();
    for row in tx
        .query(
            "SELECT source_device_id, source_seq, kind, id FROM alarms",
            &[],
        )
        .await?
    {
        let kind: String = row.get(2);
        if let Some(kind) = AlarmKind::parse(&kind) {
            ids.insert((row.get(0), row.get(1), kind), row.get(3));
        }
    }
    tx.batch_execute(
        "DELETE FROM alarm_events; DELETE FROM alarms; DELETE FROM device_health; \
         DELETE FROM alarm_cursor;",
    )
    .await?;
    let mut actions = Vec::new();
    for row in tx
        .query(
            "SELECT id, organisation_id, alarm_id, action, user_id, at, outcome, fall \
               FROM alarm_actions ORDER BY at, id",
            &[],
        )
        .await?
    {
        let action: String = row.get(3);
        let outcome: Option<String> = row.get(6);
        let Some(action) = Action::parse(&action) else {
            continue;
        };
        actions.push(ActionRow {
            id: row.get(0),
            organisation_id: row.get(1),
            alarm_id: row.get(2),
            action,
            user_id: row.get(4),
            at: row.get(5),
            outcome: outcome.as_deref().and_then(Outcome::parse),
            fall: row.get(7),
        });
    }
    let mut report = RebuildReport {
        actions: actions.len(),
        ..RebuildReport::default()
    };
    let mut pending = actions.into_iter().peekable();
    let mut run: Vec<Input> = Vec::new();
    // Received times are the server's own: none before 1970.
    let portal = derive::events_portal(&tx, DateTime::<Utc>::UNIX_EPOCH, None).await?;
    let mut newest = None;
    loop {
        let (inputs, more) = derive::next_events(&tx, &portal, 5000).await?;
        for input in inputs {
            report.events += 1;
            newest = Some(input.received_at);
            while let Some(action) = pending.next_if(|a| a.at < input.received_at) {
                flush(&tx, &rules, &ids, &mut run).await?;
                if derive::apply_action(&tx, &rules, &action).await?.is_empty() {
                    report.skipped_actions += 1;
                }
            }
            if input.kind == homeward_proto::EventKind::Heartbeat {
                run.push(input);
            } else {
                flush(&tx, &rules, &ids, &mut run).await?;
                derive::apply_event(&tx, &rules, &ids, &mut Known::default(), &input).await?;
            }
        }
        if !more {
            break;
        }
    }
    flush(&tx, &rules, &ids, &mut run).await?;
    for action in pending {
        if derive::apply_action(&tx, &rules, &action).await?.is_empty() {
            report.skipped_actions += 1;
        }
    }
    derive::sweep(&tx, &rules, &ids, now).await?;
    if let Some(at) = newest {
        super::set_cursor(&*tx, "rebuild", at).await?;
    }
    report.alarms = tx
        .query_one("SELECT count(*) FROM alarms", &[])
        .await?
        .get(0);
    tx.commit().await?;
    if report.skipped_actions > 0 {
        tracing::warn!(
            skipped = report.skipped_actions,
            "alarm rebuild: some staff actions no longer apply"
        );
    }
    Ok(report)
}

async fn flush(
    c: &impl GenericClient,
    rules: &Rules,
    ids: &IdMap,
    run: &mut Vec<Input>,
) -> Result<(), AlarmError> {
    if !run.is_empty() {
        derive::apply_heartbeats(c, rules, ids, run).await?;
        run.clear();
    }
    Ok(())
}
