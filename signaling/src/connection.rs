//! One WebSocket connection between a client and the hub task: sign-in,
//! the rate limit, frame checks, and the closing handshake.
//!
//! [`serve`] is generic over the socket's two halves (a `Sink` of frames and
//! a `Stream` of frames), so its tests feed it channels and read what it
//! answers, with tokio's clock paused: no server, no sleeping.
//!
//! How a connection ends decides what becomes of the session:
//! - a close frame with code 1000 (normal), 1001 (going away: what a browser
//!   sends when its page closes) or no code signs the user out at once;
//! - any other close code, a socket that drops without a close frame, or a
//!   message over the size limit keeps the session for the reconnect grace
//!   period, so the client can resume it.
//!
//! The server answers every close frame with one of its own (the closing
//! handshake), and waits a little for the client's answer when it closes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth::{TokenError, Tokens};
use crate::calllog::CallLogStore;
use crate::hub::ConnId;
use crate::hub::task::{Closure, HubHandle, HubInput, Outgoing};
use crate::protocol::{ClientMsg, ErrorCode, MAX_IDENTITY_KEY_LEN, ServerMsg, parse_client_msg};
use crate::turn::IceSettings;

/// How long a new connection may take to send `auth`.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits for the client to answer its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why reading a frame failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The message is over the size limit.
    TooLarge,
    /// The socket broke.
    Broken,
}

impl From<axum::Error> for ReadError {
    fn from(e: axum::Error) -> Self {
        match e.into_inner().downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => ReadError::TooLarge,
            _ => ReadError::Broken,
        }
    }
}

/// What a connection needs to know.
pub(crate) struct Settings {
    /// Checks access tokens.
    pub(crate) tokens: Arc<Tokens>,
    /// Messages per second (bursts of twice that).
    pub(crate) messages_per_second: u32,
    /// How long the client may take to sign in.
    pub(crate) auth_timeout: Duration,
    /// TURN servers and policy, whose credentials are minted at sign-in.
    pub(crate) ice: Arc<IceSettings>,
    /// Each user's recent calls: theirs follow every `welcome`.
    pub(crate) call_log: Arc<CallLogStore>,
}

/// Serves one connection until it ends, then tells the hub how it ended.
pub(crate) async fn serve<S, R>(
    id: ConnId,
    sink: S,
    mut stream: R,
    hub: HubHandle,
    settings: Settings,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, ReadError>> + Unpin,
{
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    // For the call log, read on its own (a weak sender: when the hub drops
    // its own, the connection still learns the server is going away).
    let log_tx = out_tx.downgrade();
    if !hub.send(HubInput::Register(id, out_tx)) {
        return;
    }
    let now = Instant::now();
    let auth_deadline = now + settings.auth_timeout;
    let mut c = Connection {
        id,
        sink,
        hub,
        tokens: settings.tokens,
        ice: settings.ice,
        bucket: RateLimit::new(settings.messages_per_second, now),
        signed_in: false,
        user: None,
        call_log: settings.call_log,
    };
    let ending = loop {
        let next = tokio::select! {
            out = out_rx.recv() => match out {
                Some(Outgoing::Msg(m)) => {
                    if matches!(m, ServerMsg::Welcome { .. }) {
                        c.send_call_log(log_tx.clone());
                    }
                    c.send(&m).await
                }
                Some(Outgoing::Close) => Next::End(Ending::ServerCloses(close_code::NORMAL)),
                Some(Outgoing::Restart) => Next::End(Ending::ServerCloses(close_code::RESTART)),
                // The hub task stopped: the server is going away.
                None => Next::End(Ending::ServerCloses(close_code::AWAY)),
            },
            frame = stream.next() => c.handle_frame(frame).await,
            () = tokio::time::sleep_until(auth_deadline), if !c.signed_in => {
                c.refuse(ErrorCode::NotAuthenticated, "no auth message in time", close_code::POLICY)
                    .await
            }
        };
        if let Next::End(ending) = next {
            break ending;
        }
    };
    match ending {
        Ending::ClientClosed(frame) => {
            let closure = if signs_out(frame.as_ref()) {
                Closure::SignedOut
            } else {
                Closure::Lost
            };
            // The hub first: the others hear of it without waiting on this
            // socket.
            c.hub.send(HubInput::Closed(id, closure));
            let answer = frame.map(|f| CloseFrame {
                code: f.code,
                reason: "".into(),
            });
            let _ = c.sink.send(Message::Close(answer)).await;
            let _ = c.sink.close().await;
        }
        Ending::ServerCloses(code) => {
            c.hub.send(HubInput::Closed(id, Closure::Lost));
            let frame = CloseFrame {
                code,
                reason: "".into(),
            };
            if c.sink.send(Message::Close(Some(frame))).await.is_ok() {
                // Let the client answer, so it sees a clean close.
                let answered = async {
                    while let Some(Ok(f)) = stream.next().await {
                        if matches!(f, Message::Close(_)) {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, answered).await;
            }
            let _ = c.sink.close().await;
        }
        Ending::Dropped => {
            c.hub.send(HubInput::Closed(id, Closure::Lost));
        }
    }
}

/// A close frame the client means as signing out.
fn signs_out(frame: Option<&CloseFrame>) -> bool {
    frame.is_none_or(|f| f.code == close_code::NORMAL || f.code == close_code::AWAY)
}

struct Connection<S> {
    id: ConnId,
    sink: S,
    hub: HubHandle,
    tokens: Arc<Tokens>,
    ice: Arc<IceSettings>,
    bucket: RateLimit,
    signed_in: bool,
    /// Who signed in.
    user: Option<String>,
    call_log: Arc<CallLogStore>,
}

/// Go on, or end the connection this way.
enum Next {
    Continue,
    End(Ending),
}

enum Ending {
    /// The client sent this close frame.
    ClientClosed(Option<CloseFrame>),
    /// The server closes with this code.
    ServerCloses(u16),
    /// The socket is gone.
    Dropped,
}

impl<S: Sink<Message> + Unpin> Connection<S> {
    async fn handle_frame(&mut self, frame: Option<Result<Message, ReadError>>) -> Next {
        let text = match frame {
            None | Some(Err(ReadError::Broken)) => return Next::End(Ending::Dropped),
            Some(Err(ReadError::TooLarge)) => {
                let message = "the message is over the size limit";
                return self
                    .refuse(ErrorCode::BadFrame, message, close_code::SIZE)
                    .await;
            }
            Some(Ok(Message::Close(frame))) => return Next::End(Ending::ClientClosed(frame)),
            // Answered by the WebSocket layer.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Next::Continue,
            Some(Ok(Message::Text(text))) => Some(text),
            Some(Ok(Message::Binary(_))) => None,
        };
        if !self.bucket.take(Instant::now()) {
            return self
                .reply(ErrorCode::RateLimited, "too many messages; slow down")
                .await;
        }
        let Some(text) = text else {
            let message = "binary frames are not part of the protocol";
            return self.reply(ErrorCode::BadFrame, message).await;
        };
        let msg = match parse_client_msg(&text) {
            Ok(m) => m,
            Err((code, message)) => {
                debug!(conn = self.id.0, ?code, "bad message: {message}");
                return self.reply(code, message).await;
            }
        };
        if self.signed_in {
            return self.to_hub(HubInput::Message(self.id, msg));
        }
        let ClientMsg::Auth {
            token,
            resume,
            identity_key,
        } = msg
        else {
            let message = "the first message must be auth";
            return self
                .refuse(ErrorCode::NotAuthenticated, message, close_code::POLICY)
                .await;
        };
        if let Some(key) = &identity_key
            && !valid_identity_key(key)
        {
            let message = "identity_key must be 1 to 256 bytes of base64";
            return self.reply(ErrorCode::BadMessage, message).await;
        }
        match self.tokens.verify(&token) {
            Ok(mut identity) => {
                identity.identity_key = identity_key;
                self.signed_in = true;
                self.user = Some(identity.user_id.to_string());
                let ice = self
                    .ice
                    .for_user(identity.user_id.as_str(), SystemTime::now());
                self.to_hub(HubInput::Login(self.id, identity, resume, ice))
            }
            Err(e) => {
                let message = match e {
                    TokenError::Expired => e.to_string(),
                    TokenError::Invalid(_) => "the token is not valid".to_string(),
                };
                self.refuse(ErrorCode::InvalidToken, message, close_code::POLICY)
                    .await
            }
        }
    }

    /// The signed-in user's whole call log, after the `welcome` on its way:
    /// read by a task of its own, so a slow store (Redis away, up to its
    /// timeout) holds up nothing else on this connection.
    fn send_call_log(&self, tx: mpsc::WeakUnboundedSender<Outgoing>) {
        let Some(user) = self.user.clone() else {
            return;
        };
        let store = self.call_log.clone();
        tokio::spawn(async move {
            let entries = store.list(&user).await;
            if let Some(tx) = tx.upgrade() {
                let _ = tx.send(Outgoing::Msg(ServerMsg::CallLog {
                    entries,
                    complete: true,
                }));
            }
        });
    }

    fn to_hub(&self, input: HubInput) -> Next {
        if self.hub.send(input) {
            Next::Continue
        } else {
            Next::End(Ending::ServerCloses(close_code::AWAY))
        }
    }

    /// An error for the client; the connection goes on.
    async fn reply(&mut self, code: ErrorCode, message: impl Into<String>) -> Next {
        let message = message.into();
        self.send(&ServerMsg::Error { code, message }).await
    }

    /// An error for the client, then the server closes with `close`.
    async fn refuse(&mut self, code: ErrorCode, message: impl Into<String>, close: u16) -> Next {
        match self.reply(code, message).await {
            Next::Continue => Next::End(Ending::ServerCloses(close)),
            ended => ended,
        }
    }

    async fn send(&mut self, msg: &ServerMsg) -> Next {
        let text = match serde_json::to_string(msg) {
            Ok(t) => t,
            Err(e) => {
                warn!(conn = self.id.0, "cannot serialize {msg:?}: {e}");
                return Next::Continue;
            }
        };
        match self.sink.send(Message::Text(text.into())).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::End(Ending::Dropped),
        }
    }
}

/// A token bucket: `rate` messages per second, bursts of twice that.
struct RateLimit {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimit {
            rate,
            tokens: rate * 2.0,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
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

/// A public identity key as `auth` may carry it: base64 (either alphabet),
/// at most [`MAX_IDENTITY_KEY_LEN`] bytes. Its content is the clients'
/// business; the server only passes it on.
fn valid_identity_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDENTITY_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
}

#[cfg(test)]
mod tests;
