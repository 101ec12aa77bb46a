//! The HTTP and WebSocket server, and the task that owns the [`Hub`].
//!
//! Each WebSocket connection has a receive loop (parse, authenticate, pass
//! on) and a send task; both talk to one hub task through channels. The hub
//! task also owns the media node's command and event channels, so the order
//! of messages to a client follows the order of the hub's decisions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chorus_sfu::{Command, MediaNode, NodeConfig, Stats as MediaStats};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::auth::{TokenError, Tokens, clean_name};
use crate::config::{Config, Limits, Tls};
use crate::hub::{ConnId, Effect, Hub, HubConfig, Identity, MediaCmd};
use crate::protocol::{ClientMsg, ErrorCode, ServerMsg, parse_client_msg};
use crate::web;

/// How long a new connection may take to send `auth`.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

enum HubInput {
    Register(ConnId, mpsc::UnboundedSender<Outgoing>),
    Login(ConnId, Identity, Option<String>),
    Message(ConnId, ClientMsg),
    Lost(ConnId),
    Counts(oneshot::Sender<Counts>),
    Drain,
    Shutdown(oneshot::Sender<()>),
}

/// What the hub holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Users online (suspended sessions included).
    pub online: usize,
    /// Rooms open, ringing calls included.
    pub rooms: usize,
    /// Participants in rooms.
    pub participants: usize,
}

enum Outgoing {
    Msg(ServerMsg),
    Close,
}

#[derive(Clone)]
struct AppState {
    hub: mpsc::UnboundedSender<HubInput>,
    tokens: Arc<Tokens>,
    dev: bool,
    next_conn: Arc<AtomicU64>,
    limits: Limits,
    ready: Arc<AtomicBool>,
    media: Option<MediaNode>,
}

/// A running server.
pub struct Server {
    /// The HTTP address it listens on.
    pub http_addr: SocketAddr,
    /// The media node's announced UDP address.
    pub udp_addr: SocketAddr,
    /// The SHA-256 fingerprint of the generated certificate, with
    /// `--tls-self-signed`.
    pub tls_fingerprint: Option<String>,
    /// `https` or `http`.
    pub scheme: &'static str,
    media: MediaNode,
    hub: mpsc::UnboundedSender<HubInput>,
    ready: Arc<AtomicBool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds and starts everything; returns once it accepts connections.
    pub async fn start(config: Config) -> std::io::Result<Server> {
        let (media, media_events) = MediaNode::start(NodeConfig {
            bind: SocketAddr::new(config.listen.ip(), config.udp_port),
            public_ip: Some(config.public_ip),
            workers: config.workers,
            tcp_bind: Some(SocketAddr::new(config.listen.ip(), config.tcp_port)),
            tcp_limits: chorus_sfu::TcpLimits::default(),
        })?;
        let tokens = Arc::new(match &config.token_secret {
            Some(secret) => Tokens::new(secret.as_bytes()),
            None => Tokens::random(),
        });
        let l = &config.limits;
        let hub = Hub::new(HubConfig {
            ring_timeout: config.ring_timeout,
            reconnect_grace: config.reconnect_grace,
            max_room_participants: l.max_room_participants,
            max_rooms: l.max_rooms,
            calls_per_minute: l.calls_per_minute,
            max_sdp_bytes: l.max_sdp_bytes,
        });
        let (hub_tx, hub_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_hub(hub, hub_rx, media.clone(), media_events));
        let ready = Arc::new(AtomicBool::new(true));
        let state = AppState {
            hub: hub_tx.clone(),
            tokens,
            dev: config.dev,
            next_conn: Arc::new(AtomicU64::new(1)),
            limits: config.limits.clone(),
            ready: ready.clone(),
            media: Some(media.clone()),
        };
        let app = app(state);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (http_addr, tls_fingerprint, task) = match &config.tls {
            Tls::Off => {
                let listener = TcpListener::bind(config.listen).await?;
                let http_addr = listener.local_addr()?;
                let task = tokio::spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    });
                    if let Err(e) = serve.await {
                        warn!("http server stopped: {e}");
                    }
                });
                (http_addr, None, task)
            }
            tls => {
                let (rustls, fingerprint) =
                    crate::tls::rustls_config(tls, config.public_ip).await?;
                let listener = std::net::TcpListener::bind(config.listen)?;
                listener.set_nonblocking(true)?;
                let http_addr = listener.local_addr()?;
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    let _ = shutdown_rx.await;
                    h.graceful_shutdown(Some(Duration::from_secs(2)));
                });
                let server = axum_server::from_tcp_rustls(listener, rustls)?;
                let task = tokio::spawn(async move {
                    if let Err(e) = server.handle(handle).serve(app.into_make_service()).await {
                        warn!("https server stopped: {e}");
                    }
                });
                (http_addr, fingerprint, task)
            }
        };
        let scheme = if config.tls == Tls::Off {
            "http"
        } else {
            "https"
        };
        info!(%http_addr, udp = %media.udp_addr(), dev = config.dev, scheme, "chorus started");
        Ok(Server {
            http_addr,
            udp_addr: media.udp_addr(),
            tls_fingerprint,
            scheme,
            media,
            hub: hub_tx,
            ready,
            shutdown: Some(shutdown_tx),
            task,
        })
    }

    /// Stops taking new calls (`/readyz` answers 503); running calls go on.
    pub fn drain(&self) {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.hub.send(HubInput::Drain);
    }

    /// Ends every running call with `server_shutdown`.
    pub async fn end_calls(&self) {
        let (tx, rx) = oneshot::channel();
        if self.hub.send(HubInput::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// SIGTERM: drain, wait for calls to end or `deadline`, end the rest,
    /// then stop.
    pub async fn shutdown_gracefully(self, deadline: Duration) {
        self.drain();
        let until = tokio::time::Instant::now() + deadline;
        while tokio::time::Instant::now() < until {
            match self.counts().await {
                Some(c) if c.rooms > 0 => {}
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.end_calls().await;
        // Let the last messages reach the clients.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop().await;
    }

    /// The media node's counters.
    pub async fn media_stats(&self) -> Option<MediaStats> {
        self.media.stats().await
    }

    /// Each media worker's counters.
    pub async fn media_worker_stats(&self) -> Option<Vec<chorus_sfu::WorkerStats>> {
        self.media.worker_stats().await
    }

    /// Users online, rooms open, participants in rooms.
    pub async fn counts(&self) -> Option<Counts> {
        let (tx, rx) = oneshot::channel();
        self.hub.send(HubInput::Counts(tx)).ok()?;
        rx.await.ok()
    }

    /// Stops accepting connections and waits for the HTTP server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }

    /// Runs until the HTTP server ends.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// The routes.
fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { web::asset("index.html") }))
        .route("/call/{room}", get(|| async { web::asset("index.html") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/token", post(issue_token))
        .route("/ws", get(ws_upgrade))
        .route(
            "/{*path}",
            get(|Path(path): Path<String>| async move { web::asset(&path) }),
        )
        .with_state(state)
}

#[derive(Deserialize)]
struct TokenRequest {
    name: String,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    user_id: String,
    name: String,
    expires_at: u64,
}

#[derive(Serialize)]
struct ApiError {
    code: &'static str,
    message: String,
}

fn api_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            code,
            message: message.into(),
        }),
    )
        .into_response()
}

async fn issue_token(
    State(state): State<AppState>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !state.dev {
        return api_error(
            StatusCode::FORBIDDEN,
            "dev_mode_off",
            "tokens come from the operator's backend on this server",
        );
    }
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
    };
    let name = match clean_name(&req.name) {
        Ok(n) => n,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_name", e),
    };
    match state.tokens.issue_dev(&name) {
        Ok((token, claims)) => Json(TokenResponse {
            token,
            user_id: claims.sub,
            name: claims.name,
            expires_at: claims.exp,
        })
        .into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    let counts = if state.hub.send(HubInput::Counts(tx)).is_ok() {
        rx.await.unwrap_or_default()
    } else {
        Counts::default()
    };
    let workers = match &state.media {
        Some(m) => m.worker_stats().await.unwrap_or_default(),
        None => Vec::new(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(counts, &workers),
    )
        .into_response()
}

async fn ws_upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.limits.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(state, socket))
}

/// One WebSocket connection: authenticate, then pass messages to the hub.
async fn connection(state: AppState, socket: WebSocket) {
    let conn = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    if state
        .hub
        .send(HubInput::Register(conn, out_tx.clone()))
        .is_err()
    {
        return;
    }
    let send_task = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Outgoing::Msg(m) => {
                    let Ok(text) = serde_json::to_string(&m) else {
                        continue;
                    };
                    if sink
                        .send(Message::Text(Utf8Bytes::from(text)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Outgoing::Close => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    });
    let reply = |code: ErrorCode, message: String| {
        let _ = out_tx.send(Outgoing::Msg(ServerMsg::Error { code, message }));
    };
    let mut authed = false;
    let auth_deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    let mut bucket = RateLimit::new(
        state.limits.messages_per_second,
        tokio::time::Instant::now(),
    );
    loop {
        let next = if authed {
            stream.next().await
        } else {
            match tokio::time::timeout_at(auth_deadline, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    reply(
                        ErrorCode::NotAuthenticated,
                        "no auth message in time".into(),
                    );
                    let _ = out_tx.send(Outgoing::Close);
                    break;
                }
            }
        };
        let text = match next {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                reply(
                    ErrorCode::BadFrame,
                    "binary frames are not part of the protocol".into(),
                );
                continue;
            }
            Some(Ok(_)) => continue,
        };
        if !bucket.take(tokio::time::Instant::now()) {
            reply(
                ErrorCode::RateLimited,
                "too many messages; slow down".into(),
            );
            continue;
        }
        let msg = match parse_client_msg(&text) {
            Ok(m) => m,
            Err((code, message)) => {
                debug!(conn = conn.0, ?code, "bad message: {message}");
                reply(code, message);
                continue;
            }
        };
        if authed {
            if state.hub.send(HubInput::Message(conn, msg)).is_err() {
                break;
            }
            continue;
        }
        let ClientMsg::Auth { token, resume } = msg else {
            reply(
                ErrorCode::NotAuthenticated,
                "the first message must be auth".into(),
            );
            let _ = out_tx.send(Outgoing::Close);
            break;
        };
        match state.tokens.verify(&token) {
            Ok(identity) => {
                authed = true;
                if state
                    .hub
                    .send(HubInput::Login(conn, identity, resume))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                let message = match e {
                    TokenError::Expired => e.to_string(),
                    TokenError::Invalid(_) => "the token is not valid".to_string(),
                };
                reply(ErrorCode::InvalidToken, message);
                let _ = out_tx.send(Outgoing::Close);
                break;
            }
        }
    }
    let _ = state.hub.send(HubInput::Lost(conn));
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), send_task).await;
}

/// A token bucket: `rate` messages per second, bursts of twice that.
struct RateLimit {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl RateLimit {
    fn new(rate: u32, now: tokio::time::Instant) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimit {
            rate,
            tokens: rate * 2.0,
            at: now,
        }
    }

    fn take(&mut self, now: tokio::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The hub task: the only owner of the call state.
async fn run_hub(
    mut hub: Hub,
    mut inputs: mpsc::UnboundedReceiver<HubInput>,
    media: MediaNode,
    mut media_events: mpsc::UnboundedReceiver<chorus_sfu::Event>,
) {
    let mut conns: HashMap<ConnId, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    loop {
        let deadline = hub
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let effects = tokio::select! {
            input = inputs.recv() => {
                let Some(input) = input else { return };
                match input {
                    HubInput::Register(conn, tx) => {
                        conns.insert(conn, tx);
                        Vec::new()
                    }
                    HubInput::Login(conn, identity, resume) => match resume {
                        Some(r) => hub.handle_resume(conn, identity, &r),
                        None => hub.handle_login(conn, identity),
                    },
                    HubInput::Message(conn, msg) => hub.handle_message(conn, msg, Instant::now()),
                    HubInput::Lost(conn) => {
                        conns.remove(&conn);
                        hub.handle_connection_lost(conn, Instant::now())
                    }
                    HubInput::Counts(reply) => {
                        let _ = reply.send(Counts {
                            online: hub.online_count(),
                            rooms: hub.room_count(),
                            participants: hub.participant_count(),
                        });
                        Vec::new()
                    }
                    HubInput::Drain => {
                        hub.handle_drain();
                        Vec::new()
                    }
                    HubInput::Shutdown(done) => {
                        let fx = hub.handle_shutdown();
                        let _ = done.send(());
                        fx
                    }
                }
            }
            event = media_events.recv() => {
                let Some(event) = event else { return };
                hub.handle_media_event(event)
            }
            _ = tokio::time::sleep_until(deadline.into()) => hub.handle_tick(Instant::now()),
        };
        for effect in effects {
            match effect {
                Effect::Send(conn, msg) => {
                    if let Some(tx) = conns.get(&conn) {
                        let _ = tx.send(Outgoing::Msg(msg));
                    }
                }
                Effect::Close(conn) => {
                    if let Some(tx) = conns.remove(&conn) {
                        let _ = tx.send(Outgoing::Close);
                    }
                }
                Effect::Media(cmd) => {
                    let cmd = match cmd {
                        MediaCmd::Offer {
                            room,
                            participant,
                            label,
                            publish,
                            sdp,
                        } => Command::Offer {
                            room,
                            participant,
                            label,
                            publish,
                            sdp,
                        },
                        MediaCmd::Answer { participant, sdp } => {
                            Command::Answer { participant, sdp }
                        }
                        MediaCmd::Leave { participant } => Command::Leave { participant },
                        MediaCmd::VideoSize {
                            participant,
                            mid,
                            width,
                            height,
                        } => Command::VideoSize {
                            participant,
                            mid,
                            width,
                            height,
                        },
                    };
                    if !media.send(cmd) {
                        warn!("media node is gone");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn test_app(dev: bool) -> Router {
        let (hub, _rx) = mpsc::unbounded_channel();
        app(AppState {
            hub,
            tokens: Arc::new(Tokens::new(b"test")),
            dev,
            next_conn: Arc::new(AtomicU64::new(1)),
            limits: Limits::default(),
            ready: Arc::new(AtomicBool::new(true)),
            media: None,
        })
    }

    async fn call(app: Router, req: Request<Body>) -> (StatusCode, String) {
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn post_token(body: &str) -> Request<Body> {
        Request::post("/api/token")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    }

    #[tokio::test]
    async fn healthz_answers() {
        let (status, body) = call(
            test_app(true),
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn dev_tokens_are_issued_and_verify() {
        let (status, body) = call(test_app(true), post_token(r#"{"name":" Ada "}"#)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let token = v["token"].as_str().expect("token");
        let id = Tokens::new(b"test").verify(token).expect("valid");
        assert_eq!(id.name, "Ada");
        assert_eq!(v["user_id"].as_str(), Some(id.user_id.as_str()));
    }

    #[tokio::test]
    async fn token_requests_are_checked() {
        let (status, body) = call(test_app(true), post_token(r#"{"name":""}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("bad_name"));
        let (status, _) = call(test_app(true), post_token("{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = call(test_app(false), post_token(r#"{"name":"Ada"}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("dev_mode_off"));
    }

    #[tokio::test]
    async fn the_client_is_served() {
        let (status, body) = call(
            test_app(true),
            Request::get("/").body(Body::empty()).expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<html"), "{body}");
        let (status, _) = call(
            test_app(true),
            Request::get("/call/abc123")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(
            test_app(true),
            Request::get("/nope.js")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
