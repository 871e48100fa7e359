//! Counters shared by every simulated device and phone, latency histograms, /proc sampling and
//! the once-a-second timeline with its live line on stderr.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 1 hour, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
    let _ = h.record(us);
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |v: u64| (v as f64 / 1000.0 * 100.0).round() / 100.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p95_ms: ms(h.value_at_quantile(0.95)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

pub struct Hists {
    pub mqtt: Histogram<u64>,
    pub http: Histogram<u64>,
    /// Both, since the last timeline sample.
    pub interval: Histogram<u64>,
}

pub struct Alarms {
    pub hist: Histogram<u64>,
    /// `event: alarm` frames on the live stream.
    pub frames: u64,
    /// Frames matched to a (device, seq) this run published.
    pub matched: u64,
    pub lagged: u64,
}

/// Everything the tasks of one run share.
pub struct Shared {
    pub start: Instant,
    /// MQTT events created (handed to a device, which keeps them until acked).
    pub offered: AtomicU64,
    /// MQTT events covered by an end-to-end ack (first time).
    pub acked: AtomicU64,
    pub resends: AtomicU64,
    pub http_offered: AtomicU64,
    pub http_acked: AtomicU64,
    pub http_retries: AtomicU64,
    pub http_rejected: AtomicU64,
    pub connected: AtomicU64,
    pub hists: Mutex<Hists>,
    pub alarm_published: Mutex<HashMap<(Arc<str>, u64), Instant>>,
    pub alarms_sent: AtomicU64,
    pub alarms: Mutex<Alarms>,
    /// Everyone stops now (end of drain).
    pub stop: AtomicBool,
    /// The HTTP base URL (changes when the server restarts).
    pub http_base: RwLock<String>,
    pub server_pid: AtomicU32,
    pub pg_pid: AtomicU32,
    /// Offered rate the generator aims at now (for the live line).
    pub target_rate: AtomicU64,
}

impl Shared {
    pub fn new(http_base: String) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            offered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            http_offered: AtomicU64::new(0),
            http_acked: AtomicU64::new(0),
            http_retries: AtomicU64::new(0),
            http_rejected: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            hists: Mutex::new(Hists {
                mqtt: histogram(),
                http: histogram(),
                interval: histogram(),
            }),
            alarm_published: Mutex::new(HashMap::new()),
            alarms_sent: AtomicU64::new(0),
            alarms: Mutex::new(Alarms {
                hist: histogram(),
                frames: 0,
                matched: 0,
                lagged: 0,
            }),
            stop: AtomicBool::new(false),
            http_base: RwLock::new(http_base),
            server_pid: AtomicU32::new(0),
            pg_pid: AtomicU32::new(0),
            target_rate: AtomicU64::new(0),
        })
    }

    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn base(&self) -> String {
        self.http_base.read().expect("not poisoned").clone()
    }

    pub fn total_offered(&self) -> u64 {
        self.offered.load(Ordering::Relaxed) + self.http_offered.load(Ordering::Relaxed)
    }

    pub fn total_acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed) + self.http_acked.load(Ordering::Relaxed)
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub target_per_s: f64,
    pub offered_per_s: f64,
    pub acked_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Offered and not yet acknowledged (held by devices and phones).
    pub backlog: u64,
    pub connected_devices: u64,
    pub server_rss_mb: Option<f64>,
    pub server_cpu_pct: Option<f64>,
    pub postgres_cpu_pct: Option<f64>,
    pub harness_cpu_pct: Option<f64>,
}

/// CPU ticks (user + system) of a process, from /proc/<pid>/stat fields 14 and 15.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A process and its children together (PostgreSQL: the postmaster and its backends).
pub fn tree_ticks(root: u32) -> Option<u64> {
    let mut total = cpu_ticks(root)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_pid(pid) == Some(root) {
            total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    Some(total)
}

/// Resident memory (VmRSS) in MiB, from /proc/<pid>/status.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct CpuMeter {
    last: Option<(u32, u64, Instant)>,
    hz: f64,
}

impl CpuMeter {
    fn sample(&mut self, pid: u32, ticks: Option<u64>) -> Option<f64> {
        let now = Instant::now();
        let ticks = ticks?;
        let pct = match self.last {
            Some((p, t, at)) if p == pid && ticks >= t => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                Some(((ticks - t) as f64 / self.hz / secs * 1000.0).round() / 10.0)
            }
            _ => None,
        };
        self.last = Some((pid, ticks, now));
        pct
    }
}

/// Samples once a second until `stop` or `max`; prints the live line. Returns the timeline.
pub async fn sampler(
    shared: Arc<Shared>,
    planned_s: f64,
    max: Duration,
    done: Arc<AtomicBool>,
) -> Vec<Sample> {
    let hz = clock_ticks_per_s();
    let mut server = CpuMeter { last: None, hz };
    let mut pg = CpuMeter { last: None, hz };
    let mut me = CpuMeter { last: None, hz };
    let own = std::process::id();
    let tty = std::io::stderr().is_terminal();
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_off, mut last_ack, mut last_t) = (0u64, 0u64, shared.start.elapsed());
    let until = Instant::now() + max;
    while !done.load(Ordering::Relaxed) && Instant::now() < until {
        tick.tick().await;
        let now = shared.start.elapsed();
        let dt = (now - last_t).as_secs_f64().max(1e-3);
        last_t = now;
        let (off, ack) = (shared.total_offered(), shared.total_acked());
        let interval = {
            let mut h = shared.hists.lock().expect("not poisoned");
            let p = percentiles(&h.interval);
            h.interval.reset();
            p
        };
        let spid = shared.server_pid.load(Ordering::Relaxed);
        let ppid = shared.pg_pid.load(Ordering::Relaxed);
        let sample = Sample {
            t_s: (now.as_secs_f64() * 10.0).round() / 10.0,
            target_per_s: shared.target_rate.load(Ordering::Relaxed) as f64,
            offered_per_s: ((off - last_off) as f64 / dt).round(),
            acked_per_s: ((ack.saturating_sub(last_ack)) as f64 / dt).round(),
            p50_ms: interval.p50_ms,
            p99_ms: interval.p99_ms,
            backlog: off.saturating_sub(ack),
            connected_devices: shared.connected.load(Ordering::Relaxed),
            server_rss_mb: (spid != 0)
                .then(|| rss_mb(spid))
                .flatten()
                .map(|m| (m * 10.0).round() / 10.0),
            server_cpu_pct: (spid != 0)
                .then(|| server.sample(spid, cpu_ticks(spid)))
                .flatten(),
            postgres_cpu_pct: (ppid != 0)
                .then(|| pg.sample(ppid, tree_ticks(ppid)))
                .flatten(),
            harness_cpu_pct: me.sample(own, cpu_ticks(own)),
        };
        last_off = off;
        last_ack = ack;
        print_line(&sample, planned_s, tty);
        timeline.push(sample);
    }
    if tty {
        eprintln!();
    }
    timeline
}

fn print_line(s: &Sample, planned_s: f64, tty: bool) {
    let width = 24usize;
    let filled = ((s.t_s / planned_s.max(1.0)).min(1.0) * width as f64) as usize;
    let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    let line = format!(
        "[{bar}] {:>5.0}s offered {:>6.0}/s acked {:>6.0}/s backlog {:>7} p99 {:>7.1}ms devices {:>5} server rss {:>4}MB cpu {:>3}% pg cpu {:>3}%",
        s.t_s,
        s.offered_per_s,
        s.acked_per_s,
        s.backlog,
        s.p99_ms,
        s.connected_devices,
        opt(s.server_rss_mb),
        opt(s.server_cpu_pct),
        opt(s.postgres_cpu_pct),
    );
    let mut err = std::io::stderr().lock();
    if tty {
        let _ = write!(err, "\r{line}\x1b[K");
    } else if (s.t_s as u64).is_multiple_of(5) {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}
