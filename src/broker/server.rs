//! Running the broker: binding the listeners, the accept loops, the background tasks (session
//! expiry, gauges) and the handle that shuts it all down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::trie::SubscriptionTrie;
use super::{
    conn, Authenticator, BrokerConfig, BrokerControl, BrokerStats, DropLog, Shared, TlsBindError,
};

/// Entry point: [`Broker::bind`].
pub struct Broker;

impl Broker {
    /// Bind the listener (and the TLS one, if configured) and start the broker. Returns once
    /// the sockets are bound, so [`BrokerHandle::local_addr`] gives the real port. A failure
    /// to bind the TLS listener is an error wrapping a [`TlsBindError`].
    pub async fn bind(
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
    ) -> std::io::Result<BrokerHandle> {
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        let tls = match &config.tls {
            Some(tls) => {
                let l = TcpListener::bind(tls.bind).await.map_err(|source| {
                    let kind = source.kind();
                    std::io::Error::new(
                        kind,
                        TlsBindError {
                            addr: tls.bind,
                            source,
                        },
                    )
                })?;
                let addr = l.local_addr()?;
                Some((l, addr, tls.acceptor.clone()))
            }
            None => None,
        };
        let tls_local_addr = tls.as_ref().map(|(_, addr, _)| *addr);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            config,
            auth,
            sessions: Mutex::new(HashMap::new()),
            subs: RwLock::new(SubscriptionTrie::default()),
            retained: Mutex::new(HashMap::new()),
            connected: AtomicUsize::new(0),
            device_connections: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            limiters: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(1),
            drop_log: DropLog::new(),
            shutdown: shutdown_rx,
        });
        tokio::spawn(reap_sessions(shared.clone(), done_tx.clone()));
        tokio::spawn(report_stats(shared.clone(), done_tx.clone()));
        let plain = accept_loop(listener, None, shared.clone(), done_tx.clone());
        let tls =
            tls.map(|(l, _, acceptor)| accept_loop(l, Some(acceptor), shared.clone(), done_tx));
        let accept_task = tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    tokio::join!(plain, tls);
                }
                None => plain.await,
            }
        });
        tracing::info!(%local_addr, tls = ?tls_local_addr, "embedded MQTT broker listening");
        Ok(BrokerHandle {
            local_addr,
            tls_local_addr,
            shared,
            shutdown_tx,
            accept_task,
            done_rx,
        })
    }
}

/// A running broker. Dropping it stops the broker without waiting; prefer
/// [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    /// Every broker task holds a sender; `recv` yields `None` once all have ended.
    done_rx: mpsc::Receiver<()>,
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `mqtts` listener's address, if there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// True until shutdown is requested or the accept loop has died.
    pub fn is_running(&self) -> bool {
        !*self.shutdown_tx.borrow() && !self.accept_task.is_finished()
    }

    /// Stop accepting, close every connection (wills are not published), and return when all
    /// broker tasks have ended.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        let _ = (&mut self.accept_task).await;
        while self.done_rx.recv().await.is_some() {}
        tracing::info!(local_addr = %self.local_addr, "embedded MQTT broker stopped");
    }

    /// A cheap handle for closing connections from elsewhere in the process.
    pub fn control(&self) -> BrokerControl {
        BrokerControl {
            shared: self.shared.clone(),
        }
    }

    pub fn stats(&self) -> BrokerStats {
        self.shared.stats()
    }

    /// In-process access to this broker: attach local clients, acknowledge, publish.
    pub fn local(&self) -> super::LocalBroker {
        super::LocalBroker::new(self.shared.clone())
    }
}

/// Resolves when shutdown is requested (or the handle was dropped).
pub(super) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

/// Accepts on one listener; with `tls`, each connection does its TLS handshake in its own task.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Sockets still in the handshake count too, with headroom for Homeward's
                    // own clients (admitted past `max_connections`) and for handshakes that
                    // are about to be refused with a CONNACK.
                    let cap = shared.config.max_connections;
                    let hard_cap = cap.saturating_add(cap / 8).saturating_add(64);
                    if shared.sockets.load(Ordering::Relaxed) >= hard_cap {
                        metrics::counter!("homeward_broker_refused_total", "reason" => "connections")
                            .increment(1);
                        if let Some(suppressed) = shared.drop_log.should_log() {
                            tracing::warn!(%peer, hard_cap, suppressed, "too many open connections; closing a new one");
                        }
                        drop(stream);
                        continue;
                    }
                    shared.sockets.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "set_nodelay failed");
                    }
                    let (shared, done) = (shared.clone(), done.clone());
                    match &tls {
                        None => tokio::spawn(conn::run(stream, peer, shared, done)),
                        Some(tls) => tokio::spawn(tls_then_run(tls.accept(stream), peer, shared, done)),
                    };
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Expire offline persistent sessions.
async fn reap_sessions(shared: Arc<Shared>, _done: mpsc::Sender<()>) {
    let expiry = shared.config.session_expiry;
    let period = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut map = shared.sessions();
            map.retain(|_, s| {
                let mut st = s.lock();
                let stale = st.link.is_none()
                    && st
                        .disconnected_at
                        .is_some_and(|t| now.saturating_duration_since(t) >= expiry);
                if stale {
                    let (msgs, _no_will) = s.discard(&mut st);
                    drop(st);
                    expired.push((s.clone(), msgs));
                }
                !stale
            });
        }
        for (session, msgs) in expired {
            tracing::info!(client_id = %session.client_id(), "offline session expired");
            shared.forget_session(&session, msgs);
        }
        // A limiter no connection holds and that has refilled is the same as a new one.
        let now = Instant::now();
        shared
            .limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, l| {
                Arc::strong_count(l) > 1
                    || !l.lock().unwrap_or_else(|e| e.into_inner()).is_rested(now)
            });
    }
}

/// Publish queue sizes as gauges once a second.
async fn report_stats(shared: Arc<Shared>, _done: mpsc::Sender<()>) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let stats = shared.stats();
        metrics::gauge!("homeward_broker_sessions").set(stats.sessions as f64);
        metrics::gauge!("homeward_broker_queued_messages").set(stats.queued_messages as f64);
        metrics::gauge!("homeward_broker_queued_bytes").set(stats.queued_bytes as f64);
        metrics::gauge!("homeward_broker_inflight_messages").set(stats.inflight_messages as f64);
    }
}

/// Finishes the TLS handshake within the CONNECT timeout, then serves the connection.
async fn tls_then_run(
    handshake: tokio_rustls::Accept<tokio::net::TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = shared.shutdown.clone();
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.config.connect_timeout, handshake) => r,
        _ = shutdown_requested(&mut shutdown) => return,
    };
    match handshake {
        Ok(Ok(stream)) => return conn::run(stream, peer, shared, done).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    // `conn::run` gives the socket's place back; without it, do so here.
    shared.sockets.fetch_sub(1, Ordering::Relaxed);
}
