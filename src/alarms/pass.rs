//! One pass of derivation ([`process`]): a batch of events derived in one transaction, its
//! changes published once it has committed. The pass keeps each device's technical events, and
//! the care events, in their own order, and otherwise gathers the events into as few
//! statements as it can.

use std::collections::HashMap;
use std::future::Future;

use super::derive::{self, IdMap, Input, Rules};
use super::{publish, AlarmError};
use crate::live::LiveHub;

/// Heartbeats and the technical events they interact with (battery, power, link).
pub(super) fn is_technical(kind: homeward_proto::EventKind) -> bool {
    use homeward_proto::EventKind as K;
    matches!(
        kind,
        K::Heartbeat
            | K::BatteryLow
            | K::PowerFailure
            | K::PowerRestored
            | K::LinkFailure
            | K::LinkRestored
    )
}

/// What one statement of a pass gave: each event's changes, by its place in the run.
type Done = Vec<(usize, Vec<derive::Change>)>;
/// A statement of a pass, sent (pipelined) and awaited in order.
type Sent<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Done, AlarmError>> + Send + 'a>>;

/// Derives alarms from newly stored events, in order (runs of heartbeats together), in one
/// transaction, and publishes the changes once it has committed. One commit per pass rather
/// than per event: under load the care events of a pass are many, and a commit each (an fsync
/// each) was what made derivation fall behind ingest.
pub async fn process(
    pool: &deadpool_postgres::Pool,
    rules: &Rules,
    live: &LiveHub,
    inputs: &[Input],
) -> Result<(), AlarmError> {
    let mut client = pool.get().await?;
    let ids = IdMap::new();
    let tx = client.transaction().await?;
    // The pass's statements are few and run thousands of times a second under load: plan each
    // once per connection (a custom plan each time cost more than running it). Every one of
    // them reaches its rows by a key or a unique index whatever the parameters.
    //
    // Its commit does not wait for the WAL flush (`synchronous_commit = off`): what a pass
    // writes is derived from stored events. WAL is flushed in order, so the cursor's
    // synchronous commit after a pass (`set_cursor`) makes the pass durable first: a pass lost
    // in a crash is one the cursor had not passed, and the start-up catch-up derives it again.
    // A staff action on an alarm commits synchronously too, so it never outlives the alarm.
    // Only the writer's commit backs an acknowledgement. An alarm thus waits for one WAL flush
    // on its way to the live stream, not two.
    tx.batch_execute(
        "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL synchronous_commit = off",
    )
    .await?;
    // Heartbeats keep their state in memory for the whole pass; the runs of other events
    // between them go out pipelined, in the order [`pass_order`] gives (each device's technical
    // events, and the care events, in their own order). Each device's heartbeats interact only
    // with that device's technical alarms, so this gives the same rows as the events' order.
    let mut heartbeats = derive::Heartbeats::load(&tx, inputs).await?;
    let mut known = derive::Known::load(&tx, rules, inputs).await?;
    derive::prepare_event_statements(&tx).await?;
    let inputs = pass_order(inputs);
    let mut changes = Vec::new();
    let mut i = 0;
    while i < inputs.len() {
        if inputs[i].kind == homeward_proto::EventKind::Heartbeat {
            changes.extend(heartbeats.apply(&tx, rules, &ids, inputs[i]).await?);
            i += 1;
            if inputs
                .get(i)
                .is_none_or(|e| e.kind != homeward_proto::EventKind::Heartbeat)
            {
                // The run's clears, before the events after it may touch the same alarms.
                changes.extend(heartbeats.flush(&tx, rules).await?);
            }
            continue;
        }
        // A run of other events goes out at once, pipelined on the connection. Events whose
        // alarms cannot interact (different fold keys) need no order among themselves, so the
        // run is cut into rounds, the k-th event of each key in round k: a round's raises are
        // one statement, and every other event is at most one statement, sent in order.
        let end = inputs[i..]
            .iter()
            .position(|e| e.kind == homeward_proto::EventKind::Heartbeat)
            .map_or(inputs.len(), |p| i + p);
        let run: Vec<&Input> = inputs[i..end]
            .iter()
            .copied()
            .filter(|input| known.done(input) != Some(true))
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        // Per round: the raises planned (with their place in the run), and the other events.
        let mut rounds: Vec<(Vec<usize>, Vec<derive::PlannedRaise>, Vec<usize>)> = Vec::new();
        for (n, input) in run.iter().enumerate() {
            // A raise's fold key is its order key: worked out once.
            let planned = derive::planned_raise(rules, &known, input);
            let key = match &planned {
                Some(p) => Some(p.1.clone()),
                None => derive::order_key(rules, &known, input),
            };
            let round = match key {
                Some(key) => {
                    let k = seen.entry(key).or_default();
                    *k += 1;
                    *k - 1
                }
                None => 0,
            };
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Default::default);
            }
            match planned {
                Some(p) => {
                    rounds[round].0.push(n);
                    rounds[round].1.push(p);
                }
                None => rounds[round].2.push(n),
            }
        }
        let mut pending: Vec<Sent<'_>> = Vec::new();
        for (order, planned, others) in rounds {
            if !planned.is_empty() {
                let (tx, ids) = (&tx, &ids);
                pending.push(Box::pin(async move {
                    let changes = derive::raise_many(tx, ids, &planned).await?;
                    Ok(order
                        .into_iter()
                        .zip(changes)
                        .map(|(n, c)| (n, c.into_iter().collect()))
                        .collect())
                }));
            }
            // The round's other transitions (clears, resets, responders: each on a fold of its
            // own) are one statement too; an event whose fold [`Known`] did not see goes alone.
            let (mut stepped, mut steps, mut alone) = (Vec::new(), Vec::new(), Vec::new());
            for n in others {
                match derive::planned_step(rules, &known, run[n]) {
                    Some(step) => {
                        stepped.push(n);
                        steps.push(step);
                    }
                    None => alone.push(n),
                }
            }
            if !steps.is_empty() {
                let (tx, run) = (&tx, &run);
                pending.push(Box::pin(async move {
                    let steps: Vec<derive::Step<'_>> = stepped
                        .iter()
                        .zip(&steps)
                        .map(|(n, (t, key))| t.step(run[*n], key))
                        .collect();
                    let changes = derive::step_many(tx, rules, &steps).await?;
                    Ok(stepped.into_iter().zip(changes).collect())
                }));
            }
            for n in alone {
                let (tx, ids, known, input) = (&tx, &ids, &known, run[n]);
                pending.push(Box::pin(async move {
                    Ok(vec![(
                        n,
                        derive::derive_event(tx, rules, ids, known, input).await?,
                    )])
                }));
            }
        }
        // Poll each once, in order: that sends its statement.
        let mut first = Vec::with_capacity(pending.len());
        for fut in &mut pending {
            first.push(
                std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await,
            );
        }
        let mut results: Vec<Vec<derive::Change>> = vec![Vec::new(); run.len()];
        for (fut, polled) in pending.into_iter().zip(first) {
            let done = match polled {
                std::task::Poll::Ready(result) => result?,
                std::task::Poll::Pending => fut.await?,
            };
            for (n, changes) in done {
                results[n] = changes;
            }
        }
        for (input, done) in run.into_iter().zip(results) {
            if !done.is_empty() {
                known.mark_done(input);
            }
            heartbeats.note(input.device_id, &done);
            changes.extend(done);
        }
        i = end;
    }
    heartbeats.store(&tx, rules).await?;
    tx.commit().await?;
    publish(live, &changes);
    Ok(())
}

/// The order a pass applies its events in: each device's technical events (heartbeats,
/// battery, power, link: they only ever touch that device's technical alarms and heartbeat
/// state) keep their order, and so do the care events among themselves (they fold per person,
/// across devices), but nothing else is ordered. So the events between one device's heartbeats
/// no longer cut the pass into runs of one: every group's first run of heartbeats comes first,
/// then every group's first run of other events together (one pipelined run, its raises in
/// rounds of one statement each), then every group's second run of heartbeats, and so on.
///
/// Each event gets a level: within its group, heartbeats take even levels and other events odd
/// ones, and the level only grows; a stable sort by level keeps each group's order. Care and
/// technical alarms never interact (different categories; care events never touch heartbeat
/// state), so this gives the same rows as the events' own order, which is what a rebuild uses.
fn pass_order(inputs: &[Input]) -> Vec<&Input> {
    use homeward_proto::EventKind as K;
    // Each group's current level: a device's technical events, or (None) the care events.
    let mut level: HashMap<Option<i32>, u32> = HashMap::new();
    let mut keyed: Vec<(u32, &Input)> = inputs
        .iter()
        .map(|input| {
            let heartbeat = input.kind == K::Heartbeat;
            let group = is_technical(input.kind).then_some(input.device_id);
            let l = level.entry(group).or_insert(0);
            // Even levels hold heartbeats, odd ones everything else.
            if heartbeat == (*l % 2 == 1) {
                *l += 1;
            }
            (*l, input)
        })
        .collect();
    keyed.sort_by_key(|(l, _)| *l);
    keyed.into_iter().map(|(_, input)| input).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use homeward_proto::EventKind as K;
    use std::collections::HashSet;

    fn input(device_id: i32, seq: i64, kind: K) -> Input {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        Input {
            device_id,
            organisation_id: 1,
            device_uid: format!("d{device_id}").into(),
            seq,
            occurred_at: at,
            received_at: at,
            kind,
            battery: None,
            signal: None,
            interval_s: None,
        }
    }

    fn order(inputs: &[Input]) -> Vec<(i32, i64)> {
        pass_order(inputs)
            .into_iter()
            .map(|i| (i.device_id, i.seq))
            .collect()
    }

    #[test]
    fn a_pass_keeps_each_groups_order_and_gathers_the_runs_between_heartbeats() {
        let inputs = [
            input(1, 1, K::Heartbeat),
            input(1, 2, K::BatteryLow),
            input(2, 1, K::Heartbeat),
            input(1, 3, K::Heartbeat),
            input(3, 1, K::PendantAlarm),
            input(2, 2, K::PowerFailure),
            input(4, 1, K::AlarmReset),
            input(2, 3, K::Heartbeat),
            input(2, 4, K::PowerRestored),
        ];
        assert_eq!(
            order(&inputs),
            [
                // Level 0: each device's first heartbeats.
                (1, 1),
                (2, 1),
                // Level 1: the first run of other events of every group, care ones in order.
                (1, 2),
                (3, 1),
                (2, 2),
                (4, 1),
                // Level 2: the heartbeats after them.
                (1, 3),
                (2, 3),
                // Level 3.
                (2, 4),
            ]
        );
    }

    #[test]
    fn within_each_group_the_order_is_the_events_own() {
        // Any interleaving of groups: each device's technical events, and the care events,
        // come out in the order they went in.
        let kinds = [K::Heartbeat, K::BatteryLow, K::LinkFailure, K::LinkRestored];
        let care = [K::PendantAlarm, K::AlarmReset, K::ResponderPresent];
        let mut inputs = Vec::new();
        for n in 0..300i64 {
            let device = (n * 7 % 5) as i32 + 1;
            let kind = if n % 11 == 3 {
                care[(n % 3) as usize]
            } else {
                kinds[((n * 13) % 4) as usize]
            };
            inputs.push(input(device, n + 1, kind));
        }
        let out = pass_order(&inputs);
        assert_eq!(out.len(), inputs.len());
        let group = |i: &Input| is_technical(i.kind).then_some(i.device_id);
        for g in inputs.iter().map(group).collect::<HashSet<_>>() {
            let before: Vec<i64> = inputs
                .iter()
                .filter(|i| group(i) == g)
                .map(|i| i.seq)
                .collect();
            let after: Vec<i64> = out
                .iter()
                .filter(|i| group(i) == g)
                .map(|i| i.seq)
                .collect();
            assert_eq!(before, after, "group {g:?}");
        }
        // Fewer runs of non-heartbeat events than in the events' own order.
        let runs = |v: &mut dyn Iterator<Item = K>| {
            let mut n = 0;
            let mut prev = K::Heartbeat;
            for k in v {
                if k != K::Heartbeat && prev == K::Heartbeat {
                    n += 1;
                }
                prev = k;
            }
            n
        };
        assert!(
            runs(&mut out.iter().map(|i| i.kind)) < runs(&mut inputs.iter().map(|i| i.kind)) / 4
        );
    }
}
