//! Store and forward: a bounded, persistent queue of events, numbered with a persistent
//! monotonic sequence number, each kept until Homeward's end-to-end acknowledgement covers it.
//!
//! # What it guarantees
//! - **Numbering.** Every event gets the next `seq`. A `seq` is never used twice, not even
//!   across a reboot or a power cut: before a `seq` is handed out, a *ceiling* above it is
//!   persisted (in blocks of [`QueueConfig::seq_lease`], to spare the flash), and on boot
//!   numbering resumes at the persisted ceiling (or above the highest queued `seq`). A reboot
//!   may therefore skip up to `seq_lease - 1` numbers; the server acknowledges in ranges so
//!   such gaps cost nothing.
//! - **Persistence.** An event is written to storage (with its `seq`, kind and the exact
//!   payload bytes) before it can be sent, and erased only when an
//!   [`AckRanges`] from Homeward covers its `seq` (the broker's PUBACK proves nothing: the
//!   broker may hold it in memory). After a reboot [`Queue::open`] restores every queued
//!   event, and a resend is the stored bytes: same `seq`, same device time `t`, byte for
//!   byte, so the server stores it once.
//! - **Resending.** A sent event not acknowledged within [`QueueConfig::resend_after_ms`] is
//!   sent again; on a new connection everything unacknowledged is sent again at once
//!   ([`Queue::restart_session`]). At most [`QueueConfig::window`] events are in flight
//!   (sent, not yet acknowledged), except alarms, which neither wait for the window nor count
//!   in it, and go out before anything else (the priority lane).
//! - **Bounded, with priorities.** The queue holds `N` events. When it is full, a new event
//!   takes the slot of the oldest queued heartbeat; failing that, a new *alarm* takes the slot
//!   of the oldest non-alarm event; failing that the new event is refused
//!   ([`PushError::Full`]). A queued alarm is never dropped.
//!
//! # Storage layout
//! Records 0 and 1 hold the sequence ceiling, written alternately with a generation counter
//! (a torn write leaves the other intact). Records `2..2 + N` are the queue's slots. Every
//! record ends with a CRC-32; a record that fails it (torn write, erased flash) is empty.
//!
//! ```text
//! slot:  "HQ" ver=1 kind(u8) seq(u64 LE) len(u16 LE) payload[len] ... crc32(LE, last 4 bytes)
//! meta:  "HM" ver=1 0      generation(u32 LE) ceiling(u64 LE)     ... crc32(LE, last 4 bytes)
//! ```
//!
//! No allocation: the queue keeps a small index entry per slot in RAM (seq, kind, when sent)
//! and one record buffer; payloads stay in storage until they are sent.

use homeward_proto::{AckRanges, Encoding, Event, EventBody, EventKind, MAX_SEQ, MIN_SEQ};

use crate::hw::{LinkError, Record, Storage, RECORD_LEN};

/// Records before the queue's slots (the two copies of the sequence ceiling).
pub const META_RECORDS: usize = 2;
const HEADER: usize = 14;
const CRC_LEN: usize = 4;
/// The largest event payload a slot holds, in bytes. Every event a pendant or hub raises
/// (alarms, heartbeats, door and battery events) takes well under 100 bytes even in JSON.
pub const MAX_PAYLOAD: usize = RECORD_LEN - HEADER - CRC_LEN;
const SLOT_MAGIC: [u8; 2] = *b"HQ";
const META_MAGIC: [u8; 2] = *b"HM";
const FORMAT: u8 = 1;

/// How much an event matters when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Heartbeats: dropped first (a newer one says the same and more).
    Heartbeat,
    /// Everything that is neither a heartbeat nor an alarm.
    Normal,
    /// Alarms someone must answer ([`EventKind::is_priority`]): never dropped.
    Alarm,
}

impl Class {
    /// The class of a kind.
    pub const fn of(kind: EventKind) -> Class {
        if kind.is_priority() {
            Class::Alarm
        } else if matches!(kind, EventKind::Heartbeat) {
            Class::Heartbeat
        } else {
            Class::Normal
        }
    }
}

/// Timing and encoding of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Resend an event not acknowledged this long after it was sent. Default 30 s: well above
    /// the server's batch commit time, well below anyone's patience for an alarm.
    pub resend_after_ms: u32,
    /// At most this many non-alarm events in flight (sent, not acknowledged). Default 16.
    pub window: u16,
    /// Sequence numbers reserved per write of the ceiling. Default 16; 1 writes it for every
    /// event and never skips a number on reboot.
    pub seq_lease: u32,
    /// How events are encoded. Default CBOR (smaller on the air).
    pub encoding: Encoding,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            resend_after_ms: 30_000,
            window: 16,
            seq_lease: 16,
            encoding: Encoding::Cbor,
        }
    }
}

/// An event accepted into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Its sequence number.
    pub seq: u64,
    /// A queued event whose slot it took (seq and kind): the oldest heartbeat, or for an
    /// alarm the oldest non-alarm event. That event is gone.
    pub evicted: Option<(u64, EventKind)>,
}

/// Why an event was not queued. No `seq` is used up by a refused event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError<E> {
    /// The queue is full of events this one may not displace (alarms, or for a non-alarm
    /// event, non-heartbeats). Nothing was dropped.
    Full,
    /// The encoded event is larger than [`MAX_PAYLOAD`].
    TooLarge,
    /// The time is outside the wire format's range.
    InvalidTime,
    /// Every sequence number up to `i64::MAX` is used.
    SeqExhausted,
    /// The storage failed; the event is not queued.
    Storage(E),
}

/// Why a queue could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError<E> {
    /// The storage has fewer than `2 + N` records.
    TooSmall { needed: usize, have: usize },
    /// A read failed.
    Storage(E),
}

/// What [`Queue::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    /// Events restored into the queue.
    pub events: usize,
    /// Slots holding a torn or foreign record (treated as empty).
    pub corrupt: usize,
    /// The sequence number the next event will get.
    pub next_seq: u64,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    /// Queued events it covered, now erased.
    pub removed: usize,
    /// Of which alarms.
    pub alarms: usize,
    /// Erasures that failed (the event may come back after a reboot and be resent; the
    /// server stores it once).
    pub storage_errors: usize,
}

/// Counters since the queue was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Events accepted.
    pub pushed: u64,
    /// First sends handed to the link.
    pub sent: u64,
    /// Sends after the first, by timeout or a new session.
    pub resent: u64,
    /// Events erased because an ack covered them.
    pub acked: u64,
    /// Events that lost their slot to a newer one.
    pub evicted: u64,
    /// Events refused because the queue was full.
    pub refused: u64,
}

/// One queued event, as [`Queue::iter`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The sequence number.
    pub seq: u64,
    /// The kind.
    pub kind: EventKind,
    /// When it was last sent (monotonic ms), if since the queue was opened or the session
    /// restarted.
    pub sent_at: Option<u64>,
    /// How many times it was sent.
    pub sends: u32,
}

/// A slot's RAM index entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    kind: EventKind,
    sent_at: Option<u64>,
    sends: u32,
}

impl Entry {
    fn class(&self) -> Class {
        Class::of(self.kind)
    }
}

/// The persistent queue over `N` slots of storage `S`. See the module documentation.
pub struct Queue<S: Storage, const N: usize> {
    storage: S,
    config: QueueConfig,
    slots: [Option<Entry>; N],
    next_seq: u64,
    /// Every seq below it may have been used; persisted before any seq at or above it is.
    ceiling: u64,
    meta_generation: u32,
    stats: QueueStats,
    buf: Record,
}

impl<S: Storage, const N: usize> Queue<S, N> {
    /// Opens the queue over `storage`, restoring the sequence numbering and every queued
    /// event. Blank storage gives an empty queue numbering from 1.
    pub fn open(
        mut storage: S,
        config: QueueConfig,
    ) -> Result<(Self, Restored), OpenError<S::Error>> {
        let needed = META_RECORDS + N;
        if storage.records() < needed {
            return Err(OpenError::TooSmall {
                needed,
                have: storage.records(),
            });
        }
        let mut buf = [0u8; RECORD_LEN];
        let mut meta: Option<(u32, u64)> = None;
        for index in 0..META_RECORDS {
            storage.read(index, &mut buf).map_err(OpenError::Storage)?;
            if let Some(found) = parse_meta(&buf) {
                if meta.is_none_or(|(generation, _)| found.0 > generation) {
                    meta = Some(found);
                }
            }
        }
        let (meta_generation, ceiling) = meta.unwrap_or((0, MIN_SEQ));
        let mut slots = [None; N];
        let mut restored = Restored::default();
        let mut highest = 0u64;
        for (i, slot) in slots.iter_mut().enumerate() {
            storage
                .read(META_RECORDS + i, &mut buf)
                .map_err(OpenError::Storage)?;
            match parse_slot(&buf) {
                SlotRead::Event { seq, kind, .. } => {
                    *slot = Some(Entry {
                        seq,
                        kind,
                        sent_at: None,
                        sends: 0,
                    });
                    highest = highest.max(seq);
                    restored.events += 1;
                }
                SlotRead::Empty => {}
                SlotRead::Corrupt => restored.corrupt += 1,
            }
        }
        let next_seq = ceiling.max(highest.saturating_add(1)).max(MIN_SEQ);
        restored.next_seq = next_seq;
        let queue = Queue {
            storage,
            config,
            slots,
            next_seq,
            // Force a persisted lease before the first new seq.
            ceiling: next_seq,
            meta_generation,
            stats: QueueStats::default(),
            buf,
        };
        Ok((queue, restored))
    }

    /// Queues an event with device time `time_ms`, giving it the next sequence number, and
    /// persists it. See the module documentation for what happens when the queue is full.
    pub fn push(
        &mut self,
        time_ms: i64,
        body: EventBody,
        sensor: Option<u16>,
    ) -> Result<Pushed, PushError<S::Error>> {
        let kind = body.kind();
        let (slot, evicted) = match self.choose_slot(Class::of(kind)) {
            Some(found) => found,
            None => {
                self.stats.refused += 1;
                return Err(PushError::Full);
            }
        };
        let seq = self.next_seq;
        if seq > MAX_SEQ {
            return Err(PushError::SeqExhausted);
        }
        let mut event = Event::new(seq, time_ms, body).map_err(|_| PushError::InvalidTime)?;
        if let Some(sensor) = sensor {
            event = event.with_sensor(sensor);
        }
        let mut record = [0u8; RECORD_LEN];
        let len = homeward_proto::encode_event(
            &event,
            self.config.encoding,
            &mut record[HEADER..HEADER + MAX_PAYLOAD],
        )
        .map_err(|_| PushError::TooLarge)?;
        self.reserve(seq).map_err(PushError::Storage)?;
        write_slot_header(&mut record, seq, kind, len);
        seal(&mut record);
        self.storage
            .write(META_RECORDS + slot, &record)
            .map_err(PushError::Storage)?;
        // The seq is used from here on, even if the caller never hears of it.
        self.next_seq = seq + 1;
        let evicted = evicted.map(|e| (e.seq, e.kind));
        if evicted.is_some() {
            self.stats.evicted += 1;
        }
        self.slots[slot] = Some(Entry {
            seq,
            kind,
            sent_at: None,
            sends: 0,
        });
        self.stats.pushed += 1;
        Ok(Pushed { seq, evicted })
    }

    /// A free slot, or the slot of the event a new one of `class` may displace.
    fn choose_slot(&self, class: Class) -> Option<(usize, Option<Entry>)> {
        if let Some(free) = self.slots.iter().position(Option::is_none) {
            return Some((free, None));
        }
        let oldest_of = |victim: Class| {
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.map(|e| (i, e)))
                .filter(|(_, e)| e.class() == victim)
                .min_by_key(|(_, e)| e.seq)
        };
        let victim = oldest_of(Class::Heartbeat).or_else(|| {
            if class == Class::Alarm {
                oldest_of(Class::Normal)
            } else {
                None
            }
        })?;
        Some((victim.0, Some(victim.1)))
    }

    /// Makes sure `seq` is below the persisted ceiling.
    fn reserve(&mut self, seq: u64) -> Result<(), S::Error> {
        if seq < self.ceiling {
            return Ok(());
        }
        let ceiling = seq
            .saturating_add(u64::from(self.config.seq_lease.max(1)))
            .min(MAX_SEQ + 1);
        let generation = self.meta_generation.wrapping_add(1);
        let mut record = [0u8; RECORD_LEN];
        record[0..2].copy_from_slice(&META_MAGIC);
        record[2] = FORMAT;
        record[4..8].copy_from_slice(&generation.to_le_bytes());
        record[8..16].copy_from_slice(&ceiling.to_le_bytes());
        seal(&mut record);
        self.storage
            .write((generation as usize) % META_RECORDS, &record)?;
        self.meta_generation = generation;
        self.ceiling = ceiling;
        Ok(())
    }

    /// Sends what is due at `now_ms` through `send` (which gets each payload, byte for byte
    /// as stored): alarms first, then the rest in `seq` order; new events only while fewer
    /// than [`QueueConfig::window`] are in flight (alarms regardless), resends once
    /// [`QueueConfig::resend_after_ms`] have passed. Stops at the first refusal of `send`
    /// (offline, busy) and leaves the rest for the next call. Returns how many went out.
    pub fn pump(
        &mut self,
        now_ms: u64,
        mut send: impl FnMut(&[u8]) -> Result<(), LinkError>,
    ) -> Result<usize, S::Error> {
        let mut in_flight = self.window_used();
        let mut sent = 0;
        // Each round sends one event and stamps it `now_ms`, so no event goes twice.
        for _ in 0..N {
            let Some(slot) = self.pick(now_ms, in_flight) else {
                break;
            };
            let Some(entry) = self.slots[slot] else {
                break;
            };
            self.storage.read(META_RECORDS + slot, &mut self.buf)?;
            let payload = match parse_slot(&self.buf) {
                SlotRead::Event { seq, payload, .. } if seq == entry.seq => payload,
                // The record changed under us (storage fault): it cannot be sent as it was.
                _ => {
                    self.slots[slot] = None;
                    continue;
                }
            };
            if send(&self.buf[HEADER..HEADER + payload]).is_err() {
                break;
            }
            sent += 1;
            if let Some(e) = self.slots[slot].as_mut() {
                if e.sent_at.is_none() && e.class() != Class::Alarm {
                    in_flight += 1;
                }
                if e.sends == 0 {
                    self.stats.sent += 1;
                } else {
                    self.stats.resent += 1;
                }
                e.sends = e.sends.saturating_add(1);
                e.sent_at = Some(now_ms);
            }
        }
        Ok(sent)
    }

    /// Non-alarm events in flight: what the window limits.
    fn window_used(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.sent_at.is_some() && e.class() != Class::Alarm)
            .count()
    }

    /// The slot to send next, if any is due.
    fn pick(&self, now_ms: u64, in_flight: usize) -> Option<usize> {
        let resend = u64::from(self.config.resend_after_ms);
        let room = in_flight < usize::from(self.config.window.max(1));
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
            .filter(|(_, e)| match e.sent_at {
                None => room || e.class() == Class::Alarm,
                Some(at) => now_ms >= at.saturating_add(resend),
            })
            .min_by_key(|(_, e)| (e.class() != Class::Alarm, e.seq))
            .map(|(i, _)| i)
    }

    /// Erases every queued event `ranges` covers. Events it does not cover stay queued and
    /// are resent when their time comes; seqs it covers that are not queued are ignored.
    pub fn ack(&mut self, ranges: &AckRanges) -> Acked {
        let mut acked = Acked::default();
        let erased = [0u8; RECORD_LEN];
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(entry) = slot else { continue };
            if !ranges.contains(entry.seq) {
                continue;
            }
            if entry.class() == Class::Alarm {
                acked.alarms += 1;
            }
            *slot = None;
            acked.removed += 1;
            if self.storage.write(META_RECORDS + i, &erased).is_err() {
                acked.storage_errors += 1;
            }
        }
        self.stats.acked += acked.removed as u64;
        acked
    }

    /// A new connection: whatever was in flight may be lost with the old one, so every
    /// unacknowledged event is due again now.
    pub fn restart_session(&mut self) {
        for e in self.slots.iter_mut().flatten() {
            e.sent_at = None;
        }
    }

    /// When [`Queue::pump`] next has something to do: `Some(0)` when something is due now
    /// (unsent with room in the window), else the earliest resend time. `None` when empty.
    pub fn next_deadline(&self) -> Option<u64> {
        let resend = u64::from(self.config.resend_after_ms);
        let room = self.window_used() < usize::from(self.config.window.max(1));
        self.slots
            .iter()
            .flatten()
            .map(|e| match e.sent_at {
                None if room || e.class() == Class::Alarm => 0,
                None => u64::MAX,
                Some(at) => at.saturating_add(resend),
            })
            .min()
            .filter(|&t| t != u64::MAX)
    }

    /// The payload of queued event `seq`, exactly as it is (re)sent, copied into `out`;
    /// returns its length.
    pub fn payload(&mut self, seq: u64, out: &mut [u8]) -> Option<usize> {
        let slot = self
            .slots
            .iter()
            .position(|e| e.is_some_and(|e| e.seq == seq))?;
        self.storage.read(META_RECORDS + slot, &mut self.buf).ok()?;
        match parse_slot(&self.buf) {
            SlotRead::Event {
                seq: s, payload, ..
            } if s == seq && out.len() >= payload => {
                out[..payload].copy_from_slice(&self.buf[HEADER..HEADER + payload]);
                Some(payload)
            }
            _ => None,
        }
    }

    /// The queued events, in slot order (not `seq` order).
    pub fn iter(&self) -> impl Iterator<Item = Queued> + '_ {
        self.slots.iter().flatten().map(|e| Queued {
            seq: e.seq,
            kind: e.kind,
            sent_at: e.sent_at,
            sends: e.sends,
        })
    }

    /// Whether `seq` is queued.
    pub fn contains(&self, seq: u64) -> bool {
        self.slots.iter().flatten().any(|e| e.seq == seq)
    }

    /// Events queued.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Slots: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Events sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.sent_at.is_some())
            .count()
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Counters since the queue was opened.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The storage, for inspection.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back (a reboot opens a new queue over it).
    pub fn into_storage(self) -> S {
        self.storage
    }
}

enum SlotRead {
    Empty,
    Corrupt,
    Event {
        seq: u64,
        kind: EventKind,
        payload: usize,
    },
}

fn write_slot_header(record: &mut Record, seq: u64, kind: EventKind, len: usize) {
    record[0..2].copy_from_slice(&SLOT_MAGIC);
    record[2] = FORMAT;
    record[3] = kind.code();
    record[4..12].copy_from_slice(&seq.to_le_bytes());
    // `len` <= MAX_PAYLOAD < 65536.
    record[12..14].copy_from_slice(&(len as u16).to_le_bytes());
}

fn u64_at(record: &Record, at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&record[at..at + 8]);
    u64::from_le_bytes(b)
}

fn parse_slot(record: &Record) -> SlotRead {
    if record[0..2] != SLOT_MAGIC {
        // Erased (zeros), blank flash (0xff) or never written: empty. Anything else with a
        // bad magic is damage, but damage with no event in it.
        return if record[0..2] == [0, 0] || record[0..2] == [0xff, 0xff] {
            SlotRead::Empty
        } else {
            SlotRead::Corrupt
        };
    }
    if !crc_ok(record) || record[2] != FORMAT {
        return SlotRead::Corrupt;
    }
    let Some(kind) = EventKind::from_code(record[3]) else {
        return SlotRead::Corrupt;
    };
    let seq = u64_at(record, 4);
    let len = usize::from(u16::from_le_bytes([record[12], record[13]]));
    if !(MIN_SEQ..=MAX_SEQ).contains(&seq) || len == 0 || len > MAX_PAYLOAD {
        return SlotRead::Corrupt;
    }
    SlotRead::Event {
        seq,
        kind,
        payload: len,
    }
}

fn parse_meta(record: &Record) -> Option<(u32, u64)> {
    if record[0..2] != META_MAGIC || record[2] != FORMAT || !crc_ok(record) {
        return None;
    }
    let generation = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    Some((generation, u64_at(record, 8)))
}

fn seal(record: &mut Record) {
    let crc = crc32(&record[..RECORD_LEN - CRC_LEN]);
    record[RECORD_LEN - CRC_LEN..].copy_from_slice(&crc.to_le_bytes());
}

fn crc_ok(record: &Record) -> bool {
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&record[RECORD_LEN - CRC_LEN..]);
    crc32(&record[..RECORD_LEN - CRC_LEN]) == u32::from_le_bytes(stored)
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib), bit by bit: no table, 256 bytes per record.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
