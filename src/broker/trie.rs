//! The subscription index: a trie of filter levels, answering "who gets this topic?".
//!
//! It is the only record of which session subscribed to what (a persistent session's
//! subscriptions live here while it is offline), so subscribe, unsubscribe and "forget this
//! session" are atomic under the one lock that guards the trie. The broker holds it in an
//! `RwLock`: routing takes the read lock for one walk and releases it before touching any
//! session, so no session lock is ever taken while it is held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rumqttc::mqttbytes::QoS;

use super::session::Session;
use super::topic::FilterSpec;

/// Identifies a shared subscription group: messages routed through it carry this key so that,
/// if the member holding them goes away for good, they can be handed to another member.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ShareKey {
    pub(super) group: String,
    pub(super) filter: String,
}

/// One subscription of one session, as remembered for removal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubKey {
    Direct(String),
    Shared { group: String, filter: String },
}

impl SubKey {
    fn of(spec: &FilterSpec<'_>) -> Self {
        match *spec {
            FilterSpec::Direct(filter) => SubKey::Direct(filter.to_owned()),
            FilterSpec::Shared { group, filter } => SubKey::Shared {
                group: group.to_owned(),
                filter: filter.to_owned(),
            },
        }
    }
}

struct Member {
    session: Arc<Session>,
    qos: QoS,
}

struct Group {
    key: Arc<ShareKey>,
    members: Vec<Member>,
    next: AtomicUsize,
}

/// Routing walks these maps for every message (three lookups per topic level), so they hash
/// with foldhash rather than SipHash: several times quicker on short keys, and still seeded
/// per process. The keys are filter levels of authenticated clients' subscriptions.
#[derive(Default)]
struct Node {
    children: foldhash::HashMap<Box<str>, Node>,
    direct: foldhash::HashMap<u64, Member>,
    shared: foldhash::HashMap<Box<str>, Group>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.direct.is_empty() && self.shared.is_empty()
    }
}

/// A delivery target found by [`SubscriptionTrie::matches`].
pub(super) enum Target {
    Direct {
        session: Arc<Session>,
        qos: QoS,
    },
    /// A share group: members in order of preference (the first is the round-robin pick).
    Shared {
        key: Arc<ShareKey>,
        candidates: Vec<(Arc<Session>, QoS)>,
    },
}

#[derive(Default)]
pub(super) struct SubscriptionTrie {
    root: Node,
    by_session: HashMap<u64, Vec<SubKey>>,
}

impl SubscriptionTrie {
    /// Add or replace a subscription. Returns false (and does nothing) if the session has
    /// already been discarded, so a late SUBSCRIBE cannot resurrect it.
    pub(super) fn subscribe(
        &mut self,
        session: &Arc<Session>,
        spec: &FilterSpec<'_>,
        qos: QoS,
    ) -> bool {
        if session.is_discarded() {
            return false;
        }
        let id = session.id();
        let node = spec
            .filter()
            .split('/')
            .fold(&mut self.root, |node, level| {
                node.children.entry(level.into()).or_default()
            });
        let key = match *spec {
            FilterSpec::Direct(filter) => {
                node.direct.insert(
                    id,
                    Member {
                        session: session.clone(),
                        qos,
                    },
                );
                SubKey::Direct(filter.to_owned())
            }
            FilterSpec::Shared { group, filter } => {
                let entry = node.shared.entry(group.into()).or_insert_with(|| Group {
                    key: Arc::new(ShareKey {
                        group: group.to_owned(),
                        filter: filter.to_owned(),
                    }),
                    members: Vec::new(),
                    next: AtomicUsize::new(0),
                });
                match entry.members.iter_mut().find(|m| m.session.id() == id) {
                    Some(m) => m.qos = qos,
                    None => entry.members.push(Member {
                        session: session.clone(),
                        qos,
                    }),
                }
                SubKey::Shared {
                    group: group.to_owned(),
                    filter: filter.to_owned(),
                }
            }
        };
        let keys = self.by_session.entry(id).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
        true
    }

    /// Remove one subscription; returns whether it existed.
    pub(super) fn unsubscribe(&mut self, session_id: u64, spec: &FilterSpec<'_>) -> bool {
        let key = SubKey::of(spec);
        let Some(keys) = self.by_session.get_mut(&session_id) else {
            return false;
        };
        let Some(pos) = keys.iter().position(|k| *k == key) else {
            return false;
        };
        keys.swap_remove(pos);
        if keys.is_empty() {
            self.by_session.remove(&session_id);
        }
        remove_key(&mut self.root, session_id, &key);
        true
    }

    /// Whether a SUBSCRIBE to `spec` would add a subscription for the session (rather than
    /// replace one) while it already has `max` (direct and shared alike).
    pub(super) fn would_exceed(&self, session_id: u64, spec: &FilterSpec<'_>, max: usize) -> bool {
        let Some(keys) = self.by_session.get(&session_id) else {
            return max == 0;
        };
        keys.len() >= max && !keys.contains(&SubKey::of(spec))
    }

    /// Keep only the subscriptions of a session whose filter (the inner filter, for a shared
    /// one) `allowed` accepts; returns the filters removed, as the client wrote them.
    pub(super) fn retain_session(
        &mut self,
        session_id: u64,
        allowed: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let Some(keys) = self.by_session.get_mut(&session_id) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        keys.retain(|key| {
            let filter = match key {
                SubKey::Direct(filter) | SubKey::Shared { filter, .. } => filter,
            };
            let keep = allowed(filter);
            if !keep {
                removed.push(key.clone());
            }
            keep
        });
        if keys.is_empty() {
            self.by_session.remove(&session_id);
        }
        removed
            .into_iter()
            .map(|key| {
                remove_key(&mut self.root, session_id, &key);
                match key {
                    SubKey::Direct(filter) => filter,
                    SubKey::Shared { group, filter } => format!("$share/{group}/{filter}"),
                }
            })
            .collect()
    }

    /// Forget every subscription of a session.
    pub(super) fn remove_session(&mut self, session_id: u64) {
        if let Some(keys) = self.by_session.remove(&session_id) {
            for key in &keys {
                remove_key(&mut self.root, session_id, key);
            }
        }
    }

    /// All targets for a topic. Direct targets are deduplicated per session with the highest
    /// granted QoS; each share group appears once.
    pub(super) fn matches(&self, topic: &str, max_inflight: usize) -> Vec<Target> {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        let mut hits: Vec<&Node> = Vec::new();
        collect(&self.root, &levels, 0, dollar, &mut hits);

        let mut direct: Vec<(u64, &Member)> = Vec::new();
        let mut out = Vec::new();
        for node in hits {
            direct.extend(node.direct.iter().map(|(id, m)| (*id, m)));
            for group in node.shared.values() {
                if let Some(candidates) = group.candidates(max_inflight) {
                    out.push(Target::Shared {
                        key: group.key.clone(),
                        candidates,
                    });
                }
            }
        }
        if direct.len() > 1 {
            // Highest QoS first within a session, then keep the first of each session.
            direct.sort_by(|a, b| a.0.cmp(&b.0).then((b.1.qos as u8).cmp(&(a.1.qos as u8))));
            direct.dedup_by_key(|(id, _)| *id);
        }
        out.extend(direct.into_iter().map(|(_, m)| Target::Direct {
            session: m.session.clone(),
            qos: m.qos,
        }));
        out
    }

    /// Candidates of one share group, for re-homing a message whose member went away.
    pub(super) fn shared_candidates(
        &self,
        key: &ShareKey,
        max_inflight: usize,
    ) -> Option<Vec<(Arc<Session>, QoS)>> {
        let node = key
            .filter
            .split('/')
            .try_fold(&self.root, |node, level| node.children.get(level))?;
        node.shared
            .get(key.group.as_str())?
            .candidates(max_inflight)
    }
}

impl Group {
    /// Members in order of preference: round robin from the next position, preferring a
    /// connected member with a free inflight window, then any connected member, then an
    /// offline (persistent) member, whose queue keeps the message until it returns.
    fn candidates(&self, max_inflight: usize) -> Option<Vec<(Arc<Session>, QoS)>> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut ranked: Vec<(u8, &Member)> = (0..n)
            .map(|i| {
                let m = &self.members[(start + i) % n];
                let rank = match (m.session.is_connected(), m.session.load() < max_inflight) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, _) => 2,
                };
                (rank, m)
            })
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank); // stable: keeps the rotation within a rank
        Some(
            ranked
                .into_iter()
                .map(|(_, m)| (m.session.clone(), m.qos))
                .collect(),
        )
    }
}

fn collect<'t>(node: &'t Node, levels: &[&str], idx: usize, dollar: bool, out: &mut Vec<&'t Node>) {
    let wild_ok = !(idx == 0 && dollar);
    if idx == levels.len() {
        out.push(node);
        // `a/#` also matches `a`.
        if let Some(hash) = node.children.get("#") {
            out.push(hash);
        }
        return;
    }
    if let Some(child) = node.children.get(levels[idx]) {
        collect(child, levels, idx + 1, dollar, out);
    }
    if wild_ok {
        if let Some(plus) = node.children.get("+") {
            collect(plus, levels, idx + 1, dollar, out);
        }
        if let Some(hash) = node.children.get("#") {
            out.push(hash);
        }
    }
}

/// Remove one subscription below `node`, pruning nodes left empty.
fn remove_key(node: &mut Node, session_id: u64, key: &SubKey) {
    let (filter, group) = match key {
        SubKey::Direct(filter) => (filter.as_str(), None),
        SubKey::Shared { group, filter } => (filter.as_str(), Some(group.as_str())),
    };
    let levels: Vec<&str> = filter.split('/').collect();
    remove_at(node, &levels, session_id, group);
}

fn remove_at(node: &mut Node, levels: &[&str], session_id: u64, group: Option<&str>) {
    let Some((first, rest)) = levels.split_first() else {
        match group {
            None => {
                node.direct.remove(&session_id);
            }
            Some(group) => {
                if let Some(g) = node.shared.get_mut(group) {
                    g.members.retain(|m| m.session.id() != session_id);
                    if g.members.is_empty() {
                        node.shared.remove(group);
                    }
                }
            }
        }
        return;
    };
    if let Some(child) = node.children.get_mut(*first) {
        remove_at(child, rest, session_id, group);
        if child.is_empty() {
            node.children.remove(*first);
        }
    }
}
