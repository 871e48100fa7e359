//! Staff actions (acknowledge, dispatch, on site, resolve, close), replayed from
//! `alarm_actions` as transitions of the alarm they name: by the API right after recording
//! one, and by a rebuild.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::{step, Cause, Change, Rules, Step, Target};
use crate::alarms::model::{Action, Category, Outcome};
use crate::alarms::AlarmError;
use crate::db::cached;

/// A staff action as stored in `alarm_actions`.
#[derive(Debug, Clone)]
pub struct ActionRow {
    pub id: i64,
    pub organisation_id: i32,
    pub alarm_id: i64,
    pub action: Action,
    pub user_id: i32,
    pub at: DateTime<Utc>,
    pub outcome: Option<Outcome>,
    pub fall: Option<bool>,
}

/// Applies a recorded staff action. Empty when the alarm is not (or no longer) in a state the
/// action may start from; the API checks that first, under the same row lock.
pub async fn apply_action(
    c: &impl GenericClient,
    rules: &Rules,
    a: &ActionRow,
) -> Result<Vec<Change>, AlarmError> {
    let row = cached::query_opt(
        c,
        "SELECT category FROM alarms WHERE id = $1 AND organisation_id = $2",
        &[&a.alarm_id, &a.organisation_id],
    )
    .await?;
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    let text: String = row.get(0);
    let Some(category) = Category::parse(&text) else {
        return Ok(Vec::new());
    };
    let Some((to, from)) = a.action.step(category) else {
        return Ok(Vec::new());
    };
    step(
        c,
        rules,
        &Step {
            organisation_id: a.organisation_id,
            category,
            target: Target::Id(a.alarm_id),
            from,
            to,
            at: a.at,
            user_id: Some(a.user_id),
            outcome: a.outcome,
            fall: a.fall,
            cause: Cause::Action(a.id),
        },
    )
    .await
}
