//! The statements derivation runs to change `alarms` and `alarm_events`, and the one that reads
//! the stored events it derives. Each transition and its history row go out as one statement
//! (a data-modifying `WITH`), so they cannot part; the texts are built from pieces shared by
//! the statements that differ only in which alarms they target or how a repeat folds.

use deadpool_postgres::GenericClient;

use crate::alarms::model::VIEW_COLUMNS;
use crate::alarms::AlarmError;

/// Stored events derivation looks at, in the order they were received, after the key
/// (`$2` received_at, `$3` device, `$4` seq) and received at or before `$6` (NULL: no end), at
/// most `$5`; `$1` the kinds' codes. The fields come as text, for the wire format's decoder.
pub const EVENTS_QUERY: &str = "SELECT e.device_id, d.organisation_id, d.uid, e.seq, \
     e.occurred_at, e.received_at, e.kind, e.data::text AS data \
     FROM events e JOIN devices d ON d.id = e.device_id \
     WHERE e.kind = ANY($1) AND (e.received_at, e.device_id, e.seq) > ($2, $3, $4) \
       AND ($6::timestamptz IS NULL OR e.received_at <= $6::timestamptz) \
     ORDER BY e.received_at, e.device_id, e.seq \
     LIMIT $5";

/// Transitions ([`step_many`](super::step_many), one or many), each with its own target (`$4`
/// an alarm id, or `$5`/`$6` a fold's open alarms), allowed states (`$3`, joined by commas),
/// new state and cause; `$16` the long-lie threshold. The update and the row it appends to each
/// alarm's history (`alarm_events`) are one statement, so they cannot part. Each step's alarms
/// are found by an index probe of their own (the `OFFSET 0` keeps each lateral lookup from being
/// planned as a join over all alarms; an alarm targeted by id is found by its primary key alone,
/// as with the organisation in the same WHERE the planner once scanned the organisation's
/// alarms), locked in id order, each by its primary key (a lateral lookup per id: with
/// `id = ANY(...)` a generic plan made while `alarms` was small scanned the whole table on every
/// call, 5 ms a pass once it held a few thousand rows), then filtered on their state as locked.
/// A step carries its input to the update, joined to its alarm by id alone (joined to the input
/// again on organisation and category, a generic plan paired every step with every alarm of the
/// pass). No two steps may target the same alarm. Public for the plan checks in the tests.
pub fn step_many_sql() -> String {
    format!(
        "WITH input AS MATERIALIZED ( \
           SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::int8[], $5::text[], \
                                $6::text[], $7::text[], $8::timestamptz[], $9::int4[], \
                                $10::text[], $11::bool[], $12::text[], $13::int4[], $14::int8[], \
                                $15::int8[]) WITH ORDINALITY \
             AS i (organisation_id, category, from_states, id, fold_key, kind, to_state, at, \
                   user_id, outcome, fall, transition, device_id, seq, action_id, n)), \
         found AS MATERIALIZED ( \
           SELECT i.*, f.id AS alarm_id FROM input i CROSS JOIN LATERAL ( \
             SELECT a.id FROM alarms a WHERE a.id = i.id \
             UNION ALL \
             SELECT a.id FROM alarms a \
              WHERE i.id IS NULL AND a.organisation_id = i.organisation_id \
                AND a.fold_key = i.fold_key \
                AND a.state IN ('raised', 'acknowledged', 'dispatched', 'on_site') \
                AND a.state = ANY(string_to_array(i.from_states, ',')) \
                AND a.category = i.category AND (i.kind IS NULL OR a.kind = i.kind) \
             OFFSET 0) f), \
         locked AS MATERIALIZED ( \
           SELECT l.* FROM (SELECT alarm_id FROM found GROUP BY alarm_id ORDER BY alarm_id) f \
             CROSS JOIN LATERAL ( \
               SELECT a.id, a.state, a.organisation_id, a.category, a.kind FROM alarms a \
                WHERE a.id = f.alarm_id FOR UPDATE) l), \
         prev AS ( \
           SELECT f.*, l.state AS from_state FROM found f JOIN locked l ON l.id = f.alarm_id \
            WHERE l.organisation_id = f.organisation_id AND l.category = f.category \
              AND l.state = ANY(string_to_array(f.from_states, ',')) \
              AND (f.kind IS NULL OR l.kind = f.kind)), \
         updated AS (UPDATE alarms a SET \
           state = i.to_state, \
           acknowledged_at = CASE WHEN i.to_state = 'acknowledged' THEN i.at ELSE a.acknowledged_at END, \
           acknowledged_by = CASE WHEN i.to_state = 'acknowledged' THEN i.user_id ELSE a.acknowledged_by END, \
           dispatched_at = CASE WHEN i.to_state = 'dispatched' THEN i.at ELSE a.dispatched_at END, \
           dispatched_by = CASE WHEN i.to_state = 'dispatched' THEN i.user_id ELSE a.dispatched_by END, \
           on_site_at = CASE WHEN i.to_state = 'on_site' THEN i.at ELSE a.on_site_at END, \
           on_site_by = CASE WHEN i.to_state = 'on_site' THEN i.user_id ELSE a.on_site_by END, \
           resolved_at = CASE WHEN i.to_state = 'resolved' THEN i.at ELSE a.resolved_at END, \
           resolved_by = CASE WHEN i.to_state = 'resolved' THEN i.user_id ELSE a.resolved_by END, \
           outcome = CASE WHEN i.to_state = 'resolved' THEN i.outcome ELSE a.outcome END, \
           closed_at = CASE WHEN i.to_state = 'closed' THEN i.at ELSE a.closed_at END, \
           closed_by = CASE WHEN i.to_state = 'closed' THEN i.user_id ELSE a.closed_by END, \
           cleared_at = CASE WHEN i.to_state = 'cleared' THEN i.at ELSE a.cleared_at END, \
           is_fall = a.is_fall OR COALESCE(i.fall, false), \
           long_lie = a.long_lie OR ((a.is_fall OR COALESCE(i.fall, false)) AND \
               extract(epoch FROM COALESCE(CASE WHEN i.to_state = 'on_site' THEN i.at ELSE a.on_site_at END, \
                                           i.at) - a.raised_at) >= $16::float8) \
           FROM prev i WHERE a.id = i.alarm_id \
           RETURNING i.n AS step, i.from_state, {VIEW_COLUMNS}), \
         recorded AS ( \
           INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, from_state, \
                                     to_state, device_id, seq, action_id) \
           SELECT u.organisation_id, u.id, i.at, i.transition, u.from_state, i.to_state, \
                  i.device_id, i.seq, i.action_id \
             FROM updated u JOIN input i ON i.n = u.step) \
         SELECT * FROM updated"
    )
}

pub(super) fn raise_sql(conflict: &str) -> String {
    format!("{RAISE_SQL}{conflict}{VIEW_COLUMNS}{RAISE_RECORD_SQL}")
}

/// Prepares on this connection every statement [`derive_event`](super::derive_event) may run,
/// so that a run of events can be sent at once and still execute in order (a statement
/// prepared on first use would go out after the ones behind it).
pub async fn prepare_event_statements(c: &impl GenericClient) -> Result<(), AlarmError> {
    for sql in [raise_sql(FOLD_SQL), raise_many_sql(), step_many_sql()] {
        c.prepare_cached(&sql).await?;
    }
    Ok(())
}

const RAISE_SQL: &str =
    "WITH raised AS (INSERT INTO alarms AS a (id, organisation_id, category, kind, severity, \
       state, fold_key, person_id, source_device_id, source_seq, last_device_id, last_seq, count, \
       is_fall, raised_at, received_at, last_seen_at) \
     VALUES (COALESCE($1::int8, nextval(pg_get_serial_sequence('alarms', 'id'))), $2, $3, $4, $5, \
       'raised', $6, $7, $8, $9, $8, $9, 1, $10, $11, $12, $11) ";

/// The alarm raised (or folded into) and the row it appends to its history, in one statement.
const RAISE_RECORD_SQL: &str = "), recorded AS ( \
       INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, to_state, device_id, seq) \
       SELECT organisation_id, id, $11, CASE WHEN inserted THEN 'raised' ELSE 'repeated' END, \
              state, $8, $9 FROM raised) \
     SELECT * FROM raised";

/// A repeat while one is open folds into it.
pub(super) const FOLD_SQL: &str = "ON CONFLICT (organisation_id, fold_key, kind) \
       WHERE state IN ('raised', 'acknowledged', 'dispatched', 'on_site') \
     DO UPDATE SET count = a.count + 1, \
       last_seen_at = GREATEST(a.last_seen_at, excluded.last_seen_at), \
       last_device_id = excluded.last_device_id, last_seq = excluded.last_seq \
     RETURNING (a.xmax = 0) AS inserted, ";

/// One `heartbeat_missing` per silence: the sweep and a late heartbeat may both try; the
/// first wins.
pub(super) const ONCE_SQL: &str = "ON CONFLICT DO NOTHING RETURNING true AS inserted, ";

pub(super) fn raise_many_sql() -> String {
    format!(
        "WITH input AS MATERIALIZED ( \
           SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], \
                                $6::text[], $7::int4[], $8::int4[], $9::int8[], $10::bool[], \
                                $11::timestamptz[], $12::timestamptz[]) \
             AS i (reuse, organisation_id, category, kind, severity, fold_key, person_id, \
                   device_id, seq, is_fall, raised_at, received_at)), \
         raised AS (INSERT INTO alarms AS a (id, organisation_id, category, kind, severity, \
             state, fold_key, person_id, source_device_id, source_seq, last_device_id, last_seq, \
             count, is_fall, raised_at, received_at, last_seen_at) \
           SELECT COALESCE(reuse, nextval(pg_get_serial_sequence('alarms', 'id'))), \
                  organisation_id, category, kind, severity, 'raised', fold_key, person_id, \
                  device_id, seq, device_id, seq, 1, is_fall, raised_at, received_at, raised_at \
             FROM input \
           {FOLD_SQL}{VIEW_COLUMNS}, a.last_device_id AS raised_device_id), \
         recorded AS ( \
           INSERT INTO alarm_events (organisation_id, alarm_id, at, transition, to_state, \
                                     device_id, seq) \
           SELECT r.organisation_id, r.id, i.raised_at, \
                  CASE WHEN r.inserted THEN 'raised' ELSE 'repeated' END, r.state, \
                  i.device_id, i.seq \
             FROM raised r JOIN input i ON i.device_id = r.raised_device_id AND i.seq = r.last_seq) \
         SELECT * FROM raised"
    )
}
