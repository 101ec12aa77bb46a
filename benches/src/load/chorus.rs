//! Driving Chorus: dev tokens, the WebSocket protocol, one room per
//! `create_room`, SDP through the client task.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::client::ClientHandle;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
    let token: Value = http
        .post(format!("{base}/api/token"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .map_err(|e| format!("token: {e}"))?
        .json()
        .await
        .map_err(|e| format!("token: {e}"))?;
    let token = token["token"].as_str().ok_or("no token")?.to_string();
    let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    send(&mut ws, json!({"type": "auth", "token": token})).await?;
    expect(&mut ws, "welcome").await?;
    match room {
        Some(r) => send(&mut ws, json!({"type": "join_room", "room_id": r})).await?,
        None => send(&mut ws, json!({"type": "create_room"})).await?,
    }
    let joined = expect(&mut ws, "room_joined").await?;
    let room = joined["room_id"].as_str().ok_or("no room id")?.to_string();
    let offer = client.offer().await?;
    send(
        &mut ws,
        json!({"type": "media_offer", "room_id": room, "sdp": offer}),
    )
    .await?;
    // The answer, then the server's offers, in order.
    loop {
        let m = next(&mut ws).await?;
        match m["type"].as_str() {
            Some("media_answer") => {
                let sdp = m["sdp"].as_str().ok_or("answer without sdp")?;
                client.answer(sdp.to_string()).await?;
                break;
            }
            Some("error") => return Err(format!("server: {m}")),
            _ => {}
        }
    }
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
                if m["type"] == "media_offer" {
                    let Some(sdp) = m["sdp"].as_str() else { continue };
                    match client.accept_offer(sdp.to_string()).await {
                        Ok(answer) => {
                            let msg = json!({"type": "media_answer", "room_id": room, "sdp": answer});
                            if send(&mut ws, msg).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => eprintln!("loadgen: could not answer an offer: {e}"),
                    }
                }
            }
            _ = &mut stop => {
                let _ = send(&mut ws, json!({"type": "hangup", "room_id": room})).await;
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::text(v.to_string()))
        .await
        .map_err(|e| format!("websocket send: {e}"))
}

async fn next(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).map_err(|e| format!("bad json: {e}"));
            }
            Some(Ok(Message::Close(_))) | None => return Err("websocket closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("websocket: {e}")),
        }
    }
}

async fn expect(ws: &mut Ws, kind: &str) -> Result<Value, String> {
    loop {
        let m = next(ws).await?;
        match m["type"].as_str() {
            Some(t) if t == kind => return Ok(m),
            Some("error") => return Err(format!("server: {m}")),
            _ => {}
        }
    }
}
