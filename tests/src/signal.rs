//! A signaling client for tests: gets a token, speaks the WebSocket
//! protocol, and (with a [`Peer`] attached) answers the media node's offers
//! by itself, as a browser client does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_sfu::Stats;
use chorus_signaling::config::Config;
use chorus_signaling::protocol::{ClientMsg, ErrorCode, ServerMsg, Track};
use chorus_signaling::server::Server;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::eventually::eventually_async;
use crate::peer::Peer;

/// Errors of the test harness.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A `chorus` server running in this process on free ports.
pub struct TestServer {
    /// The server.
    pub server: Server,
}

impl TestServer {
    /// Starts a server with loopback addresses and free ports.
    pub async fn start() -> Result<TestServer, Error> {
        Self::start_with(Config::local()).await
    }

    /// Starts a server with a given configuration.
    pub async fn start_with(config: Config) -> Result<TestServer, Error> {
        Ok(TestServer {
            server: Server::start(config).await?,
        })
    }

    /// `POST /api/token`: returns the raw HTTP status and JSON body.
    pub async fn post_token(&self, body: &str) -> Result<(u16, serde_json::Value), Error> {
        post_token_at(self.server.http_addr, body).await
    }

    /// A dev-mode token for `name`: `(token, user_id)`.
    pub async fn token(&self, name: &str) -> Result<(String, String), Error> {
        token_at(self.server.http_addr, name).await
    }

    /// The media node's counters.
    pub async fn media_stats(&self) -> Result<Stats, Error> {
        Ok(self.server.media_stats().await.ok_or("media node gone")?)
    }

    /// Waits until the media node holds no participant and no room, and
    /// returns its stats then.
    pub async fn wait_media_empty(&self, timeout: Duration) -> Result<Stats, Error> {
        let stats = eventually_async(
            timeout,
            "the media node to hold no participant and no room",
            || self.server.media_stats(),
            |s| {
                s.as_ref()
                    .is_none_or(|s| s.participants == 0 && s.rooms == 0)
            },
        )
        .await?;
        Ok(stats.ok_or("media node gone")?)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.server.http_addr)
    }

    /// Connects, authenticates and waits for `welcome`.
    pub async fn client(&self, name: &str) -> Result<Client, Error> {
        let (token, _user_id) = self.token(name).await?;
        let (c, resumed) = self.sign_in(&token, None).await?;
        if resumed {
            return Err("a new session was resumed".into());
        }
        Ok(c)
    }

    /// Signs in with `token`, resuming the session of `resume` if given.
    /// Returns the client and whether the session was resumed.
    pub async fn sign_in(
        &self,
        token: &str,
        resume: Option<&str>,
    ) -> Result<(Client, bool), Error> {
        sign_in_at(&self.ws_url(), token, resume).await
    }
}

/// `POST /api/token` to the server at `addr`: the raw HTTP status and JSON body.
pub async fn post_token_at(
    addr: std::net::SocketAddr,
    body: &str,
) -> Result<(u16, serde_json::Value), Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    let req = format!(
        "POST /api/token HTTP/1.1\r\nHost: chorus\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    let body = text.split("\r\n\r\n").nth(1).ok_or("no HTTP body")?;
    Ok((status, serde_json::from_str(body)?))
}

/// A dev-mode token for `name` from the server at `addr`: `(token, user_id)`.
pub async fn token_at(addr: std::net::SocketAddr, name: &str) -> Result<(String, String), Error> {
    let (status, v) = post_token_at(addr, &serde_json::json!({ "name": name }).to_string()).await?;
    if status != 200 {
        return Err(format!("token request failed: {status} {v}").into());
    }
    let token = v["token"].as_str().ok_or("no token")?.to_string();
    let user_id = v["user_id"].as_str().ok_or("no user_id")?.to_string();
    Ok((token, user_id))
}

/// Connects to `ws_url`, signs in with `token` (resuming `resume` if
/// given) and waits for `welcome`; the client and whether it resumed.
pub async fn sign_in_at(
    ws_url: &str,
    token: &str,
    resume: Option<&str>,
) -> Result<(Client, bool), Error> {
    let mut c = Client::connect(ws_url).await?;
    c.send(&ClientMsg::Auth {
        identity_key: None,
        token: token.to_string(),
        resume: resume.map(str::to_string),
    })?;
    let welcome = c
        .recv_until(Duration::from_secs(10), |m| {
            matches!(m, ServerMsg::Welcome { .. })
        })
        .await?;
    let ServerMsg::Welcome {
        user,
        resume_token,
        resumed,
        ..
    } = welcome
    else {
        unreachable!("filtered above")
    };
    c.user_id = user.id;
    c.name = user.name;
    c.token = token.to_string();
    c.resume_token = resume_token;
    Ok((c, resumed))
}

/// Rewrites SDP from the server before the peer sees it.
type SdpFilter = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What the background reader saw of media negotiation.
#[derive(Default)]
struct MediaState {
    peer: Option<Arc<Peer>>,
    filter: Option<SdpFilter>,
    room: Option<String>,
    tracks: Vec<Track>,
    offers: usize,
    errors: Vec<String>,
    /// An own offer is out: a server offer that crosses it is ignored (the
    /// media node answers ours, then offers again), as the web client does.
    offering: bool,
}

/// One signaling connection.
pub struct Client {
    /// The user id from the token.
    pub user_id: String,
    /// The display name.
    pub name: String,
    /// The access token it signed in with.
    pub token: String,
    /// The session's resume token.
    pub resume_token: String,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Result<ServerMsg, String>>,
    media: Arc<Mutex<MediaState>>,
    /// The close code the server's close frame carried (1005 for none), or
    /// 1006 when the socket ended without one.
    closed: watch::Receiver<Option<u16>>,
    tasks: [JoinHandle<()>; 2],
}

/// What a socket that ends without a close frame reads as (RFC 6455).
const ABNORMAL_CLOSE: u16 = 1006;

impl Client {
    /// Opens a WebSocket without authenticating.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (in_tx, inbox) = mpsc::unbounded_channel();
        let media = Arc::new(Mutex::new(MediaState::default()));
        let (closed_tx, closed) = watch::channel(None);
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        let (media2, out2) = (media.clone(), out.clone());
        let reader = tokio::spawn(async move {
            let mut code = ABNORMAL_CLOSE;
            while let Some(frame) = stream.next().await {
                let text = match frame {
                    Ok(Message::Text(t)) => t.to_string(),
                    Ok(Message::Close(frame)) => {
                        code = frame.map_or(1005, |f| u16::from(f.code));
                        break;
                    }
                    Err(_) => break,
                    Ok(_) => continue,
                };
                let msg = match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = in_tx.send(Err(format!("unparsable server message {text}: {e}")));
                        continue;
                    }
                };
                let msg = match handle_media(&media2, &out2, msg).await {
                    Some(m) => m,
                    None => continue,
                };
                if in_tx.send(Ok(msg)).is_err() {
                    break;
                }
            }
            let _ = closed_tx.send(Some(code));
        });
        Ok(Client {
            user_id: String::new(),
            name: String::new(),
            token: String::new(),
            resume_token: String::new(),
            out,
            inbox,
            media,
            closed,
            tasks: [writer, reader],
        })
    }

    /// Sends a text frame as is.
    pub fn send_raw(&self, text: &str) -> Result<(), Error> {
        self.out
            .send(Message::Text(text.into()))
            .map_err(|_| "socket closed".into())
    }

    /// Sends a binary frame.
    pub fn send_binary(&self, data: Vec<u8>) -> Result<(), Error> {
        self.out
            .send(Message::Binary(data.into()))
            .map_err(|_| "socket closed".into())
    }

    /// Sends a protocol message.
    pub fn send(&self, msg: &ClientMsg) -> Result<(), Error> {
        self.send_raw(&serde_json::to_string(msg)?)
    }

    /// Closes the WebSocket cleanly (code 1000): signs out.
    pub fn close(&self) {
        self.close_with(1000);
    }

    /// Sends a close frame with `code`: 1000 and 1001 sign out, other
    /// codes leave the session to be resumed.
    pub fn close_with(&self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = self.out.send(Message::Close(Some(frame)));
    }

    /// Drops the connection without a close frame, as a lost network does:
    /// the session waits for a resume.
    pub fn drop_connection(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// True once the socket ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Waits for the socket to end; the close code the server sent (1006
    /// if it sent none).
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<u16, Error> {
        let closed = tokio::time::timeout(timeout, self.closed.wait_for(Option::is_some))
            .await
            .map_err(|_| format!("{}: the socket did not close", self.name))?
            .map_err(|_| format!("{}: the reader stopped", self.name))?;
        Ok(closed.unwrap_or(ABNORMAL_CLOSE))
    }

    /// The next message that matches, skipping others; fails on timeout.
    pub async fn recv_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerMsg) -> bool,
    ) -> Result<ServerMsg, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Err(_) => {
                    return Err(format!("{}: timed out waiting for a message", self.name).into());
                }
                Ok(None) => return Err(format!("{}: socket closed", self.name).into()),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(m))) => {
                    if pred(&m) {
                        return Ok(m);
                    }
                }
            }
        }
    }

    /// The next message that matches, skipping others; fails on timeout
    /// and on an error from the server.
    pub async fn reply(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerMsg) -> bool,
    ) -> Result<ServerMsg, Error> {
        let m = self
            .recv_until(timeout, |m| pred(m) || matches!(m, ServerMsg::Error { .. }))
            .await?;
        match m {
            ServerMsg::Error { code, message } => {
                Err(format!("{}: refused: {code:?}: {message}", self.name).into())
            }
            m => Ok(m),
        }
    }

    /// Waits for an error with this code.
    pub async fn expect_error(&mut self, code: ErrorCode) -> Result<String, Error> {
        let m = self
            .recv_until(Duration::from_secs(5), |m| {
                matches!(m, ServerMsg::Error { .. })
            })
            .await?;
        match m {
            ServerMsg::Error { code: c, message } if c == code => Ok(message),
            other => Err(format!("expected error {code:?}, got {other:?}").into()),
        }
    }

    /// Attaches a peer: from now on the client answers the media node's
    /// offers with it.
    pub fn attach(&self, room: &str, peer: Arc<Peer>) {
        if let Ok(mut m) = self.media.lock() {
            m.peer = Some(peer);
            m.room = Some(room.to_string());
        }
    }

    /// Publishes: sends the peer's offer and applies the answer; returns
    /// the offer and the answer SDP.
    pub async fn publish(
        &mut self,
        room: &str,
        peer: Arc<Peer>,
    ) -> Result<(String, String), Error> {
        let offer = peer.create_offer().await?;
        self.attach(room, peer.clone());
        if let Ok(mut m) = self.media.lock() {
            m.offering = true;
        }
        self.send(&ClientMsg::MediaOffer {
            room_id: room.to_string(),
            sdp: offer.clone(),
            screen: None,
        })?;
        let reply = self
            .reply(Duration::from_secs(10), |m| {
                matches!(m, ServerMsg::MediaAnswer { .. })
            })
            .await?;
        let ServerMsg::MediaAnswer { sdp: answer, .. } = reply else {
            unreachable!("filtered above")
        };
        // The reader task applied the answer before passing it on, so a
        // media offer right behind it finds the peer stable.
        match self.media_errors().first() {
            Some(e) => Err(format!("{}: answer not applied: {e}", self.name).into()),
            None => Ok((offer, answer)),
        }
    }

    /// The tracks of the last media offer, by publisher.
    pub fn tracks(&self) -> HashMap<String, Vec<Track>> {
        let mut by: HashMap<String, Vec<Track>> = HashMap::new();
        if let Ok(m) = self.media.lock() {
            for t in &m.tracks {
                by.entry(t.participant_id.clone())
                    .or_default()
                    .push(t.clone());
            }
        }
        by
    }

    /// Rewrites the media node's SDP before the peer applies it (e.g.
    /// [`crate::relay::Relay::sdp_filter`]).
    pub fn set_sdp_filter(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        if let Ok(mut m) = self.media.lock() {
            m.filter = Some(Arc::new(f));
        }
    }

    /// How many media offers were answered.
    pub fn offers_answered(&self) -> usize {
        self.media.lock().map(|m| m.offers).unwrap_or(0)
    }

    /// Failures while answering media offers.
    pub fn media_errors(&self) -> Vec<String> {
        self.media
            .lock()
            .map(|m| m.errors.clone())
            .unwrap_or_default()
    }
}

/// Applies media answers and answers media offers in the background, in
/// the order they arrive; passes everything else on (answers too, once
/// applied).
async fn handle_media(
    media: &Arc<Mutex<MediaState>>,
    out: &mpsc::UnboundedSender<Message>,
    msg: ServerMsg,
) -> Option<ServerMsg> {
    let filter = media.lock().ok().and_then(|m| m.filter.clone());
    let filtered = |sdp: &str| match &filter {
        Some(f) => f(sdp),
        None => sdp.to_string(),
    };
    if let ServerMsg::MediaAnswer { sdp, .. } = &msg {
        let peer = media.lock().ok().and_then(|m| m.peer.clone());
        let applied = match peer {
            Some(peer) => peer
                .accept_answer(&filtered(sdp))
                .await
                .map_err(|e| e.to_string()),
            None => Ok(()),
        };
        if let Ok(mut m) = media.lock() {
            m.offering = false;
            if let Err(e) = applied {
                m.errors.push(e);
            }
        }
        return Some(msg);
    }
    let ServerMsg::MediaOffer {
        room_id,
        sdp,
        tracks,
    } = msg
    else {
        return Some(msg);
    };
    let (peer, offering) = media
        .lock()
        .map(|m| (m.peer.clone(), m.offering))
        .unwrap_or_default();
    if offering {
        return None;
    }
    let Some(peer) = peer else {
        return Some(ServerMsg::MediaOffer {
            room_id,
            sdp,
            tracks,
        });
    };
    match peer.handle_offer(&filtered(&sdp)).await {
        Ok(answer) => {
            let reply = ClientMsg::MediaAnswer {
                room_id,
                sdp: answer,
            };
            if let Ok(text) = serde_json::to_string(&reply) {
                let _ = out.send(Message::Text(text.into()));
            }
            if let Ok(mut m) = media.lock() {
                m.tracks = tracks;
                m.offers += 1;
            }
        }
        Err(e) => {
            if let Ok(mut m) = media.lock() {
                m.errors.push(e.to_string());
            }
        }
    }
    None
}

/// Whether `msg` shows user `id` online: a whole presence list with them,
/// or an update that adds them.
pub fn shows_online(msg: &ServerMsg, id: &str) -> bool {
    match msg {
        ServerMsg::Presence { users } | ServerMsg::PresenceUpdate { users, .. } => {
            users.iter().any(|u| u.id == id)
        }
        _ => false,
    }
}

/// Whether `msg` shows user `id` gone: an update that says so, or a whole
/// presence list without them.
pub fn shows_gone(msg: &ServerMsg, id: &str) -> bool {
    match msg {
        ServerMsg::Presence { users } => !users.iter().any(|u| u.id == id),
        ServerMsg::PresenceUpdate { gone, .. } => gone.iter().any(|g| g == id),
        _ => false,
    }
}
