//! The HTTP server: its routes, and starting and stopping everything.
//!
//! [`Server::start`] starts the media plane, the hub task
//! (`hub::task`) and the HTTP server, whose `/ws` route hands each
//! WebSocket to `connection`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use chorus_sfu::{MediaNode, NodeConfig, Stats as MediaStats, WorkerStats};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::auth::{Tokens, clean_name};
use crate::calllog::CallLogStore;
use crate::cluster::ClusterNode;
use crate::config::{Config, Limits, Tls};
use crate::connection::{self, AUTH_TIMEOUT, ReadError, Settings};
use crate::hub::task::{HubHandle, HubInput, TaskOptions};
use crate::hub::{ConnId, Counts, Hub, HubConfig};
use crate::media_plane::MediaPlane;
use crate::turn::IceSettings;
use crate::web;

#[derive(Clone)]
struct AppState {
    hub: HubHandle,
    tokens: Arc<Tokens>,
    dev: bool,
    next_conn: Arc<AtomicU64>,
    limits: Limits,
    ready: Arc<AtomicBool>,
    media: Arc<dyn MediaPlane>,
    ice: Arc<IceSettings>,
    /// Cluster membership, with `--redis`.
    cluster: Option<Arc<ClusterNode>>,
    /// Reads `/api/cluster` (the cluster secret).
    cluster_secret: Option<Arc<str>>,
    /// Each user's recent calls.
    call_log: Arc<CallLogStore>,
}

/// A running server.
pub struct Server {
    /// The HTTP address it listens on.
    pub http_addr: SocketAddr,
    /// The media node's announced UDP address.
    pub udp_addr: SocketAddr,
    /// The plain-HTTP redirect's address, with `--http-redirect`.
    pub redirect_addr: Option<SocketAddr>,
    /// The SHA-256 fingerprint of the generated certificate, with
    /// `--tls-self-signed`.
    pub tls_fingerprint: Option<String>,
    /// `https` or `http`.
    pub scheme: &'static str,
    media: Arc<dyn MediaPlane>,
    hub: HubHandle,
    cluster: Option<Arc<ClusterNode>>,
    ready: Arc<AtomicBool>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The plain-HTTP redirect, with `--http-redirect`.
    redirect: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds and starts everything; returns once it accepts connections.
    pub async fn start(config: Config) -> std::io::Result<Server> {
        let (node, media_events) = MediaNode::start(NodeConfig {
            bind: SocketAddr::new(config.listen.ip(), config.udp_port),
            public_ip: Some(config.public_ip),
            workers: config.workers,
            tcp_bind: Some(SocketAddr::new(config.listen.ip(), config.tcp_port)),
            tcp_limits: chorus_sfu::TcpLimits {
                max_per_ip: config.tcp_max_per_ip,
                ..chorus_sfu::TcpLimits::default()
            },
        })?;
        let tokens = Arc::new(match &config.token_secret {
            Some(secret) => Tokens::new(secret.as_bytes()),
            None => Tokens::random(),
        });
        let l = &config.limits;
        let hub_config = HubConfig {
            ring_timeout: config.ring_timeout,
            reconnect_grace: config.reconnect_grace,
            max_room_participants: l.max_room_participants,
            max_rooms: l.max_rooms,
            calls_per_minute: l.calls_per_minute,
            max_sdp_bytes: l.max_sdp_bytes,
        };
        let udp_addr = node.udp_addr();
        let (hub, cluster, call_log) = match &config.cluster {
            None => {
                let media: Arc<dyn MediaPlane> = Arc::new(node.clone());
                let call_log = Arc::new(CallLogStore::memory());
                let options = TaskOptions {
                    call_log: Some(call_log.clone()),
                    ..TaskOptions::default()
                };
                let (hub, _) =
                    HubHandle::spawn_with(Hub::new(hub_config), media, media_events, options);
                (hub, None, call_log)
            }
            Some(settings) => {
                let (member, hub) = ClusterNode::start(
                    settings,
                    node.clone(),
                    media_events,
                    hub_config,
                    config.listen,
                )
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
                let call_log = Arc::new(member.call_log_store());
                (hub, Some(Arc::new(member)), call_log)
            }
        };
        let media: Arc<dyn MediaPlane> = Arc::new(node);
        let first_conn = cluster.as_ref().map_or(1, |c| c.first_conn());
        let ready = Arc::new(AtomicBool::new(true));
        let state = AppState {
            hub: hub.clone(),
            tokens,
            dev: config.dev,
            next_conn: Arc::new(AtomicU64::new(first_conn)),
            limits: config.limits.clone(),
            ready: ready.clone(),
            media: media.clone(),
            ice: Arc::new(config.ice.clone()),
            cluster: cluster.clone(),
            cluster_secret: config.cluster.as_ref().map(|c| c.secret.as_str().into()),
            call_log,
        };
        let app = app(state);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (http_addr, tls_fingerprint, task) = match &config.tls {
            Tls::Off => {
                let listener = TcpListener::bind(config.listen).await?;
                let http_addr = listener.local_addr()?;
                // Signaling is small messages in bursts (an answer right
                // behind room_joined): Nagle would hold each one after the
                // first until the browser's delayed ACK, up to 40 ms.
                let listener = listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!("TCP_NODELAY not set: {e}");
                    }
                });
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
                let server = axum_server::from_tcp_rustls(listener, rustls)?
                    .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()));
                let task = tokio::spawn(async move {
                    if let Err(e) = server.handle(handle).serve(app.into_make_service()).await {
                        warn!("https server stopped: {e}");
                    }
                });
                (http_addr, fingerprint, task)
            }
        };
        let (redirect, redirect_addr) = match config.http_redirect {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let bound = listener.local_addr()?;
                info!(addr = %bound, "redirecting plain HTTP to HTTPS");
                (
                    Some(crate::redirect::spawn(listener, http_addr.port())),
                    Some(bound),
                )
            }
            None => (None, None),
        };
        let scheme = if config.tls == Tls::Off {
            "http"
        } else {
            "https"
        };
        info!(%http_addr, udp = %udp_addr, dev = config.dev, scheme, "chorus started");
        Ok(Server {
            http_addr,
            udp_addr,
            tls_fingerprint,
            scheme,
            media,
            hub,
            cluster,
            ready,
            shutdown: Some(shutdown_tx),
            task,
            redirect,
            redirect_addr,
        })
    }

    /// Stops taking new calls (`/readyz` answers 503); running calls go on.
    pub fn drain(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.hub.send(HubInput::Drain);
    }

    /// Ends every running call with `server_shutdown`.
    pub async fn end_calls(&self) {
        self.hub.end_calls().await;
    }

    /// SIGTERM: drain, wait for calls to end or `deadline`, end the rest,
    /// then stop.
    pub async fn shutdown_gracefully(self, deadline: Duration) {
        self.ready.store(false, Ordering::SeqCst);
        // In a cluster the calls move to other nodes, if any can take them.
        if let Some(cluster) = &self.cluster
            && cluster.drain(deadline).await
        {
            // Let the close frames reach the clients.
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.stop().await;
            return;
        }
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

    /// The media plane's counters, summed over its workers.
    pub async fn media_stats(&self) -> Option<MediaStats> {
        let workers = self.media.worker_stats().await?;
        Some(
            workers
                .iter()
                .fold(MediaStats::default(), |a, w| a.merged(&w.core)),
        )
    }

    /// Each media worker's counters.
    pub async fn media_worker_stats(&self) -> Option<Vec<WorkerStats>> {
        self.media.worker_stats().await
    }

    /// Users online, rooms open, participants in rooms.
    pub async fn counts(&self) -> Option<Counts> {
        self.hub.counts().await
    }

    /// Stops accepting connections and waits for the HTTP server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        if let Some(r) = &self.redirect {
            r.abort();
        }
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
        .route("/api/cluster", get(cluster_status))
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
    if !state.ready.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if state.cluster.as_ref().is_some_and(|c| !c.reachable()) {
        (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable").into_response()
    } else {
        "ready".into_response()
    }
}

/// The cluster as this node sees it: nodes, their load, the coordinator
/// and (on the coordinator) where each room's media is. Needs
/// `Authorization: Bearer <cluster secret>`.
async fn cluster_status(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let (Some(cluster), Some(secret)) = (&state.cluster, &state.cluster_secret) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "this node runs alone (no --redis)",
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), secret.as_bytes())
        .is_err()
    {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the cluster secret as a bearer token",
        );
    }
    Json(cluster.status().await).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let counts = state.hub.counts().await.unwrap_or_default();
    let workers = state.media.worker_stats().await.unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(
            counts,
            &workers,
            state.media.tcp_stats(),
            match &state.cluster {
                Some(c) => Some(c.figures().await),
                None => None,
            },
        ),
    )
        .into_response()
}

/// The WebSocket read buffer and write batching threshold of each signaling
/// connection; a larger message is assembled over several reads.
const WS_BUFFER_BYTES: usize = 8 * 1024;

async fn ws_upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.limits.max_message_bytes;
    // Signaling messages are small: buffers of a few KiB (the default is
    // 128 KiB each way) keep a signed-in user's connection cheap.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let id = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
            let (sink, stream) = socket.split();
            let stream = stream.map(|frame| frame.map_err(ReadError::from));
            let settings = Settings {
                tokens: state.tokens,
                messages_per_second: state.limits.messages_per_second,
                auth_timeout: AUTH_TIMEOUT,
                ice: state.ice,
                call_log: state.call_log,
            };
            connection::serve(id, sink, stream, state.hub, settings)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn test_app(dev: bool) -> Router {
        let (hub, _rx) = HubHandle::channel();
        app(AppState {
            hub,
            tokens: Arc::new(Tokens::new(b"test")),
            dev,
            next_conn: Arc::new(AtomicU64::new(1)),
            limits: Limits::default(),
            ready: Arc::new(AtomicBool::new(true)),
            media: Arc::new(crate::media_plane::RecordingMedia::default()),
            ice: Arc::default(),
            cluster: None,
            cluster_secret: None,
            call_log: Arc::new(CallLogStore::memory()),
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
