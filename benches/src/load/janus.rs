//! Driving Janus VideoRoom through its HTTP API (Janus 1.x multistream).
//!
//! Each client has its own Janus session and plugin handle, and a task that
//! long-polls the session's events. Requests that Janus answers later
//! (`joinandconfigure`, `join`, `start`) come back as events on that poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::client::ClientHandle;

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("t{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

/// A Janus session with one VideoRoom handle.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    base: String,
    session: u64,
    handle: u64,
    events: mpsc::UnboundedReceiver<Value>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Session {
    /// Creates a session and attaches the VideoRoom plugin.
    pub async fn open(http: &reqwest::Client, base: &str) -> Result<Session, String> {
        let r = post(http, &format!("{base}/janus"), json!({"janus": "create"})).await?;
        let session = r["data"]["id"].as_u64().ok_or(format!("create: {r}"))?;
        let r = post(
            http,
            &format!("{base}/janus/{session}"),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        let handle = r["data"]["id"].as_u64().ok_or(format!("attach: {r}"))?;
        let (tx, events) = mpsc::unbounded_channel();
        let poll_url = format!("{base}/janus/{session}?maxev=10");
        let http2 = http.clone();
        let poller = tokio::spawn(async move {
            loop {
                let r = match http2.get(&poll_url).send().await {
                    Ok(r) => r.json::<Value>().await,
                    Err(_) => return,
                };
                let Ok(v) = r else { return };
                let list = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                for e in list {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Session {
            http: http.clone(),
            base: base.to_string(),
            session,
            handle,
            events,
            poller,
        })
    }

    /// Sends a plugin message; returns Janus' immediate reply.
    async fn message(&self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let url = format!("{}/janus/{}/{}", self.base, self.session, self.handle);
        let r = post(&self.http, &url, m).await?;
        if r["janus"] == "error" {
            return Err(format!("janus: {r}"));
        }
        Ok(r)
    }

    /// Waits for the next plugin event of this handle.
    async fn event(&mut self) -> Result<Value, String> {
        let wait = Duration::from_secs(20);
        loop {
            let e = tokio::time::timeout(wait, self.events.recv())
                .await
                .map_err(|_| "no event from janus in 20 s")?
                .ok_or("janus session gone")?;
            if e["janus"] == "event" && e["sender"].as_u64() == Some(self.handle) {
                let data = &e["plugindata"]["data"];
                if data.get("error").is_some() {
                    return Err(format!("janus: {data}"));
                }
                return Ok(e);
            }
        }
    }

    /// Creates room `room` (replacing one left over by an earlier run).
    pub async fn create_room(&self, room: u64, publishers: usize) -> Result<(), String> {
        let _ = self
            .message(json!({"request": "destroy", "room": room}), None)
            .await;
        let r = self
            .message(
                json!({
                    "request": "create",
                    "room": room,
                    "publishers": publishers.max(1),
                    // Above what a publisher sends, so Janus never throttles it.
                    "bitrate": 8_000_000,
                    "audiocodec": "opus",
                    "videocodec": "vp8",
                    "notify_joining": false,
                }),
                None,
            )
            .await?;
        match r["plugindata"]["data"]["videoroom"].as_str() {
            Some("created") => Ok(()),
            _ => Err(format!("create room: {r}")),
        }
    }

    /// Publishes `client`'s audio and video; returns the publisher id.
    pub async fn publish(
        &mut self,
        room: u64,
        name: &str,
        client: &ClientHandle,
    ) -> Result<u64, String> {
        let offer = client.offer().await?;
        self.message(
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                   "display": name, "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer})),
        )
        .await?;
        let e = self.event().await?;
        let id = e["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or(format!("joined: {e}"))?;
        let sdp = e["jsep"]["sdp"].as_str().ok_or(format!("no answer: {e}"))?;
        client.answer(sdp.to_string()).await?;
        Ok(id)
    }

    /// Subscribes `client` to the feeds.
    pub async fn subscribe(
        &mut self,
        room: u64,
        feeds: &[u64],
        client: &ClientHandle,
    ) -> Result<(), String> {
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let mut tries = 0;
        let e = loop {
            self.message(
                json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}),
                None,
            )
            .await?;
            match self.event().await {
                Ok(e) => break e,
                // "No such feed" until the publisher's PeerConnection is up.
                Err(err) if err.contains("428") && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        };
        let sdp = e["jsep"]["sdp"].as_str().ok_or(format!("no offer: {e}"))?;
        let answer = client.accept_offer(sdp.to_string()).await?;
        self.message(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
        self.event().await?;
        Ok(())
    }
}

async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> Result<Value, String> {
    body["transaction"] = Value::String(transaction());
    http.post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("janus http: {e}"))?
        .json()
        .await
        .map_err(|e| format!("janus http: {e}"))
}
