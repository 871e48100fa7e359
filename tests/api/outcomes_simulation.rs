//! Known-truth simulation of the avoided figures through the real loaders and report: each run
//! writes a population to the database (served people under a contract, and the commissioner's
//! comparison cohort), asks the report endpoint for the contract's report and checks the
//! avoided figures against the truth the run planted. Rows are written with bulk SQL (one
//! statement per table per run, with the `recorded_at` each row would have had), for speed;
//! `http_and_bulk_sql_reach_the_same_figures` records one small population through the API
//! endpoints instead and gets the same figures, so the SQL path is a shortcut to the same
//! loaders, not around them.
//!
//! Scenarios (each with index events: the emergency stay a reablement episode followed, dated
//! up to 200 days before the service, and a fall up to 60 days before; elective stays in both
//! windows; 30% of served people with a baseline fall back-filled after enrolment):
//! - `index`: no effect;
//! - `selection`: no effect, only people with a fall in the baseline (both groups);
//! - `clustering`: no effect, gamma-Poisson rates with variance three times the mean over a
//!   year;
//! - `detection`: no effect, an alarm detects 57% of falls (the descriptive falls figures);
//! - `trend`: no effect, rates 25% lower in the follow-up in both groups;
//! - `effect`: clustering and selection, the service cuts every rate by 30%.
//!
//! `outcomes_simulation_seeded` runs a few seeded runs per scenario in CI;
//! `outcomes_simulation_full_*` run 2,000 per scenario, one test each (ignored; the command and
//! the figures are in docs/outcomes.md, "Simulation").

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use homeward::auth::{OrgKind, Role};
use homeward_testkit::{spawn_app, TestApp};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

const FROM: &str = "2025-01-01";
const TO: &str = "2026-01-01";
const AS_OF: &str = "2026-04-01";
/// People per group in a run.
const PEOPLE: usize = 300;
/// The indicators, as named in the report.
const INDICATORS: [&str; 3] = [
    "falls_avoided",
    "admissions_avoided",
    "care_home_admissions_avoided",
];

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    clustered: bool,
    selected: bool,
    /// Follow-up rates relative to the baseline, both groups.
    trend: f64,
    /// Follow-up rates of served people relative to what they would have been.
    effect: f64,
    /// Share of falls an alarm detects (alarm rows written).
    detection: Option<f64>,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "index",
        clustered: false,
        selected: false,
        trend: 1.0,
        effect: 1.0,
        detection: None,
    },
    Scenario {
        name: "selection",
        clustered: false,
        selected: true,
        trend: 1.0,
        effect: 1.0,
        detection: None,
    },
    Scenario {
        name: "clustering",
        clustered: true,
        selected: false,
        trend: 1.0,
        effect: 1.0,
        detection: None,
    },
    Scenario {
        name: "detection",
        clustered: false,
        selected: false,
        trend: 1.0,
        effect: 1.0,
        detection: Some(0.57),
    },
    Scenario {
        name: "trend",
        clustered: false,
        selected: false,
        trend: 0.75,
        effect: 1.0,
        detection: None,
    },
    Scenario {
        name: "effect",
        clustered: true,
        selected: true,
        trend: 1.0,
        effect: 0.7,
        detection: None,
    },
];

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn noon(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).unwrap().and_utc()
}

fn normal(rng: &mut StdRng) -> f64 {
    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Gamma(shape, scale 1): Marsaglia & Tsang (2000), boosted below shape 1.
fn gamma(rng: &mut StdRng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let dd = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * dd).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + dd - dd * v + dd * v.ln() {
            return dd * v;
        }
    }
}

fn poisson(rng: &mut StdRng, mean: f64) -> usize {
    let mut total = 0;
    let mut left = mean;
    while left > 0.0 {
        let m = left.min(30.0);
        left -= m;
        let l = (-m).exp();
        let mut p = 1.0;
        loop {
            p *= rng.random::<f64>();
            if p <= l {
                break;
            }
            total += 1;
        }
    }
    total
}

/// A Poisson(`mean`) number of days drawn uniformly from [from, from + days).
fn events(rng: &mut StdRng, mean: f64, from: NaiveDate, days: i64) -> Vec<NaiveDate> {
    let n = poisson(rng, mean);
    (0..n)
        .map(|_| from + Duration::days(rng.random_range(0..days)))
        .collect()
}

/// One simulated person, served or in the comparison cohort.
#[derive(Debug, Clone)]
struct Person {
    /// Service start, or the start of follow-up.
    start: NaiveDate,
    /// Served: the index stay's admission; comparison: the index date.
    index_date: NaiveDate,
    index_fall: NaiveDate,
    baseline_falls: Vec<NaiveDate>,
    baseline_admissions: Vec<NaiveDate>,
    /// Served only: a baseline fall recorded 30 days after enrolment.
    backfilled: Option<NaiveDate>,
    /// Served only: elective stays, baseline and follow-up.
    elective: Vec<NaiveDate>,
    falls: Vec<NaiveDate>,
    admissions: Vec<NaiveDate>,
    care_home: Option<NaiveDate>,
    /// Alarms for these follow-up falls.
    detected: Vec<NaiveDate>,
    /// Avoided in truth: falls, emergency admissions, care-home admissions.
    truth: [f64; 3],
}

fn person(rng: &mut StdRng, sc: &Scenario, served: bool) -> Option<Person> {
    let from = d(FROM);
    let year = 365.25;
    let mut rates = [
        0.4 + 1.6 * rng.random::<f64>(),
        0.2 + 0.6 * rng.random::<f64>(),
        0.1,
    ];
    if sc.clustered {
        // Gamma frailty with shape r / 2: a year's count then has variance 3 x its mean.
        for r in rates.iter_mut().take(2) {
            let k = *r / 2.0;
            *r *= gamma(rng, k) / k;
        }
    }
    let start = d("2024-12-01") + Duration::days(rng.random_range(0..31));
    let window = start - Duration::days(365);
    let baseline_falls = events(rng, rates[0] * 275.0 / year, window, 275);
    if sc.selected && baseline_falls.is_empty() {
        return None;
    }
    let baseline_admissions = events(rng, rates[1] * 275.0 / year, window, 275);
    let index_date = start - Duration::days(rng.random_range(5..=200));
    let index_fall = start - Duration::days(rng.random_range(1..=60));
    let effect = if served { sc.effect } else { 1.0 };
    // Follow-up: the whole period, until a permanent care-home admission.
    let hazard = rates[2] * sc.trend * effect / year;
    let moved_after = -(1.0 - rng.random::<f64>()).ln() / hazard;
    let care_home = (moved_after < 365.0).then(|| from + Duration::days(moved_after as i64));
    let at_risk = care_home.map_or(365, |c| (c - from).num_days());
    let mut truth = [0.0; 3];
    let mut means = [0.0; 3];
    for i in 0..3 {
        let without = rates[i] * sc.trend * at_risk as f64 / year;
        truth[i] = if served {
            without * (1.0 - effect)
        } else {
            0.0
        };
        means[i] = without * effect;
    }
    let falls = events(rng, means[0], from, at_risk.max(1));
    let admissions = events(rng, means[1], from, at_risk.max(1));
    let detected = match sc.detection {
        Some(share) => falls
            .iter()
            .copied()
            .filter(|_| rng.random::<f64>() < share)
            .collect(),
        None => Vec::new(),
    };
    let (backfilled, elective) = if served {
        let back =
            (rng.random::<f64>() < 0.3).then(|| window + Duration::days(rng.random_range(0..275)));
        let mut el = events(rng, 0.3 * 275.0 / year, window, 275);
        el.extend(events(
            rng,
            0.3 * at_risk as f64 / year,
            from,
            at_risk.max(1),
        ));
        (back, el)
    } else {
        (None, Vec::new())
    };
    Some(Person {
        start,
        index_date,
        index_fall,
        baseline_falls,
        baseline_admissions,
        backfilled,
        elective,
        falls,
        admissions,
        care_home,
        detected,
        truth,
    })
}

fn population(rng: &mut StdRng, sc: &Scenario, served: bool, n: usize) -> Vec<Person> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if let Some(p) = person(rng, sc, served) {
            out.push(p);
        }
    }
    out
}

/// When a row about `on` for a person enrolled on `start` is recorded: baseline rows the day
/// before enrolment, later rows the day after the event.
fn recorded(on: NaiveDate, start: NaiveDate) -> DateTime<Utc> {
    if on < start {
        noon(start - Duration::days(1))
    } else {
        noon(on + Duration::days(1))
    }
}

/// A provider, a council, a contract and the council's comparison cohort for it.
struct World {
    provider: i32,
    provider_token: String,
    user: i32,
    council_user: i32,
    council_token: String,
    contract: i32,
    cohort: i32,
}

async fn world(app: &TestApp, name: &str) -> World {
    let (provider, provider_token) = app
        .org_with_user(
            &format!("{name} care"),
            OrgKind::Provider,
            Role::ProviderAdmin,
        )
        .await;
    let (council, council_token) = app
        .org_with_user(
            &format!("{name} council"),
            OrgKind::Commissioner,
            Role::Commissioner,
        )
        .await;
    let c = app.pool.get().await.unwrap();
    let user_of = "SELECT id FROM users WHERE organisation_id = $1";
    let user: i32 = c.query_one(user_of, &[&provider.id]).await.unwrap().get(0);
    let council_user: i32 = c.query_one(user_of, &[&council.id]).await.unwrap().get(0);
    let contract: i32 = c
        .query_one(
            "INSERT INTO contracts (commissioner_id, provider_id, reference, starts_on) VALUES ($1, $2, $3, '2024-01-01') RETURNING id",
            &[&council.id, &provider.id, &format!("SIM-{name}")],
        )
        .await
        .unwrap()
        .get(0);
    let (s, b) = app
        .post_json(
            "/v1/outcomes/comparison-cohorts",
            &council_token,
            &json!({"name": "waiting list", "selection": "referred, waiting for the service", "contract_id": contract}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    World {
        provider: provider.id,
        provider_token,
        user,
        council_user,
        council_token,
        contract,
        cohort: b["id"].as_i64().unwrap() as i32,
    }
}

/// Writes a run's people with bulk SQL. `tag` keeps references apart between runs.
async fn write_sql(app: &TestApp, w: &World, tag: &str, served: &[Person], cohort: &[Person]) {
    let c = app.pool.get().await.unwrap();
    let refs: Vec<String> = (0..served.len()).map(|i| format!("{tag}-{i}")).collect();
    let rows = c
        .query(
            "INSERT INTO people (organisation_id, external_ref, date_of_birth)
             SELECT $1, r, '1940-01-01' FROM unnest($2::text[]) r RETURNING id, external_ref",
            &[&w.provider, &refs],
        )
        .await
        .unwrap();
    let by_ref: HashMap<String, i32> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
    let ids: Vec<i32> = refs.iter().map(|r| by_ref[r]).collect();
    let starts: Vec<NaiveDate> = served.iter().map(|p| p.start).collect();
    let history: Vec<NaiveDate> = starts.iter().map(|s| *s - Duration::days(400)).collect();
    let stamps: Vec<DateTime<Utc>> = starts.iter().map(|s| noon(*s)).collect();
    c.execute(
        "INSERT INTO service_periods (organisation_id, person_id, contract_id, started_on, history_from, recorded_at)
         SELECT $1, p, $2, s, h, t FROM unnest($3::int[], $4::date[], $5::date[], $6::timestamptz[]) x(p, s, h, t)",
        &[&w.provider, &w.contract, &ids, &starts, &history, &stamps],
    )
    .await
    .unwrap();
    // Recorded falls: baseline, index, back-filled, follow-up.
    let (mut fp, mut fon, mut fat) = (Vec::new(), Vec::new(), Vec::new());
    // Stays: (person, admitted, emergency, discharged, recorded).
    let (mut sp, mut son, mut sem, mut sdis, mut sat) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cp, mut con, mut cat) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ap, mut aon) = (Vec::new(), Vec::new());
    for (p, &id) in served.iter().zip(&ids) {
        for on in p
            .baseline_falls
            .iter()
            .chain(&p.falls)
            .chain([&p.index_fall])
        {
            fp.push(id);
            fon.push(*on);
            fat.push(recorded(*on, p.start));
        }
        if let Some(on) = p.backfilled {
            fp.push(id);
            fon.push(on);
            fat.push(noon(p.start + Duration::days(30)));
        }
        for (on, emergency) in p
            .baseline_admissions
            .iter()
            .chain(&p.admissions)
            .map(|x| (x, true))
            .chain(p.elective.iter().map(|x| (x, false)))
        {
            sp.push(id);
            son.push(*on);
            sem.push(emergency);
            sdis.push(*on);
            sat.push(recorded(*on, p.start));
        }
        if let Some(on) = p.care_home {
            cp.push(id);
            con.push(on);
            cat.push(recorded(on, p.start));
        }
        for on in &p.detected {
            ap.push(id);
            aon.push(noon(*on));
        }
    }
    c.execute(
        "INSERT INTO recorded_falls (organisation_id, person_id, occurred_on, source, recorded_by, recorded_at)
         SELECT $1, p, o, 'GP record', $2, t FROM unnest($3::int[], $4::date[], $5::timestamptz[]) x(p, o, t)",
        &[&w.provider, &w.user, &fp, &fon, &fat],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on, discharge_destination, recorded_by, recorded_at)
         SELECT $1, p, a, e, dd, 'home', $2, t
           FROM unnest($3::int[], $4::date[], $5::bool[], $6::date[], $7::timestamptz[]) x(p, a, e, dd, t)",
        &[&w.provider, &w.user, &sp, &son, &sem, &sdis, &sat],
    )
    .await
    .unwrap();
    // The index stay, discharged into reablement the day before the service: the episode
    // names it.
    let index: Vec<NaiveDate> = served.iter().map(|p| p.index_date).collect();
    let before: Vec<NaiveDate> = starts.iter().map(|s| *s - Duration::days(1)).collect();
    let index_at: Vec<DateTime<Utc>> = before.iter().map(|s| noon(*s)).collect();
    c.execute(
        "WITH stays AS (
             INSERT INTO hospital_stays (organisation_id, person_id, admitted_on, emergency, discharged_on, discharge_destination, recorded_by, recorded_at)
             SELECT $1, p, a, true, dd, 'home_with_reablement', $2, t
               FROM unnest($3::int[], $4::date[], $5::date[], $6::timestamptz[]) x(p, a, dd, t)
             RETURNING id, person_id, discharged_on, recorded_at)
         INSERT INTO reablement_episodes (organisation_id, person_id, contract_id, hospital_stay_id, started_on, recorded_by, recorded_at)
         SELECT $1, person_id, $7, id, discharged_on + 1, $2, recorded_at FROM stays",
        &[&w.provider, &w.user, &ids, &index, &before, &index_at, &w.contract],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO care_home_admissions (organisation_id, person_id, admitted_on, setting, permanent, recorded_by, recorded_at)
         SELECT $1, p, a, 'residential', true, $2, t FROM unnest($3::int[], $4::date[], $5::timestamptz[]) x(p, a, t)",
        &[&w.provider, &w.user, &cp, &con, &cat],
    )
    .await
    .unwrap();
    if !ap.is_empty() {
        c.execute(
            "WITH dev AS (INSERT INTO devices (organisation_id, uid, kind, secret_hash)
                          VALUES ($1, $2, 'hub', decode(repeat('00', 32), 'hex')) RETURNING id)
             INSERT INTO alarms (organisation_id, category, kind, severity, state, fold_key, person_id, source_device_id, source_seq,
                                 last_device_id, last_seq, is_fall, long_lie, raised_at, received_at, last_seen_at, resolved_at, outcome)
             SELECT $1, 'care', 'fall_detected', 'critical', 'resolved', 'f' || n, p, dev.id, n, dev.id, n, true, false, t, t, t,
                    t + interval '20 minutes', 'resolved_by_talking'
               FROM unnest($3::int[], $4::timestamptz[]) WITH ORDINALITY x(p, t, n) CROSS JOIN dev",
            &[&w.provider, &format!("hub-{tag}"), &ap, &aon],
        )
        .await
        .unwrap();
    }
    // The comparison cohort, recorded by the council.
    let (mut mref, mut mindex, mut mfrom) = (Vec::new(), Vec::new(), Vec::new());
    let (mut eref, mut ekind, mut eon) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in cohort.iter().enumerate() {
        let r = format!("{tag}-c{i}");
        mref.push(r.clone());
        mindex.push(p.index_date);
        mfrom.push(p.start);
        let mut event = |kind: &str, on: NaiveDate| {
            eref.push(r.clone());
            ekind.push(kind.to_string());
            eon.push(on);
        };
        for on in p
            .baseline_falls
            .iter()
            .chain(&p.falls)
            .chain([&p.index_fall])
        {
            event("fall", *on);
        }
        // The index admission, on the index date.
        event("emergency_admission", p.index_date);
        for on in p.baseline_admissions.iter().chain(&p.admissions) {
            event("emergency_admission", *on);
        }
        if let Some(on) = p.care_home {
            event("care_home_admission", on);
        }
    }
    c.execute(
        "INSERT INTO comparison_members (cohort_id, reference, index_date, follow_from, recorded_by)
         SELECT $1, r, i, f, $2 FROM unnest($3::text[], $4::date[], $5::date[]) x(r, i, f)",
        &[&w.cohort, &w.council_user, &mref, &mindex, &mfrom],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO comparison_events (cohort_id, reference, kind, occurred_on, source, recorded_by)
         SELECT $1, r, k, o, 'hospital episode statistics', $2 FROM unnest($3::text[], $4::text[], $5::date[]) x(r, k, o)",
        &[&w.cohort, &w.council_user, &eref, &ekind, &eon],
    )
    .await
    .unwrap();
}

/// Empties the people and the cohort's members between runs (the organisations, the contract
/// and the cohort stay), so each run's report reads only its own rows.
async fn clear(app: &TestApp) {
    let c = app.pool.get().await.unwrap();
    // The application's background work reads people too: a deadlock is retried, and so is a
    // lock held for more than 10 s, with what else is running printed (a run in CI once hung
    // for minutes somewhere in this test; a wait here now says what it waited for).
    c.batch_execute("SET lock_timeout = '10s'").await.unwrap();
    for attempt in 0.. {
        match c
            .batch_execute("TRUNCATE people, comparison_members, comparison_events CASCADE")
            .await
        {
            Ok(()) => {
                c.batch_execute("RESET lock_timeout").await.unwrap();
                return;
            }
            Err(e) if attempt < 5 => {
                eprintln!("clearing the run's rows again: {e}");
                let others = c
                    .query(
                        "SELECT pid, state, wait_event_type, wait_event, left(query, 200) \
                           FROM pg_stat_activity \
                          WHERE datname = current_database() AND pid <> pg_backend_pid() \
                            AND state <> 'idle'",
                        &[],
                    )
                    .await
                    .unwrap_or_default();
                for r in others {
                    let (pid, state, kind, event, query): (
                        i32,
                        Option<String>,
                        Option<String>,
                        Option<String>,
                        Option<String>,
                    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                    eprintln!("  backend {pid} {state:?} waiting {kind:?}/{event:?}: {query:?}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

async fn report(app: &TestApp, w: &World) -> Value {
    // A report takes well under a second here: a minute without an answer is a hang, named.
    let (s, r) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.get_json(
            &format!(
                "/v1/outcomes/report?scope=contract&id={}&from={FROM}&to={TO}&as_of={AS_OF}",
                w.contract
            ),
            &w.council_token,
        ),
    )
    .await
    .expect("the contract report answers within a minute");
    assert_eq!(s, 200, "{r}");
    r
}

/// Per scenario and indicator: runs, intervals covering the truth, lower bounds above 0.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    runs: usize,
    covered: [usize; 3],
    positive: [usize; 3],
}

async fn run_scenario(app: &TestApp, w: &World, sc: &Scenario, runs: usize, seed: u64) -> Tally {
    let mut t = Tally::default();
    for run in 0..runs {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (run as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let served = population(&mut rng, sc, true, PEOPLE);
        let cohort = population(&mut rng, sc, false, PEOPLE);
        clear(app).await;
        write_sql(app, w, &format!("{}-{run}", sc.name), &served, &cohort).await;
        let r = report(app, w).await;
        let i = &r["indicators"];
        // The loaders read what was written: follow-up events from the same sources as
        // generated (recorded falls, emergency stays; alarms only in the falls figures), the
        // back-filled rows reported and left out.
        // A move to a care home on the period's first day leaves no day at risk: that person
        // is not in the estimate (the comparison cohort's likewise).
        let counted = |p: &&Person| p.care_home != Some(d(FROM));
        let sum =
            |f: fn(&Person) -> usize| served.iter().filter(counted).map(f).sum::<usize>() as u64;
        assert_eq!(
            i["falls_avoided"]["observed"],
            sum(|p| p.falls.len()),
            "{}",
            sc.name
        );
        assert_eq!(
            i["admissions_avoided"]["observed"],
            sum(|p| p.admissions.len())
        );
        assert_eq!(
            i["care_home_admissions_avoided"]["observed"],
            sum(|p| usize::from(p.care_home.is_some()))
        );
        assert_eq!(
            i["falls_avoided"]["baseline_events"],
            sum(|p| p.baseline_falls.len())
        );
        assert_eq!(
            i["admissions_avoided"]["baseline_events"],
            sum(|p| p.baseline_admissions.len())
        );
        assert_eq!(
            i["falls_avoided"]["backfilled_after_enrolment"],
            sum(|p| usize::from(p.backfilled.is_some()))
        );
        assert_eq!(i["falls"]["falls"], sum(|p| p.detected.len()));
        for (k, name) in INDICATORS.iter().enumerate() {
            let a = &i[name];
            assert_eq!(a["design"], "comparison_cohort", "{name}: {a}");
            assert_eq!(a["causal"], true);
            let followed = cohort.iter().filter(counted).count();
            assert_eq!(
                a["comparison_people"].as_u64(),
                Some(followed as u64),
                "{a}"
            );
            let lo = a["interval"][0].as_f64().unwrap();
            let hi = a["interval"][1].as_f64().unwrap();
            let truth: f64 = served.iter().map(|p| p.truth[k]).sum();
            t.covered[k] += usize::from(lo <= truth && truth <= hi);
            t.positive[k] += usize::from(lo > 0.0);
        }
        t.runs += 1;
        if t.runs % 250 == 0 && t.runs < runs {
            print(sc, &t, std::time::Duration::ZERO);
        }
    }
    t
}

fn share(n: usize, runs: usize) -> f64 {
    n as f64 / runs as f64
}

/// Prints a scenario's figures so far; also appends them to the file named by
/// `SIMULATION_LOG`, if set (nextest captures output when tests run side by side).
fn print(sc: &Scenario, t: &Tally, elapsed: std::time::Duration) {
    let line = format!(
        "{:<10} runs {:>5}  coverage falls {:.3} admissions {:.3} care homes {:.3}  \
         lower > 0: falls {:.3} admissions {:.3} care homes {:.3}  ({:.0?})",
        sc.name,
        t.runs,
        share(t.covered[0], t.runs),
        share(t.covered[1], t.runs),
        share(t.covered[2], t.runs),
        share(t.positive[0], t.runs),
        share(t.positive[1], t.runs),
        share(t.positive[2], t.runs),
        elapsed,
    );
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("SIMULATION_LOG") {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Runs the scenarios (each on its own seed), prints a line each and returns the tallies.
async fn simulate(scenarios: &[Scenario], runs: usize) -> Vec<(Scenario, Tally)> {
    let app = spawn_app().await;
    let w = world(&app, "sim").await;
    let mut out = Vec::new();
    for sc in scenarios {
        let n = SCENARIOS
            .iter()
            .position(|x| x.name == sc.name)
            .unwrap_or(0);
        let started = std::time::Instant::now();
        let t = run_scenario(&app, &w, sc, runs, 0x5EED_0000 + n as u64).await;
        print(sc, &t, started.elapsed());
        out.push((*sc, t));
    }
    app.stop().await;
    out
}

/// The stated power at 300 people a group, a 30% cut and clustered, selected people
/// (docs/outcomes.md): falls, emergency admissions, care-home admissions.
const POWER: [f64; 3] = [0.95, 0.30, 0.15];

/// 2,000 runs of one scenario (RUNS overrides): one-sided false positives at most 4% in a null
/// scenario, coverage of the truth between 93% and 97%, and the planted effect found with the
/// stated power.
async fn full(name: &str) {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let sc = SCENARIOS.iter().find(|s| s.name == name).copied().unwrap();
    for (sc, t) in simulate(&[sc], runs).await {
        for k in 0..3 {
            let cover = share(t.covered[k], t.runs);
            assert!(
                (0.93..=0.97).contains(&cover),
                "{} {}: coverage {cover}",
                sc.name,
                INDICATORS[k]
            );
            let positive = share(t.positive[k], t.runs);
            if sc.effect == 1.0 {
                assert!(
                    positive <= 0.04,
                    "{} {}: {positive}",
                    sc.name,
                    INDICATORS[k]
                );
            } else {
                assert!(
                    positive >= POWER[k],
                    "{} {}: power {positive}",
                    sc.name,
                    INDICATORS[k]
                );
            }
        }
    }
}

// One test per scenario, so that they run side by side. The command (release build; the
// `simulation` profile never terminates a slow test):
// SIMULATION_LOG=sim.log cargo nextest run --release --profile simulation -p homeward
//   --test api --run-ignored only --test-threads 6 -E 'test(/outcomes_simulation_full/)'
macro_rules! full {
    ($($test:ident: $name:literal),*) => {$(
        #[tokio::test]
        #[ignore = "2,000 runs: docs/outcomes.md, Simulation"]
        async fn $test() {
            full($name).await;
        }
    )*};
}

full!(
    outcomes_simulation_full_index: "index",
    outcomes_simulation_full_selection: "selection",
    outcomes_simulation_full_clustering: "clustering",
    outcomes_simulation_full_detection: "detection",
    outcomes_simulation_full_trend: "trend",
    outcomes_simulation_full_effect: "effect"
);

/// The same scenarios, 6 seeded runs each, in CI: the loaders' counts checked in every run
/// (observed, baseline and back-filled counts equal what was written), no more than one false
/// positive in 6 in any null scenario, the falls effect found in at least 5 of 6.
#[tokio::test]
async fn outcomes_simulation_seeded() {
    for (sc, t) in simulate(&SCENARIOS, 6).await {
        for (k, name) in INDICATORS.iter().enumerate() {
            if sc.effect == 1.0 {
                assert!(t.positive[k] <= 1, "{} {name}: {t:?}", sc.name);
                assert!(t.covered[k] >= 5, "{} {name}: {t:?}", sc.name);
            }
        }
        if sc.effect < 1.0 {
            assert!(t.positive[0] >= 5, "{t:?}");
        }
    }
}

/// One small population recorded through the API endpoints (people, service periods, stays,
/// reablement episodes, recorded falls, care-home admissions, the comparison cohort) and the
/// same population written with bulk SQL under a second contract: the two reports' avoided
/// figures are identical, intervals included (the bootstrap is seeded from the inputs). The API
/// stamps `recorded_at` with the server's clock, so the test then moves each stamp to when the
/// row would have been recorded, with the rule the SQL path uses.
#[tokio::test]
async fn http_and_bulk_sql_reach_the_same_figures() {
    let app = spawn_app().await;
    let sql = world(&app, "sql").await;
    let api = world(&app, "api").await;
    let sc = Scenario {
        selected: true,
        ..SCENARIOS[0]
    };
    let mut rng = StdRng::seed_from_u64(17);
    let served: Vec<Person> = population(&mut rng, &sc, true, 8)
        .into_iter()
        .map(|mut p| {
            p.backfilled = None;
            p
        })
        .collect();
    let cohort = population(&mut rng, &sc, false, 8);
    write_sql(&app, &sql, "sql", &served, &cohort).await;

    let t = &api.provider_token;
    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let (s, b) = app.post_json(path, t, &body).await;
            assert_eq!(s, 201, "{path}: {b}");
            b["id"].as_i64().unwrap()
        }
    };
    for (i, p) in served.iter().enumerate() {
        let (s, b) = app
            .post_json(
                "/v1/people",
                t,
                &json!({"external_ref": format!("api-{i}"), "date_of_birth": "1940-01-01"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let id = b["id"].as_i64().unwrap();
        post(
            "/v1/outcomes/service-periods",
            json!({"person_id": id, "contract_id": api.contract,
            "started_on": p.start, "history_from": p.start - Duration::days(400)}),
        )
        .await;
        for on in p
            .baseline_falls
            .iter()
            .chain(&p.falls)
            .chain([&p.index_fall])
        {
            post(
                "/v1/outcomes/recorded-falls",
                json!({"person_id": id, "occurred_on": on, "source": "GP record"}),
            )
            .await;
        }
        for (on, emergency) in p
            .baseline_admissions
            .iter()
            .chain(&p.admissions)
            .map(|x| (x, true))
            .chain(p.elective.iter().map(|x| (x, false)))
        {
            post(
                "/v1/outcomes/hospital-stays",
                json!({"person_id": id, "admitted_on": on, "emergency": emergency,
                "discharged_on": on, "discharge_destination": "home"}),
            )
            .await;
        }
        let before = p.start - Duration::days(1);
        let stay = post(
            "/v1/outcomes/hospital-stays",
            json!({"person_id": id, "admitted_on": p.index_date,
            "discharged_on": before, "discharge_destination": "home_with_reablement"}),
        )
        .await;
        post(
            "/v1/outcomes/reablement-episodes",
            json!({"person_id": id, "contract_id": api.contract,
            "hospital_stay_id": stay, "started_on": p.start}),
        )
        .await;
        if let Some(on) = p.care_home {
            post(
                "/v1/outcomes/care-home-admissions",
                json!({"person_id": id, "admitted_on": on,
                "setting": "residential", "permanent": true}),
            )
            .await;
        }
    }
    let ct = &api.council_token;
    for (i, p) in cohort.iter().enumerate() {
        let r = format!("api-c{i}");
        let (s, b) = app
            .request_json(
                reqwest::Method::PUT,
                &format!("/v1/outcomes/comparison-cohorts/{}/members/{r}", api.cohort),
                ct,
                Some(&json!({"index_date": p.index_date, "follow_from": p.start})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let mut events = vec![("emergency_admission", p.index_date)];
        events.extend(
            p.baseline_falls
                .iter()
                .chain(&p.falls)
                .chain([&p.index_fall])
                .map(|x| ("fall", *x)),
        );
        events.extend(
            p.baseline_admissions
                .iter()
                .chain(&p.admissions)
                .map(|x| ("emergency_admission", *x)),
        );
        events.extend(p.care_home.iter().map(|x| ("care_home_admission", *x)));
        for (kind, on) in events {
            let (s, b) = app
                .post_json(
                    &format!("/v1/outcomes/comparison-cohorts/{}/events", api.cohort),
                    ct,
                    &json!({"reference": r, "kind": kind, "occurred_on": on, "source": "hospital episode statistics"}),
                )
                .await;
            assert_eq!(s, 201, "{b}");
        }
    }
    // Back-date the API's stamps with the SQL path's rule (rows are otherwise never changed:
    // the append-only triggers are set aside for this one statement per table).
    let c = app.pool.get().await.unwrap();
    for (table, day) in [
        ("service_periods", "started_on"),
        ("recorded_falls", "occurred_on"),
        ("hospital_stays", "admitted_on"),
        ("care_home_admissions", "admitted_on"),
        ("reablement_episodes", "started_on"),
    ] {
        let rule = match table {
            "service_periods" => "sp.started_on + time '12:00'".to_string(),
            // The index stay and its episode: the day before the service.
            "reablement_episodes" => "sp.started_on - 1 + time '12:00'".to_string(),
            "hospital_stays" => format!(
                "CASE WHEN x.discharge_destination = 'home_with_reablement' THEN sp.started_on - 1 + time '12:00'
                      WHEN x.{day} < sp.started_on THEN sp.started_on - 1 + time '12:00'
                      ELSE x.{day} + 1 + time '12:00' END"
            ),
            _ => format!(
                "CASE WHEN x.{day} < sp.started_on THEN sp.started_on - 1 + time '12:00'
                      ELSE x.{day} + 1 + time '12:00' END"
            ),
        };
        c.batch_execute(&format!(
            "SET TIME ZONE 'UTC';
             ALTER TABLE {table} DISABLE TRIGGER {table}_append_only;
             UPDATE {table} x SET recorded_at = {rule}
               FROM service_periods sp WHERE sp.person_id = x.person_id AND x.organisation_id = {org};
             ALTER TABLE {table} ENABLE TRIGGER {table}_append_only;",
            org = api.provider
        ))
        .await
        .unwrap();
    }
    let (a, b) = (report(&app, &sql).await, report(&app, &api).await);
    for name in INDICATORS {
        assert_eq!(a["indicators"][name], b["indicators"][name], "{name}");
    }
    assert_eq!(
        a["indicators"]["falls_avoided"]["design"],
        "comparison_cohort"
    );
    assert!(
        a["indicators"]["falls_avoided"]["baseline_events"]
            .as_u64()
            .unwrap()
            > 0
    );
    app.stop().await;
}

/// Comparison cohorts are the commissioner's alone: a provider may neither record nor read
/// them, another commissioner finds none; members are versions (the newest is the member, a
/// withdrawn one is gone); bad input names the field.
#[tokio::test]
async fn comparison_cohorts_belong_to_their_commissioner() {
    let app = spawn_app().await;
    let w = world(&app, "own").await;
    let other = world(&app, "other").await;
    let ct = &w.council_token;
    let base = format!("/v1/outcomes/comparison-cohorts/{}", w.cohort);
    let body = json!({"name": "n", "selection": "s"});
    let (s, _) = app
        .post_json("/v1/outcomes/comparison-cohorts", &w.provider_token, &body)
        .await;
    assert_eq!(s, 403);
    let (s, _) = app.get_json(&base, &w.provider_token).await;
    assert_eq!(s, 403);
    let (s, p) = app
        .post_json(
            "/v1/outcomes/comparison-cohorts",
            ct,
            &json!({"name": "n", "selection": "s", "contract_id": other.contract}),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("contract_id"))
    );
    let (s, p) = app
        .post_json(
            "/v1/outcomes/comparison-cohorts",
            ct,
            &json!({"name": " ", "selection": "s"}),
        )
        .await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("name")));

    let put = |token: &str, reference: &str, body: Value| {
        let (app, base, token) = (&app, base.clone(), token.to_string());
        let reference = reference.to_string();
        async move {
            app.request_json(
                reqwest::Method::PUT,
                &format!("{base}/members/{reference}"),
                &token,
                Some(&body),
            )
            .await
        }
    };
    let member = json!({"index_date": "2025-01-10", "follow_from": "2025-02-01"});
    let (s, _) = put(&other.council_token, "W1", member.clone()).await;
    assert_eq!(s, 404);
    let (s, p) = put(
        ct,
        "W1",
        json!({"index_date": "2025-03-10", "follow_from": "2025-02-01"}),
    )
    .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("follow_from"))
    );
    let (s, p) = put(ct, "W1", member.clone()).await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = put(ct, "W2", member.clone()).await;
    assert_eq!(s, 200, "{p}");
    let event = |reference: &str, kind: &str| json!({"reference": reference, "kind": kind, "occurred_on": "2024-06-01", "source": "GP record"});
    let events = format!("{base}/events");
    let (s, p) = app.post_json(&events, ct, &event("W9", "fall")).await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("reference"))
    );
    let (s, p) = app.post_json(&events, ct, &event("W1", "cured")).await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("kind")),
        "{p}"
    );
    let (s, _) = app
        .post_json(&events, &other.council_token, &event("W1", "fall"))
        .await;
    assert_eq!(s, 404);
    let (s, p) = app.post_json(&events, ct, &event("W1", "fall")).await;
    assert_eq!(s, 201, "{p}");
    let fall = p["id"].as_i64().unwrap();
    let (s, p) = app
        .post_json(&events, ct, &event("W1", "emergency_admission"))
        .await;
    assert_eq!(s, 201, "{p}");
    let mistaken = p["id"].as_i64().unwrap();
    // The contract's report as known before the withdrawal.
    let report = format!(
        "/v1/outcomes/report?scope=contract&id={}&from={FROM}&to={TO}&as_of={AS_OF}",
        w.contract
    );
    let (s, before) = app.get_json(&report, ct).await;
    assert_eq!(s, 200, "{before}");
    // An event recorded in error is withdrawn, once, by its commissioner only, with a reason.
    let withdraw = format!("{base}/events/{mistaken}/withdraw");
    let reason = json!({"reason": "another person's admission"});
    let (s, _) = app
        .post_json(&withdraw, &other.council_token, &reason)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app.post_json(&withdraw, &w.provider_token, &reason).await;
    assert_eq!(s, 403);
    let (s, p) = app.post_json(&withdraw, ct, &json!({"reason": ""})).await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("reason")),
        "{p}"
    );
    let (s, p) = app.post_json(&withdraw, ct, &reason).await;
    assert_eq!(s, 201, "{p}");
    let (s, _) = app.post_json(&withdraw, ct, &reason).await;
    assert_eq!(s, 409);
    // The report as known before still reproduces byte for byte; as known now it differs.
    let (s, r) = app
        .get_json(
            &format!("/v1/outcomes/reports/{}/reproduction", before["report_id"]),
            ct,
        )
        .await;
    assert_eq!((s, &r["identical"]), (200, &json!(true)), "{r}");
    let (s, after) = app.get_json(&report, ct).await;
    assert_eq!(s, 200, "{after}");
    assert_ne!(
        before["inputs"]["hash"], after["inputs"]["hash"],
        "the withdrawal changes the inputs"
    );
    // A new version ends W1's follow-up; W2 is withdrawn.
    let (s, _) = put(
        ct,
        "W1",
        json!({"index_date": "2025-01-10", "follow_from": "2025-02-01", "ended_on": "2025-06-30"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = put(
        ct,
        "W2",
        json!({"index_date": "2025-01-10", "follow_from": "2025-02-01", "withdrawn": true}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, c) = app.get_json(&base, ct).await;
    assert_eq!(s, 200, "{c}");
    let members = c["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{c}");
    assert_eq!(members[0]["reference"], "W1");
    assert_eq!(members[0]["ended_on"], "2025-06-30");
    assert_eq!(members[0]["events"][0]["kind"], "fall");
    assert_eq!(members[0]["events"][0]["id"], fall);
    assert_eq!(
        members[0]["events"].as_array().unwrap().len(),
        1,
        "the withdrawn event is gone"
    );
    assert_eq!(c["cohort"]["members"], 1);
    let (s, _) = app.get_json(&base, &other.council_token).await;
    assert_eq!(s, 404);
    let (s, list) = app
        .get_json("/v1/outcomes/comparison-cohorts", &other.council_token)
        .await;
    assert_eq!(s, 200);
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["id"] != w.cohort));
    app.stop().await;
}

/// With no comparison cohort, a contract's reference rate (a term, with its interval and
/// source) gives a causal figure for that indicator; the others stay descriptive; a rate
/// outside its own interval is refused naming the field.
#[tokio::test]
async fn reference_rates_are_contract_terms() {
    let app = spawn_app().await;
    let w = world(&app, "ref").await;
    let sc = SCENARIOS[0];
    let mut rng = StdRng::seed_from_u64(5);
    let served = population(&mut rng, &sc, true, 40);
    write_sql(&app, &w, "ref", &served, &[]).await;
    let terms = format!("/v1/contracts/{}/terms", w.contract);
    let rate = |lower: f64| {
        json!({"reference_rates": {"falls": {"per_person_year": 1.2, "lower": lower, "upper": 1.6,
            "source": "council falls audit 2023-24"}}})
    };
    let (s, p) = app
        .request_json(
            reqwest::Method::PUT,
            &terms,
            &w.council_token,
            Some(&rate(1.3)),
        )
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].as_str()),
        (422, Some("terms.reference_rates.falls")),
        "{p}"
    );
    let (s, p) = app
        .request_json(
            reqwest::Method::PUT,
            &terms,
            &w.council_token,
            Some(&rate(0.9)),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let r = report(&app, &w).await;
    let f = &r["indicators"]["falls_avoided"];
    assert_eq!(f["design"], "reference_rate", "{f}");
    assert_eq!(f["causal"], true);
    assert_eq!(f["reference_rate"]["source"], "council falls audit 2023-24");
    let observed = served.iter().map(|p| p.falls.len()).sum::<usize>() as f64;
    let days = f["days_at_risk"].as_f64().unwrap();
    let expected = 1.2 * days / 365.25;
    assert!(
        (f["expected"].as_f64().unwrap() - expected).abs() < 1e-6,
        "{f}"
    );
    assert!((f["avoided"].as_f64().unwrap() - (expected - observed)).abs() < 1e-6);
    let [lo, hi] = [
        f["interval"][0].as_f64().unwrap(),
        f["interval"][1].as_f64().unwrap(),
    ];
    // The rate's own interval alone spans 0.9 to 1.6 a year.
    assert!(hi - lo > (1.6 - 0.9) * days / 365.25 * 0.8, "{f}");
    assert_eq!(
        r["indicators"]["admissions_avoided"]["design"],
        "descriptive"
    );
    assert!(r["indicators"]["admissions_avoided"]["interval"].is_null());
    app.stop().await;
}
