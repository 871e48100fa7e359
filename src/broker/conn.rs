//! One network connection: the CONNECT handshake, then this task reads and routes packets while
//! a writer task sends what the session has for the client.
//!
//! The reader never waits on another client: routing is a few short mutex sections. Its own
//! answers (PUBACK, SUBACK, ...) are collected per read chunk and handed to the writer in one
//! go; if the client stops reading them, the reader stops reading from the client.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectAuth, ConnectReturnCode, LastWill, Packet, PubAck, PubComp, PubRec,
    Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::Instrument;

use super::session::{Link, Message, Session};
use super::topic::{self, FilterSpec};
use super::{
    min_qos, shutdown_requested, Acl, CloseReason, CloseSignal, Credentials, Principal, Shared,
};

/// Above this many answers waiting for the writer, stop reading from the client.
const CONTROL_HIGH_WATER: usize = 8 * 1024;
/// ... until the writer has brought it down to this.
const CONTROL_LOW_WATER: usize = 1024;
/// Most packets the writer takes from the session per socket write.
const BATCH_PACKETS: usize = 512;
/// Most payload bytes the writer takes per socket write (approximate).
const BATCH_BYTES: usize = 256 * 1024;
/// Read size.
const READ_CHUNK: usize = 8 * 1024;

/// What a connection runs over: a TCP socket, or a TLS stream on one.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

pub(super) async fn run<S: Stream>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let span = tracing::debug_span!("mqtt_conn", %peer, client_id = tracing::field::Empty);
    serve(stream, shared.clone(), done).instrument(span).await;
    // Counted by the accept loop.
    shared.sockets.fetch_sub(1, Ordering::Relaxed);
}

/// Why the CONNECT phase did not produce a session.
enum Refusal {
    /// Answer with this CONNACK code, then close.
    Code(ConnectReturnCode, &'static str),
    /// Close without answering.
    Close(String),
}

async fn serve<S: Stream>(mut stream: S, shared: Arc<Shared>, done: mpsc::Sender<()>) {
    let mut shutdown = shared.shutdown.clone();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let deadline = Instant::now() + shared.config.connect_timeout;

    let handshake = async {
        let connect = tokio::time::timeout_at(
            deadline,
            read_connect(&mut stream, &mut buf, shared.config.max_packet_bytes),
        )
        .await
        .map_err(|_| Refusal::Close("no CONNECT in time".to_owned()))??;
        // A slow authenticator (a database under strain) gets its own allowance and, past it,
        // the client hears "server unavailable" rather than silence.
        tokio::time::timeout(
            shared.config.connect_timeout,
            check_connect(&shared, connect),
        )
        .await
        .map_err(|_| {
            Refusal::Code(
                ConnectReturnCode::ServiceUnavailable,
                "authenticator timed out",
            )
        })?
    };
    let outcome = tokio::select! {
        r = handshake => r,
        _ = shutdown_requested(&mut shutdown) => return,
    };
    let accepted = match outcome {
        Ok(accepted) => accepted,
        Err(Refusal::Code(code, why)) => {
            tracing::debug!(?code, why, "connection refused");
            refuse(&mut stream, code).await;
            return;
        }
        Err(Refusal::Close(why)) => {
            tracing::debug!(why, "closing connection during CONNECT");
            return;
        }
    };
    let Accepted {
        client_id,
        clean_session,
        keep_alive,
        will,
        principal,
        acl,
    } = accepted;
    tracing::Span::current().record("client_id", &*client_id);

    // The connection cap applies to devices; Homeward's own clients are always let in, so a
    // crowd of devices cannot lock out the ingest. The slot is taken before the session is
    // touched and given back if the session is refused.
    let limited = matches!(principal, Principal::Device { .. });
    let slot = !limited || {
        let max = shared.config.max_connections;
        shared
            .device_connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    };
    let release_slot = || {
        if limited {
            shared.device_connections.fetch_sub(1, Ordering::Relaxed);
        }
    };
    if !slot {
        metrics::counter!("homeward_broker_refused_total", "reason" => "connections").increment(1);
        if let Some(suppressed) = shared.drop_log.should_log() {
            tracing::warn!(
                %principal,
                max_connections = shared.config.max_connections,
                suppressed,
                "connection cap reached; refusing"
            );
        }
        refuse(&mut stream, ConnectReturnCode::ServiceUnavailable).await;
        return;
    }

    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let wake = Arc::new(Notify::new());
    let close = Arc::new(CloseSignal::new());
    let drained = Arc::new(Notify::new());
    let will = Arc::new(std::sync::Mutex::new(will));
    let link = Link {
        conn_id,
        wake: wake.clone(),
        close: close.clone(),
        will: will.clone(),
    };
    let opened = shared.open_session(client_id.clone(), clean_session, &principal, &acl, link);
    let (session, present, old_will) = match opened {
        Ok(opened) => opened,
        Err(owned) => {
            release_slot();
            metrics::counter!("homeward_broker_auth_failures_total", "reason" => "session_owner")
                .increment(1);
            tracing::warn!(
                %principal,
                owner = %owned.owner,
                "client id belongs to another principal's session; refusing"
            );
            refuse(&mut stream, ConnectReturnCode::NotAuthorized).await;
            return;
        }
    };
    if let Some(old_will) = old_will {
        // The connection we took over did not say goodbye: its will goes out now, before this
        // connection's CONNACK (the writer has not started yet).
        shared.publish_will(old_will);
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!("homeward_broker_connections").increment(1.0);
    tracing::debug!(
        %principal,
        clean_session,
        session_present = present,
        "client connected"
    );

    let (mut rd, wr) = tokio::io::split(stream);
    let writer = tokio::spawn(
        write_loop(WriterCtx {
            wr,
            session: session.clone(),
            conn_id,
            wake,
            close: close.clone(),
            drained: drained.clone(),
            max_inflight: shared.max_inflight(),
            _done: done,
        })
        .in_current_span(),
    );

    let limiter = shared.limiter_for(&principal);
    let mut reader = Reader {
        shared: shared.clone(),
        session: session.clone(),
        conn_id,
        client_id: client_id.clone(),
        acl,
        limited,
        publishes: 0,
        control: Vec::new(),
        received: metrics::counter!("homeward_broker_messages_received_total"),
    };
    // Without a keep-alive the connection still may not sit idle forever.
    let idle_after = if keep_alive > 0 {
        Duration::from_millis(u64::from(keep_alive) * 1500)
    } else {
        shared.config.idle_timeout
    };
    let idle = tokio::time::sleep(idle_after);
    tokio::pin!(idle);
    let max_packet = shared.config.max_packet_bytes;
    // Bytes read since they were last charged to the device's limiter.
    let mut unpaid_bytes = 0u64;

    let end = 'conn: loop {
        let mut got_packet = false;
        loop {
            match Packet::read(&mut buf, max_packet) {
                Ok(packet) => {
                    got_packet = true;
                    match reader.handle(packet) {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Disconnect) => break 'conn End::Disconnect,
                        Err(v) => break 'conn End::Violation(v),
                    }
                }
                Err(CodecError::InsufficientBytes(_)) => break,
                Err(e) => break 'conn End::Malformed(e),
            }
        }
        if got_packet {
            idle.as_mut().reset(Instant::now() + idle_after);
        }
        match reader.flush() {
            None => break End::Closed(CloseReason::TakenOver),
            Some(backlog) if backlog > CONTROL_HIGH_WATER => {
                let waiting =
                    wait_until(&drained, || session.control_backlog() < CONTROL_LOW_WATER);
                tokio::select! {
                    _ = waiting => {}
                    r = close.closed() => break End::Closed(r),
                    _ = shutdown_requested(&mut shutdown) => break End::Shutdown,
                }
            }
            Some(_) => {}
        }
        if let Some(limiter) = &limiter {
            let messages = std::mem::take(&mut reader.publishes);
            let bytes = std::mem::take(&mut unpaid_bytes);
            let pause = limiter.lock().unwrap_or_else(|e| e.into_inner()).charge(
                messages,
                bytes,
                std::time::Instant::now(),
            );
            if let Some((pause, why)) = pause {
                // Delay rather than drop: nothing more is read from this device until its
                // allowance has refilled, so TCP pushes back and the device keeps its data.
                metrics::counter!("homeward_broker_throttled_total", "reason" => why.label())
                    .increment(1);
                tokio::select! {
                    biased;
                    r = close.closed() => break End::Closed(r),
                    _ = shutdown_requested(&mut shutdown) => break End::Shutdown,
                    _ = tokio::time::sleep(pause) => {}
                }
                // Time spent waiting on us is not the client's silence.
                idle.as_mut().reset(Instant::now() + idle_after);
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            r = close.closed() => break End::Closed(r),
            _ = shutdown_requested(&mut shutdown) => break End::Shutdown,
            _ = &mut idle => break End::KeepAlive,
            r = rd.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => break End::Eof,
            Ok(n) => unpaid_bytes += n as u64,
            Err(e) => break End::Io(e),
        }
    };

    // Teardown: stop the writer, leave the session, then publish the will if due.
    close.close(CloseReason::ReaderDone);
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "connection writer task failed");
    }
    drop(rd);
    let discarded = {
        let mut st = session.lock();
        if session.detach(&mut st, conn_id) && !session.is_persistent() {
            // Detached first, so there is no link and no will in the answer.
            Some(session.discard(&mut st).0)
        } else {
            None
        }
    };
    if let Some(msgs) = discarded {
        shared.forget_session(&session, msgs);
    }
    shared.connected.fetch_sub(1, Ordering::Relaxed);
    release_slot();
    metrics::gauge!("homeward_broker_connections").decrement(1.0);

    let publish_will = match &end {
        End::Disconnect => {
            tracing::debug!("client disconnected");
            false
        }
        End::Shutdown => false,
        End::Closed(reason) => {
            tracing::debug!(?reason, "connection closed");
            true
        }
        End::KeepAlive => {
            tracing::info!(
                ?idle_after,
                "keep-alive expired (or idle timeout); closing connection"
            );
            true
        }
        End::Eof => {
            tracing::debug!("connection closed by client without DISCONNECT");
            true
        }
        End::Io(e) => {
            tracing::debug!(error = %e, "connection read failed");
            true
        }
        End::Malformed(e) => {
            tracing::warn!(error = %e, "malformed packet; closing connection");
            true
        }
        End::Violation(Violation::AclDenied) => true, // already logged at warn
        End::Violation(Violation::Protocol(why)) => {
            tracing::warn!(why, "protocol violation; closing connection");
            true
        }
    };
    // Unless a takeover has already published it.
    let will = will.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let (true, Some(will)) = (publish_will, will) {
        shared.publish_will(will);
    }
}

/// A CONNECT that passed every check.
struct Accepted {
    client_id: Arc<str>,
    clean_session: bool,
    keep_alive: u16,
    will: Option<LastWill>,
    principal: Principal,
    acl: Acl,
}

async fn read_connect<S: Stream>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_packet: usize,
) -> Result<Connect, Refusal> {
    loop {
        // MQTT 3.1 names its protocol "MQIsdp": worth a proper "unacceptable version" answer.
        let looks_v31 = buf[..buf.len().min(16)].windows(6).any(|w| w == b"MQIsdp");
        match Packet::read(buf, max_packet) {
            Ok(Packet::Connect(connect)) => return Ok(connect),
            Ok(other) => {
                return Err(Refusal::Close(format!(
                    "first packet was {:?}, not CONNECT",
                    other.packet_type()
                )))
            }
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(CodecError::InvalidProtocolLevel(_)) => {
                return Err(Refusal::Code(
                    ConnectReturnCode::RefusedProtocolVersion,
                    "protocol level is not 4 (MQTT 3.1.1)",
                ))
            }
            Err(CodecError::InvalidProtocol) if looks_v31 => {
                return Err(Refusal::Code(
                    ConnectReturnCode::RefusedProtocolVersion,
                    "MQTT 3.1 is not supported",
                ))
            }
            Err(e) => return Err(Refusal::Close(format!("bad CONNECT: {e}"))),
        }
        buf.reserve(READ_CHUNK);
        match stream.read_buf(buf).await {
            Ok(0) => return Err(Refusal::Close("closed before CONNECT".to_owned())),
            Ok(_) => {}
            Err(e) => return Err(Refusal::Close(format!("read failed: {e}"))),
        }
    }
}

async fn check_connect(shared: &Shared, connect: Connect) -> Result<Accepted, Refusal> {
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if !connect.clean_session {
            return Err(Refusal::Code(
                ConnectReturnCode::BadClientId,
                "empty client id needs clean_session",
            ));
        }
        let n = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        format!("homeward-auto-{n}").into()
    } else {
        connect.client_id.as_str().into()
    };
    let (username, password) = match &connect.auth {
        ConnectAuth::None => (None, None),
        ConnectAuth::Username { username } => (Some(username.as_str()), None),
        ConnectAuth::UsernamePassword { username, password } => {
            (Some(username.as_str()), Some(&password[..]))
        }
    };
    let creds = Credentials {
        client_id: &client_id,
        username,
        password,
    };
    let (principal, acl) = match shared.auth.authenticate(creds).await {
        Ok(Some(granted)) => granted,
        Ok(None) => {
            metrics::counter!("homeward_broker_auth_failures_total", "reason" => "refused")
                .increment(1);
            tracing::info!(client_id = %client_id, username, "authentication refused");
            let code = if username.is_some() {
                ConnectReturnCode::BadUserNamePassword
            } else {
                ConnectReturnCode::NotAuthorized
            };
            return Err(Refusal::Code(code, "authentication refused"));
        }
        Err(e) => {
            metrics::counter!("homeward_broker_auth_failures_total", "reason" => "backend")
                .increment(1);
            tracing::warn!(client_id = %client_id, error = %e, "authenticator failed");
            return Err(Refusal::Code(
                ConnectReturnCode::ServiceUnavailable,
                "authenticator failed",
            ));
        }
    };
    if let Some(will) = &connect.last_will {
        if !topic::valid_topic(&will.topic) {
            return Err(Refusal::Close(format!(
                "invalid will topic {:?}",
                will.topic
            )));
        }
        if !acl.may_publish(&will.topic) {
            tracing::warn!(
                client_id = %client_id,
                topic = %will.topic,
                "will topic outside ACL; refusing"
            );
            return Err(Refusal::Code(
                ConnectReturnCode::NotAuthorized,
                "will topic not allowed",
            ));
        }
    }
    Ok(Accepted {
        client_id,
        clean_session: connect.clean_session,
        keep_alive: connect.keep_alive,
        will: connect.last_will,
        principal,
        acl,
    })
}

/// Send a refusing CONNACK and close, without letting a slow peer hold us.
async fn refuse<S: Stream>(stream: &mut S, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if Packet::ConnAck(ConnAck::new(code, false))
        .write(&mut out, usize::MAX)
        .is_err()
    {
        return;
    }
    let send = async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        // Let the client read the CONNACK before the socket goes away.
        let mut sink = [0u8; 256];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), send).await;
}

enum End {
    Disconnect,
    Shutdown,
    Closed(CloseReason),
    KeepAlive,
    Eof,
    Io(io::Error),
    Malformed(CodecError),
    Violation(Violation),
}

enum Violation {
    AclDenied,
    Protocol(String),
}

enum Flow {
    Continue,
    Disconnect,
}

struct Reader {
    shared: Arc<Shared>,
    session: Arc<Session>,
    conn_id: u64,
    client_id: Arc<str>,
    acl: Acl,
    /// A device: subject to the subscription cap.
    limited: bool,
    /// PUBLISH packets read since they were last charged to the device's limiter.
    publishes: u64,
    /// Answers collected while processing one read chunk.
    control: Vec<Packet>,
    received: metrics::Counter,
}

impl Reader {
    fn handle(&mut self, packet: Packet) -> Result<Flow, Violation> {
        match packet {
            Packet::Publish(publish) => self.publish(publish)?,
            Packet::PubAck(ack) => {
                if !self.session.ack(ack.pkid) {
                    tracing::trace!(pkid = ack.pkid, "PUBACK for unknown packet id");
                }
            }
            Packet::PubRel(rel) => {
                self.session.lock().awaiting_rel.remove(&rel.pkid);
                self.control.push(Packet::PubComp(PubComp::new(rel.pkid)));
            }
            Packet::Subscribe(subscribe) => self.subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe)?,
            Packet::PingReq => self.control.push(Packet::PingResp),
            Packet::Disconnect => return Ok(Flow::Disconnect),
            // We never send QoS 2, so PUBREC/PUBCOMP from a client are as unexpected as a
            // second CONNECT or any server-to-client packet.
            other => {
                return Err(Violation::Protocol(format!(
                    "unexpected {:?} from client",
                    other.packet_type()
                )))
            }
        }
        Ok(Flow::Continue)
    }

    fn publish(&mut self, publish: Publish) -> Result<(), Violation> {
        // The codec has checked the topic already; check again rather than trust it.
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return Err(Violation::Protocol("topic is not UTF-8".to_owned()));
        };
        if !topic::valid_topic(topic) {
            return Err(Violation::Protocol(format!("invalid topic {topic:?}")));
        }
        if !self.acl.may_publish(topic) {
            tracing::warn!(
                client_id = %self.client_id,
                topic,
                "publish outside ACL; closing connection"
            );
            return Err(Violation::AclDenied);
        }
        self.publishes += 1;
        match publish.qos {
            QoS::AtMostOnce => self.route(&publish, topic),
            QoS::AtLeastOnce => {
                self.route(&publish, topic);
                self.control.push(Packet::PubAck(PubAck::new(publish.pkid)));
            }
            QoS::ExactlyOnce => {
                // Route on first receipt only; a resend before PUBREL is a duplicate.
                let first = self.session.lock().awaiting_rel.insert(publish.pkid);
                if first {
                    self.route(&publish, topic);
                }
                self.control.push(Packet::PubRec(PubRec::new(publish.pkid)));
            }
        }
        Ok(())
    }

    fn route(&self, publish: &Publish, topic: &str) {
        self.shared.route(publish, topic);
        self.received.increment(1);
    }

    fn subscribe(&mut self, subscribe: Subscribe) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut with_retained = Vec::new();
        {
            let mut subs = self.shared.subs_write();
            for f in &subscribe.filters {
                let max_subs = self.shared.config.max_subscriptions_per_client;
                let code = match FilterSpec::parse(&f.path) {
                    Some(spec)
                        if self.limited
                            && self.acl.may_subscribe(spec.filter())
                            && subs.would_exceed(self.session.id(), &spec, max_subs) =>
                    {
                        metrics::counter!("homeward_broker_refused_total", "reason" => "subscriptions")
                            .increment(1);
                        tracing::warn!(
                            client_id = %self.client_id,
                            filter = %f.path,
                            max_subscriptions = max_subs,
                            "subscription cap reached; refused"
                        );
                        SubscribeReasonCode::Failure
                    }
                    Some(spec) if self.acl.may_subscribe(spec.filter()) => {
                        let qos = min_qos(f.qos, QoS::AtLeastOnce);
                        if subs.subscribe(&self.session, &spec, qos) {
                            // Shared subscriptions get no retained messages (as in MQTT 5).
                            if let FilterSpec::Direct(filter) = spec {
                                with_retained.push((filter.to_owned(), qos));
                            }
                            SubscribeReasonCode::Success(qos)
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    }
                    Some(_) => {
                        tracing::warn!(
                            client_id = %self.client_id,
                            filter = %f.path,
                            "subscription outside ACL refused"
                        );
                        SubscribeReasonCode::Failure
                    }
                    None => {
                        tracing::debug!(filter = %f.path, "invalid topic filter refused");
                        SubscribeReasonCode::Failure
                    }
                };
                codes.push(code);
            }
        }
        self.control
            .push(Packet::SubAck(SubAck::new(subscribe.pkid, codes)));
        if with_retained.is_empty() {
            return;
        }
        // The SUBACK must be on its way before the retained messages it announces.
        if self.flush().is_none() {
            return;
        }
        for (filter, qos) in with_retained {
            for publish in self.shared.retained_for(&filter, qos) {
                self.shared.deliver(
                    &self.session,
                    Message {
                        publish,
                        share: None,
                    },
                );
            }
        }
    }

    fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Violation> {
        if unsubscribe.topics.is_empty() {
            return Err(Violation::Protocol(
                "UNSUBSCRIBE without filters".to_owned(),
            ));
        }
        {
            let mut subs = self.shared.subs_write();
            for filter in &unsubscribe.topics {
                if let Some(spec) = FilterSpec::parse(filter) {
                    subs.unsubscribe(self.session.id(), &spec);
                }
            }
        }
        self.control
            .push(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)));
        Ok(())
    }

    /// Hand collected answers to the writer. Returns the writer's control backlog, or `None`
    /// if this connection no longer owns the session (taken over).
    fn flush(&mut self) -> Option<usize> {
        if self.control.is_empty() {
            return Some(0);
        }
        self.session.push_control(self.conn_id, &mut self.control)
    }
}

/// Wait until `cond` holds, re-checking whenever `notify` fires.
async fn wait_until(notify: &Notify, mut cond: impl FnMut() -> bool) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if cond() {
            return;
        }
        notified.await;
    }
}

struct WriterCtx<S> {
    wr: WriteHalf<S>,
    session: Arc<Session>,
    conn_id: u64,
    wake: Arc<Notify>,
    close: Arc<CloseSignal>,
    /// Fired after each batch is taken, for a reader waiting on backpressure.
    drained: Arc<Notify>,
    max_inflight: usize,
    /// Keeps the broker's shutdown waiting until this task has ended.
    _done: mpsc::Sender<()>,
}

/// How long a streaming client's acknowledgements (PUBACK above all) may wait for company.
///
/// A device streaming single-event messages gets a PUBACK for each; written at once, that is a
/// socket write (and, for the device, a read) per message, most of the cost of a message on
/// loopback. While a client is seen pipelining (it sends more before the answers to earlier
/// ones), an answers-only batch waits up to this long for more answers or for a message to
/// deliver (Homeward's end-to-end ack after each commit comes that way), and they go out in one
/// write. A client that waits for each answer before it sends again is seen as such after one
/// wait that gathers nothing, and is answered at once from then on.
///
/// Long enough for the end-to-end ack of a commit under load to arrive within it (a batch's
/// linger, its COPY and its commit take 10-20 ms), so that a streaming device gets one write
/// per commit rather than one more for its PUBACKs. A client that stops to wait for its
/// PUBACKs every few messages is held at most this long every other round; with the default
/// limit of 1,000 messages a second per device, even a window of 25 loses nothing.
pub(super) const ANSWER_LINGER: Duration = Duration::from_millis(25);

/// Pull batches from the session and write each with one socket write.
async fn write_loop<S: Stream>(mut ctx: WriterCtx<S>) {
    let delivered = metrics::counter!("homeward_broker_messages_delivered_total");
    let mut out = BytesMut::with_capacity(4 * 1024);
    // Whether the client is pipelining: set by a write that carried several answers, cleared
    // by a linger that gathered none.
    let mut pipelining = false;
    loop {
        let Some(batch) =
            ctx.session
                .next_batch(ctx.conn_id, ctx.max_inflight, BATCH_PACKETS, BATCH_BYTES)
        else {
            // Another connection owns the session now.
            ctx.close.close(CloseReason::TakenOver);
            return;
        };
        ctx.drained.notify_waiters();
        if batch.packets.is_empty() {
            tokio::select! {
                _ = ctx.wake.notified() => continue,
                _ = ctx.close.closed() => return,
            }
        }
        if out.capacity() > 4 * BATCH_BYTES {
            out = BytesMut::with_capacity(4 * 1024);
        }
        out.clear();
        if !encode(&batch, &mut out, &ctx.close) {
            return;
        }
        let mut publishes = batch.publishes;
        let mut answers = batch.packets.len() - publishes as usize;
        if publishes == 0 && pipelining {
            let started_with = answers;
            let deadline = Instant::now() + ANSWER_LINGER;
            while publishes == 0 && out.len() < BATCH_BYTES {
                tokio::select! {
                    _ = ctx.wake.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ctx.close.closed() => return,
                }
                let Some(more) = ctx.session.next_batch(
                    ctx.conn_id,
                    ctx.max_inflight,
                    BATCH_PACKETS,
                    BATCH_BYTES,
                ) else {
                    ctx.close.close(CloseReason::TakenOver);
                    return;
                };
                ctx.drained.notify_waiters();
                if !encode(&more, &mut out, &ctx.close) {
                    return;
                }
                publishes += more.publishes;
                answers += more.packets.len() - more.publishes as usize;
            }
            if answers == started_with && publishes == 0 {
                pipelining = false;
            }
        }
        if answers >= 2 {
            pipelining = true;
        }
        let written = tokio::select! {
            r = ctx.wr.write_all(&out) => r,
            _ = ctx.close.closed() => return,
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "connection write failed");
            ctx.close.close(CloseReason::WriteFailed);
            return;
        }
        delivered.increment(publishes);
    }
}

/// Appends a batch's packets to `out`; false (and the connection closed) if one cannot be
/// encoded.
fn encode(batch: &super::session::Batch, out: &mut BytesMut, close: &CloseSignal) -> bool {
    for packet in &batch.packets {
        if let Err(e) = packet.write(out, usize::MAX) {
            tracing::warn!(error = %e, "could not encode outgoing packet; closing connection");
            close.close(CloseReason::WriteFailed);
            return false;
        }
    }
    true
}
