//! End to end: simulated devices on the real device core, over the embedded broker, into a
//! real Homeward (started in-process against a fresh database by the test kit), checked in the
//! `events` table.

use std::time::Duration;

use homeward::auth::{self, OrgKind};
use homeward_device_core::device::Role;
use homeward_proto::EventKind;
use homeward_sim::board::BrokerAddr;
use homeward_sim::fleet::{run_fleet, DeviceSpec, FleetOptions, FleetReport};
use homeward_sim::motion::MotionSource;
use homeward_sim::scenario::Scenario;
use homeward_testkit::{spawn_app, TestApp};

/// The application (started by the test kit, as the server's own tests start it) and the
/// organisation the simulated devices belong to.
struct Sim {
    app: TestApp,
    org: auth::Organisation,
}

async fn start() -> Sim {
    let app = spawn_app().await;
    let org = app.organisation("Sim Care", OrgKind::Provider).await;
    Sim { app, org }
}

impl Sim {
    async fn device(&self, uid: &str, role: Role, scenario: Scenario) -> DeviceSpec {
        let kind = homeward_sim::creds::kind_name(role);
        let secret = self.app.device(&self.org, uid, kind).await;
        DeviceSpec {
            uid: uid.into(),
            secret: Some(secret),
            role,
            scenario,
        }
    }

    fn options(&self) -> FleetOptions {
        let mut opts = FleetOptions::new(BrokerAddr {
            host: self.app.mqtt.host.clone(),
            port: self.app.mqtt.port,
        });
        opts.motion = MotionSource::Synthetic;
        opts.resend_ms = 3_000;
        opts.timeout = Duration::from_secs(120);
        opts
    }

    /// (seq, occurred_at ms, received_at µs, kind, late, data) of a device's events, by seq.
    async fn events(&self, uid: &str) -> Vec<(i64, i64, i64, i16, bool, Option<String>)> {
        let client = self.app.pool.get().await.unwrap();
        client
            .query(
                "SELECT e.seq, (extract(epoch FROM e.occurred_at) * 1000)::bigint,
                        (extract(epoch FROM e.received_at) * 1000000)::bigint,
                        e.kind, e.late, e.data::text
                   FROM events e JOIN devices d ON d.id = e.device_id
                  WHERE d.uid = $1 ORDER BY e.seq, e.occurred_at",
                &[&uid],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn device<'a>(report: &'a FleetReport, uid: &str) -> &'a homeward_sim::fleet::DeviceReport {
    report.devices.iter().find(|d| d.uid == uid).unwrap()
}

fn code(kind: EventKind) -> i16 {
    i16::from(kind.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fall_arrives_in_the_events_table() {
    let app = start().await;
    let specs = vec![
        app.device("sim-pendant-fall", Role::Pendant, Scenario::Fall)
            .await,
        app.device("sim-pendant-ok", Role::Pendant, Scenario::FallCancelled)
            .await,
    ];
    let report = run_fleet(specs, app.options()).await.unwrap();
    assert!(report.completed, "every event acknowledged: {report:#?}");

    // The fall that was not cancelled: one fall_detected row, stamped with the impact.
    let fell = device(&report, "sim-pendant-fall");
    assert_eq!(fell.falls_detected, 1);
    let sent: Vec<_> = fell
        .events
        .iter()
        .filter(|e| e.kind == EventKind::FallDetected)
        .collect();
    assert_eq!(sent.len(), 1);
    let rows = app.events("sim-pendant-fall").await;
    let falls: Vec<_> = rows
        .iter()
        .filter(|r| r.3 == code(EventKind::FallDetected))
        .collect();
    assert_eq!(falls.len(), 1, "{rows:?}");
    assert_eq!(falls[0].0 as u64, sent[0].seq);
    assert_eq!(falls[0].1, sent[0].time_ms, "occurred_at is the device's t");
    let data = falls[0].5.as_deref().unwrap();
    let confidence: u8 = data
        .trim_start_matches("{\"confidence\": ")
        .trim_end_matches('}')
        .parse()
        .unwrap_or_else(|_| panic!("confidence in {data}"));
    assert!(confidence >= 50, "{data}");
    // 5 minutes after the 02:00 start, plus the 4 s of standing in the synthetic trial.
    let into_day = (falls[0].1 - report.start_unix_ms) / 1000;
    assert!(
        (300..=310).contains(&into_day),
        "{into_day} s after the start"
    );
    // Its heartbeats arrived as well, each once.
    assert!(rows.iter().any(|r| r.3 == code(EventKind::Heartbeat)));
    assert_eq!(rows.len(), fell.events.len());

    // The cancelled one: fall_cancelled, and no fall_detected.
    let ok = app.events("sim-pendant-ok").await;
    assert!(
        ok.iter().any(|r| r.3 == code(EventKind::FallCancelled)),
        "{ok:?}"
    );
    assert!(!ok.iter().any(|r| r.3 == code(EventKind::FallDetected)));
    assert_eq!(device(&report, "sim-pendant-ok").falls_cancelled, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_offline_delivers_the_backlog_in_order_each_event_once() {
    let app = start().await;
    let uid = "sim-pendant-away";
    let specs = vec![
        app.device(uid, Role::Pendant, Scenario::OfflineBacklog)
            .await,
    ];
    let mut opts = app.options();
    opts.offline_ms = 3_600_000;
    opts.heartbeat_ms = 5 * 60_000;
    let report = run_fleet(specs, opts).await.unwrap();
    // How long the run took in real time is printed below, not asserted: a timing is a
    // benchmark's business, and a slow machine is not a wrong result.
    assert!(report.completed, "every event acknowledged: {report:#?}");
    let dev = device(&report, uid);
    assert_eq!(dev.reboots, 1, "rebooted while offline");
    assert_eq!(dev.online_published, 2, "online at each connection");

    let rows = app.events(uid).await;
    // Exactly one row per seq, and exactly the events the device raised.
    let seqs: Vec<u64> = rows.iter().map(|r| r.0 as u64).collect();
    let sent: Vec<u64> = dev.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, sent, "each event once, none missing");
    assert_eq!(dev.queue.pushed as usize, rows.len());
    // In order: device times increase with seq (and the reboot only skipped seqs).
    for w in rows.windows(2) {
        assert!(w[1].0 > w[0].0);
        assert!(w[1].1 > w[0].1, "t increases with seq: {w:?}");
    }
    // The backlog: the events stamped while offline (10 min to 70 min), at least one per
    // 5-minute heartbeat, stored late, and received in seq order after the reconnection.
    let offline = (report.start_unix_ms + 600_000)..(report.start_unix_ms + 4_200_000);
    let backlog: Vec<_> = rows.iter().filter(|r| offline.contains(&r.1)).collect();
    assert!(
        backlog.len() >= 12,
        "{} events queued offline",
        backlog.len()
    );
    assert!(backlog.iter().all(|r| r.4), "stored as late");
    for w in backlog.windows(2) {
        assert!(w[1].2 >= w[0].2, "received in order: {w:?}");
    }
    let resent: u32 = dev.events.iter().map(|e| e.sends - 1).sum();
    println!(
        "{} events, {} in the backlog, {resent} resends, {:?} real for {} virtual minutes",
        rows.len(),
        backlog.len(),
        report.real,
        report.virtual_ms / 60_000
    );
    app.stop().await;
}
