//! The alarm board's server-side rendering with 500 open alarms (`docs/benchmarks.md`, "Alarm
//! board"): ignored by default, run in a release build with
//! `cargo nextest run --release -p homeward --test api --run-ignored only -E 'test(/board_render_benchmark/)' --no-capture`.
//!
//! One provider, 500 people each wearing a fall detector with one open alarm (falls and pendant
//! alarms in every state the board lists, some long lies, spread over the last two hours), and
//! 50 technical alarms. The page is asked for over HTTP with a session, as a browser does, 20
//! times after 3 warm-up requests; the times are printed. Not a timed assertion: the figures
//! are recorded in the docs.

use std::time::Instant;

use homeward::auth::{self, OrgKind, Role};
use homeward_testkit::spawn_app;

#[tokio::test]
#[ignore = "a benchmark: run it in a release build (see the module comment)"]
async fn board_render_benchmark() {
    let app = spawn_app().await;
    let org = app.organisation("Bench Care", OrgKind::Provider).await;
    let client = app.pool.get().await.unwrap();
    let (user, _) = auth::create_user(&**client, &org, "Bench Admin", Role::ProviderAdmin)
        .await
        .unwrap();
    let session = homeward::auth::sessions::open_session(&**client, user, 12, 60)
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO people (organisation_id, external_ref, display_name, area, pseudonym)
             SELECT {o}, 'BP' || g, 'Person ' || g, 'Area ' || (g % 7), 'bench-' || g
               FROM generate_series(1, 500) g;
             INSERT INTO devices (organisation_id, uid, kind, person_id, secret_hash)
             SELECT {o}, 'bench-fd-' || p.external_ref, 'fall_detector', p.id, decode(repeat('00', 32), 'hex')
               FROM people p WHERE p.organisation_id = {o};
             INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id,
                                 source_device_id, source_seq, last_device_id, last_seq, is_fall,
                                 long_lie, raised_at, received_at, last_seen_at, acknowledged_at,
                                 dispatched_at)
             SELECT {o}, 'care', CASE WHEN n % 2 = 0 THEN 'fall_detected' ELSE 'pendant_alarm' END,
                    CASE WHEN n % 2 = 0 THEN 'critical' ELSE 'high' END,
                    (ARRAY['raised', 'acknowledged', 'dispatched'])[1 + n % 3],
                    'bench-' || n, d.person_id, d.id, n, d.id, n, n % 2 = 0, n % 25 = 0,
                    now() - n * interval '14 seconds', now() - n * interval '14 seconds',
                    now() - n * interval '14 seconds',
                    CASE WHEN n % 3 >= 1 THEN now() - n * interval '13 seconds' END,
                    CASE WHEN n % 3 = 2 THEN now() - n * interval '12 seconds' END
               FROM (SELECT d.*, row_number() OVER (ORDER BY d.id) AS n
                       FROM devices d WHERE d.organisation_id = {o}) d;
             INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id,
                                 source_device_id, source_seq, last_device_id, last_seq, is_fall,
                                 long_lie, raised_at, received_at, last_seen_at)
             SELECT {o}, 'technical', 'battery_low', 'low', 'raised', 'bench-t-' || n, d.person_id,
                    d.id, 100000 + n, d.id, 100000 + n, false, false, now() - n * interval '1 minute',
                    now() - n * interval '1 minute', now() - n * interval '1 minute'
               FROM (SELECT d.*, row_number() OVER (ORDER BY d.id) AS n
                       FROM devices d WHERE d.organisation_id = {o} LIMIT 50) d;",
            o = org.id
        ))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let cookie = format!("{}={}", homeward::console::SESSION_COOKIE, session.token);
    let mut times = Vec::new();
    let mut bytes = 0;
    for run in 0..23 {
        let started = Instant::now();
        let response = http
            .get(app.url("/console/alarms"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page = response.text().await.unwrap();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        assert!(page.contains("Bench Care"));
        bytes = page.len();
        assert_eq!(
            page.matches("class=\"alarm ").count(),
            550,
            "every alarm is on the page"
        );
        if run >= 3 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "board with 500 open care alarms and 50 technical: {bytes} bytes; ms over HTTP: min {:.1}, median {:.1}, max {:.1}; all: {:?}",
        times[0], median, times[times.len() - 1],
        times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>()
    );
}
