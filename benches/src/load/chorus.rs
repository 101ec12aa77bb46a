//! Driving Chorus: dev tokens, the WebSocket protocol (its types, from
//! `chorus-protocol`), one room per `create_room`, SDP through the client
//! task.

use chorus_protocol::{ClientMsg, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::client::ClientHandle;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `POST /api/token` (docs/protocol.md, dev mode).
#[derive(Serialize)]
struct TokenRequest<'a> {
    name: &'a str,
}

/// Its answer; other fields are not needed here.
#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

/// A signed-in Chorus client: its room and its signaling task.
#[derive(Debug)]
pub struct Session {
    /// The room it is in.
    pub room: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Signs in as `name`, creates a room (`room` None) or joins one, offers
/// through `client`, and keeps answering the server's offers until the
/// session is dropped (then hangs up).
pub async fn join(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    room: Option<&str>,
    client: ClientHandle,
) -> Result<Session, String> {
    let token: TokenResponse = http
        .post(format!("{base}/api/token"))
        .json(&TokenRequest { name })
        .send()
        .await
        .map_err(|e| format!("token: {e}"))?
        .json()
        .await
        .map_err(|e| format!("token: {e}"))?;
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    let auth = ClientMsg::Auth {
        identity_key: None,
        token: token.token,
        resume: None,
    };
    send(&mut ws, &auth).await?;
    expect(&mut ws, |m| {
        matches!(m, ServerMsg::Welcome { .. }).then_some(())
    })
    .await?;
    let ask = match room {
        Some(r) => ClientMsg::JoinRoom {
            room_id: r.to_string(),
        },
        None => ClientMsg::CreateRoom { e2ee: None },
    };
    send(&mut ws, &ask).await?;
    let room = expect(&mut ws, |m| match m {
        ServerMsg::RoomJoined { room_id, .. } => Some(room_id),
        _ => None,
    })
    .await?;
    let offer = ClientMsg::MediaOffer {
        room_id: room.clone(),
        sdp: client.offer().await?,
        screen: None,
    };
    send(&mut ws, &offer).await?;
    // The answer comes before the server's offers.
    let answer = expect(&mut ws, |m| match m {
        ServerMsg::MediaAnswer { sdp, .. } => Some(sdp),
        _ => None,
    })
    .await?;
    client.answer(answer).await?;
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(serve(ws, room.clone(), client, stopped));
    Ok(Session {
        room,
        stop: Some(stop),
    })
}

/// Answers server offers until told to stop, then hangs up.
async fn serve(mut ws: Ws, room: String, client: ClientHandle, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            m = next(&mut ws) => {
                let Ok(m) = m else { return };
                let ServerMsg::MediaOffer { sdp, .. } = m else { continue };
                match client.accept_offer(sdp).await {
                    Ok(answer) => {
                        let msg = ClientMsg::MediaAnswer { room_id: room.clone(), sdp: answer };
                        if send(&mut ws, &msg).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("loadgen: could not answer an offer: {e}"),
                }
            }
            _ = &mut stop => {
                let _ = send(&mut ws, &ClientMsg::Hangup { room_id: room }).await;
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<(), String> {
    let text = serde_json::to_string(msg).map_err(|e| format!("encode: {e}"))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("websocket send: {e}"))
}

async fn next(ws: &mut Ws) -> Result<ServerMsg, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| format!("unexpected message {t}: {e}"));
            }
            Some(Ok(Message::Close(_))) | None => return Err("websocket closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("websocket: {e}")),
        }
    }
}

/// Reads messages until `pick` takes one; an error message fails.
async fn expect<T>(ws: &mut Ws, pick: impl Fn(ServerMsg) -> Option<T>) -> Result<T, String> {
    loop {
        match next(ws).await? {
            ServerMsg::Error { code, message } => {
                return Err(format!("server: {code:?}: {message}"));
            }
            m => {
                if let Some(t) = pick(m) {
                    return Ok(t);
                }
            }
        }
    }
}
