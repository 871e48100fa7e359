//! A simulated care worker's phone: check-ins and check-outs posted in batches to
//! `POST /v1/check-ins` (HTTP Basic uid:secret). It keeps every event until a 200 covers it
//! (store and forward), waits out `Retry-After` on 503, and retries after connection errors
//! (a server restart).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homeward_proto::{Event, EventBody};
use tokio::sync::mpsc;

use crate::device::DeviceResult;
use crate::stats::{record, Shared};

pub struct PhoneConfig {
    pub uid: String,
    pub secret: String,
    pub batch_max: usize,
    pub post_interval: Duration,
}

pub async fn run(
    cfg: PhoneConfig,
    shared: Arc<Shared>,
    client: reqwest::Client,
    mut commands: mpsc::UnboundedReceiver<EventBody>,
) -> DeviceResult {
    // (seq, JSON text, first attempt)
    let mut queue: VecDeque<(u64, String, Option<Instant>)> = VecDeque::new();
    let mut next_seq = 1u64;
    let mut open = true;
    let mut retries = 0u64;
    let mut tick = tokio::time::interval(cfg.post_interval);
    loop {
        tokio::select! {
            cmd = commands.recv(), if open => match cmd {
                Some(body) => {
                    let t = chrono::Utc::now().timestamp_millis();
                    let event = Event::new(next_seq, t, body).expect("valid");
                    queue.push_back((next_seq, homeward_proto::encode_event_json_string(&event), None));
                    next_seq += 1;
                    shared.http_offered.fetch_add(1, Ordering::Relaxed);
                }
                None => open = false,
            },
            _ = tick.tick() => {
                if queue.is_empty() {
                    if !open { break; }
                    continue;
                }
                let n = queue.len().min(cfg.batch_max);
                let now = Instant::now();
                let mut body = String::from("[");
                for (i, item) in queue.iter_mut().take(n).enumerate() {
                    if i > 0 { body.push(','); }
                    body.push_str(&item.1);
                    item.2.get_or_insert(now);
                }
                body.push(']');
                let url = format!("{}/v1/check-ins", shared.base());
                let sent = client
                    .post(&url)
                    .basic_auth(&cfg.uid, Some(&cfg.secret))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let done = Instant::now();
                        let mut h = shared.hists.lock().expect("not poisoned");
                        for (_, _, first) in queue.drain(..n) {
                            let d = done - first.unwrap_or(now);
                            record(&mut h.http, d);
                            record(&mut h.interval, d);
                        }
                        shared.http_acked.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Ok(r) if r.status() == 503 || r.status() == 429 => {
                        retries += 1;
                        let wait = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(1)
                            .clamp(1, 5);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    Ok(r) if r.status().is_client_error() => {
                        // The harness sent something Homeward refuses: a bug here; count and drop.
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        eprintln!("\nphone {}: {status}: {}", cfg.uid, text.chars().take(300).collect::<String>());
                        shared.http_rejected.fetch_add(n as u64, Ordering::Relaxed);
                        queue.drain(..n);
                    }
                    _ => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        if shared.stopped() {
            break;
        }
    }
    shared.http_retries.fetch_add(retries, Ordering::Relaxed);
    DeviceResult {
        uid: cfg.uid,
        offered: next_seq - 1,
        unacked: queue.len() as u64,
    }
}
