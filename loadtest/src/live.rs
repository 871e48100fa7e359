//! The dashboard's live stream, `GET /v1/live` (server-sent events), as a provider_staff user
//! sees it. Each `event: alarm` frame is matched to the (device_uid, seq) of the event that
//! raised it, and the time from the device's first publish to the frame is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use homeward_testkit::sse::{SseFrame, SseFrames};

use crate::stats::{record, Shared};

pub async fn listen(shared: Arc<Shared>, client: reqwest::Client, token: String) {
    while !shared.stopped() {
        let url = format!("{}/v1/live", shared.base());
        let response = client
            .get(&url)
            .bearer_auth(&token)
            .header("accept", "text/event-stream")
            .send()
            .await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut stream = response.bytes_stream();
        let mut frames = SseFrames::default();
        while !shared.stopped() {
            let chunk = match tokio::time::timeout(Duration::from_millis(500), stream.next()).await
            {
                Err(_) => continue,
                Ok(Some(Ok(chunk))) => chunk,
                Ok(_) => break, // closed (server restart): reconnect
            };
            let at = Instant::now();
            frames.push(&chunk);
            while let Some(frame) = frames.next_frame() {
                handle_frame(&shared, &frame, at);
            }
            if frames.pending() > 1 << 20 {
                frames.clear();
            }
        }
    }
}

fn handle_frame(shared: &Shared, frame: &SseFrame, at: Instant) {
    let mut alarms = shared.alarms.lock().expect("not poisoned");
    match frame.event.as_str() {
        "alarm" => {
            alarms.frames += 1;
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&frame.data) else {
                return;
            };
            let Some((uid, seq)) = find_trigger(&value, 0) else {
                return;
            };
            let published = shared
                .alarm_published
                .lock()
                .expect("not poisoned")
                .remove(&(Arc::<str>::from(uid.as_str()), seq));
            if let Some(published) = published {
                alarms.matched += 1;
                record(&mut alarms.hist, at.duration_since(published));
            }
        }
        "lagged" => alarms.lagged += 1,
        _ => {}
    }
}

/// The first object (the frame itself, or nested in it) with both `device_uid` and `seq`.
fn find_trigger(v: &serde_json::Value, depth: usize) -> Option<(String, u64)> {
    let obj = v.as_object()?;
    if let (Some(uid), Some(seq)) = (
        obj.get("device_uid").and_then(|u| u.as_str()),
        obj.get("seq").and_then(|s| s.as_u64()),
    ) {
        return Some((uid.to_string(), seq));
    }
    if depth >= 4 {
        return None;
    }
    obj.values()
        .find_map(|child| find_trigger(child, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_trigger_at_the_top_or_nested() {
        let top = serde_json::json!({"device_uid": "lt-1", "seq": 7});
        assert_eq!(find_trigger(&top, 0), Some(("lt-1".into(), 7)));
        let nested = serde_json::json!({"topic": "alarm", "data": {"id": 3, "trigger": {"device_uid": "lt-2", "seq": 9}}});
        assert_eq!(find_trigger(&nested, 0), Some(("lt-2".into(), 9)));
        assert_eq!(find_trigger(&serde_json::json!({"x": 1}), 0), None);
    }
}
