//! The live stream, `GET /v1/live`, as a dashboard reads it: server-sent events, each frame
//! `event: <topic>` and `data: <JSON>` lines ended by a blank line; comments (`: connected`,
//! keep-alives) carry no data.
//!
//! [`SseFrames`] splits bytes into frames and knows nothing of I/O, so the load-test harness
//! can read its own stream with it; [`SseReader`] reads a test's stream from a [`TestApp`].

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::TestApp;

/// How long a reader waits for what it expects before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// One frame with data: its `event` (`message` when it names none) and its data lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    pub event: String,
    pub data: String,
}

/// Bytes in, frames out: a buffer that yields each complete frame once.
#[derive(Debug, Default)]
pub struct SseFrames {
    buffer: Vec<u8>,
}

impl SseFrames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a complete frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Drops what is held (a harness that stops trusting a stream it cannot parse).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// The next complete frame that carries data; comment-only frames are skipped.
    pub fn next_frame(&mut self) -> Option<SseFrame> {
        while let Some(end) = frame_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            if let Some(frame) = parse_frame(&String::from_utf8_lossy(&raw)) {
                return Some(frame);
            }
        }
        None
    }
}

/// End (exclusive, including the blank line) of the first complete frame.
fn frame_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

fn parse_frame(frame: &str) -> Option<SseFrame> {
    let mut event = None;
    let mut data: Option<String> = None;
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    Some(SseFrame {
        event: event.unwrap_or_else(|| "message".into()),
        data: data?,
    })
}

/// A frame and the time it arrived.
#[derive(Debug)]
pub struct Arrived {
    pub frame: SseFrame,
    pub at: tokio::time::Instant,
}

/// A test's open live stream.
pub struct SseReader {
    response: reqwest::Response,
    frames: SseFrames,
    /// Everything read so far, for the tests that look for text rather than frames.
    text: String,
    /// How much of `text` the text readers have returned already.
    taken: usize,
}

impl SseReader {
    /// Opens the application's stream with `token`; it must answer 200 as
    /// `text/event-stream` and send its first comment (`: connected`).
    pub async fn open(app: &TestApp, token: &str) -> SseReader {
        Self::open_at(&app.client, &format!("http://{}", app.http), token).await
    }

    /// [`Self::open`] on the server at `base` (`http://host:port`), with `client` (whose
    /// timeout, if it has one, ends the stream too).
    pub async fn open_at(client: &reqwest::Client, base: &str, token: &str) -> SseReader {
        let mut response = client
            .get(format!("{base}/v1/live"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {base}/v1/live: no answer ({e})"));
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"]
                .to_str()
                .expect("a content type"),
            "text/event-stream"
        );
        let first = response
            .chunk()
            .await
            .expect("the stream reads")
            .expect("the `connected` comment");
        assert!(
            first.starts_with(b": connected"),
            "the stream opens with `: connected`: {}",
            String::from_utf8_lossy(&first)
        );
        let mut reader = SseReader::from_response(response);
        reader.push(&first);
        reader
    }

    /// Reads a response the caller opened (and checked) itself.
    pub fn from_response(response: reqwest::Response) -> SseReader {
        SseReader {
            response,
            frames: SseFrames::default(),
            text: String::new(),
            taken: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.frames.push(chunk);
        self.text.push_str(&String::from_utf8_lossy(chunk));
    }

    /// The next frame of `topic` whose payload's `data` satisfies `pred`; returns the whole
    /// payload. Frames before it are consumed.
    pub async fn next(&mut self, topic: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while let Some(frame) = self.frames.next_frame() {
                // Every frame's data is JSON, whatever its topic.
                let v: Value = serde_json::from_str(&frame.data).unwrap_or_else(|e| {
                    panic!("`{}` data is JSON ({e}): {}", frame.event, frame.data)
                });
                if frame.event == topic && pred(&v["data"]) {
                    return v;
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no `{topic}` event in time"))
                .expect("the stream reads")
                .expect("stream open");
            self.push(&chunk);
        }
    }

    /// The text no text reader has returned yet (from the start of the stream at first).
    fn take_text(&mut self) -> String {
        let text = self.text[self.taken..].to_string();
        self.taken = self.text.len();
        text
    }

    /// Reads until the text not returned yet holds `needle` (within `within`), and returns it.
    pub async fn text_until(&mut self, needle: &str, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        while !self.text[self.taken..].contains(needle) {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.push(&chunk),
                _ => panic!(
                    "no {needle} on the live stream; got {}",
                    &self.text[self.taken..]
                ),
            }
        }
        self.take_text()
    }

    /// Reads whatever arrives within `wait` (the stream may stay open); returns the text not
    /// returned yet.
    pub async fn drain(&mut self, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout_at(deadline, self.response.chunk()).await
        {
            self.push(&chunk);
        }
        self.take_text()
    }

    /// Reads the stream in a task of its own from now on, each frame stamped with the time it
    /// arrived: for latencies measured while the test waits on something else.
    pub fn in_background(mut self) -> mpsc::UnboundedReceiver<Arrived> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut at = tokio::time::Instant::now();
            loop {
                while let Some(frame) = self.frames.next_frame() {
                    if tx.send(Arrived { frame, at }).is_err() {
                        return;
                    }
                }
                match self.response.chunk().await {
                    Ok(Some(chunk)) => {
                        at = tokio::time::Instant::now();
                        self.frames.push(&chunk);
                    }
                    _ => return,
                }
            }
        });
        rx
    }

    /// Waits for the server to end the stream; returns how long after `since` that was. Fails
    /// if it is still open 10 s from now.
    pub async fn ends(mut self, since: Instant) -> Duration {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return since.elapsed(),
                Err(_) => panic!("the event stream is still open 10 s later"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames() {
        assert_eq!(frame_end(b"event: a\ndata: {}\n\nrest"), Some(19));
        assert_eq!(frame_end(b"event: a\ndata: {}\n"), None);
    }

    #[test]
    fn yields_each_frame_with_data_once_across_chunks() {
        let mut frames = SseFrames::default();
        frames.push(b": connected\n\nevent: alarm\ndata: {\"a\"");
        assert_eq!(frames.next_frame(), None, "a comment, then half a frame");
        frames.push(b":1}\n\ndata: x\ndata: y\n\n");
        assert_eq!(
            frames.next_frame(),
            Some(SseFrame {
                event: "alarm".into(),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            frames.next_frame(),
            Some(SseFrame {
                event: "message".into(),
                data: "x\ny".into()
            })
        );
        assert_eq!(frames.next_frame(), None);
        assert_eq!(frames.pending(), 0);
    }
}
