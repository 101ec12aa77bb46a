//! The connection handler against channels, in paused time.

use axum::extract::ws::Utf8Bytes;
use tokio::task::JoinHandle;

use super::*;
use crate::hub::Identity;

/// One end of a connection under test: frames to and from the server, and
/// what the connection asks of the hub.
struct Client {
    frames: mpsc::UnboundedSender<Result<Message, ReadError>>,
    replies: mpsc::UnboundedReceiver<Message>,
    hub: mpsc::UnboundedReceiver<HubInput>,
    /// Where the hub task would send this connection's messages.
    outgoing: mpsc::UnboundedSender<Outgoing>,
    task: JoinHandle<()>,
}

const ID: ConnId = ConnId(7);

fn tokens() -> Arc<Tokens> {
    Arc::new(Tokens::new(b"connection tests"))
}

async fn open() -> Client {
    let (frames, frames_rx) = mpsc::unbounded_channel();
    let stream = Box::pin(futures_util::stream::unfold(frames_rx, |mut rx| async {
        rx.recv().await.map(|frame| (frame, rx))
    }));
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let sink = Box::pin(futures_util::sink::unfold(
        replies_tx,
        |tx, frame: Message| async move {
            tx.send(frame).map_err(|_| "client gone")?;
            Ok::<_, &str>(tx)
        },
    ));
    let (handle, mut hub) = HubHandle::channel();
    let settings = Settings {
        tokens: tokens(),
        messages_per_second: 20,
        auth_timeout: AUTH_TIMEOUT,
        ice: Arc::default(),
        call_log: Arc::new(crate::calllog::CallLogStore::memory()),
    };
    let task = tokio::spawn(serve(ID, sink, stream, handle, settings));
    let outgoing = match hub.recv().await {
        Some(HubInput::Register(id, tx)) if id == ID => tx,
        other => panic!("not registered: {other:?}"),
    };
    Client {
        frames,
        replies,
        hub,
        outgoing,
        task,
    }
}

impl Client {
    fn send(&self, frame: Message) {
        self.frames.send(Ok(frame)).expect("the connection reads");
    }

    fn text(&self, text: &str) {
        self.send(Message::Text(text.into()));
    }

    fn close(&self, code: Option<u16>) {
        self.send(Message::Close(code.map(|code| CloseFrame {
            code,
            reason: "".into(),
        })));
    }

    /// Signs in and checks the hub hears of it.
    async fn sign_in(&mut self) -> Identity {
        let (token, _) = tokens().issue_dev("Ada").expect("signs");
        self.text(&format!(r#"{{"type":"auth","token":"{token}"}}"#));
        match self.hub.recv().await {
            Some(HubInput::Login(ID, identity, None, _)) => identity,
            other => panic!("no login: {other:?}"),
        }
    }

    /// The next frame from the server.
    async fn reply(&mut self) -> Message {
        self.replies.recv().await.expect("a frame from the server")
    }

    /// The next frame, which must be an error with `code`.
    async fn error(&mut self) -> ErrorCode {
        match self.reply().await {
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(&t) {
                Ok(ServerMsg::Error { code, .. }) => code,
                other => panic!("not an error: {other:?}"),
            },
            other => panic!("not text: {other:?}"),
        }
    }

    /// The close code of the next frame, which must be a close.
    async fn closed_with(&mut self) -> Option<u16> {
        match self.reply().await {
            Message::Close(frame) => frame.map(|f| f.code),
            other => panic!("not a close: {other:?}"),
        }
    }

    /// The connection ended: how it told the hub, and nothing else after.
    async fn ended(mut self) -> Closure {
        let closure = match self.hub.recv().await {
            Some(HubInput::Closed(ID, closure)) => closure,
            other => panic!("not closed: {other:?}"),
        };
        self.task
            .await
            .expect("the connection ends without a panic");
        assert!(self.hub.recv().await.is_none());
        closure
    }
}

fn text(msg: &ServerMsg) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(msg).expect("serializes"),
    ))
}

#[tokio::test(start_paused = true)]
async fn signing_in_passes_the_identity_then_messages_to_the_hub() {
    let mut c = open().await;
    let identity = c.sign_in().await;
    assert_eq!(identity.name, "Ada");
    c.text(r#"{"type":"create_room"}"#);
    assert!(matches!(
        c.hub.recv().await,
        Some(HubInput::Message(ID, ClientMsg::CreateRoom { e2ee: None }))
    ));
    // What the hub sends goes out as text, in order.
    let presence = ServerMsg::Presence { users: vec![] };
    let error = ServerMsg::Error {
        code: ErrorCode::RoomFull,
        message: "full".into(),
    };
    for m in [&presence, &error] {
        c.outgoing
            .send(Outgoing::Msg(m.clone()))
            .expect("connection alive");
    }
    assert_eq!(c.reply().await, text(&presence));
    assert_eq!(c.reply().await, text(&error));
    // No auth timeout once signed in.
    tokio::time::sleep(AUTH_TIMEOUT * 2).await;
    assert!(c.replies.try_recv().is_err());
    c.close(Some(close_code::NORMAL));
    assert_eq!(c.closed_with().await, Some(close_code::NORMAL));
    assert_eq!(c.ended().await, Closure::SignedOut);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_auth_timeout() {
    let mut c = open().await;
    let start = Instant::now();
    assert_eq!(c.error().await, ErrorCode::NotAuthenticated);
    assert_eq!(start.elapsed(), AUTH_TIMEOUT);
    assert_eq!(c.closed_with().await, Some(close_code::POLICY));
    // The client answers the close: the server is done at once.
    c.close(Some(close_code::POLICY));
    assert_eq!(c.ended().await, Closure::Lost);
    assert_eq!(start.elapsed(), AUTH_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_the_close_is_let_go() {
    let mut c = open().await;
    c.text(r#"{"type":"create_room"}"#);
    assert_eq!(c.error().await, ErrorCode::NotAuthenticated);
    assert_eq!(c.closed_with().await, Some(close_code::POLICY));
    let start = Instant::now();
    assert_eq!(c.ended().await, Closure::Lost);
    assert_eq!(start.elapsed(), CLOSE_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn bad_tokens_are_refused_and_the_socket_closed() {
    let other = Tokens::new(b"someone else's secret");
    let (forged, _) = other.issue_dev("Mallory").expect("signs");
    let mut claims = tokens().issue_dev("Old").expect("signs").1;
    claims.exp = crate::auth::unix_now() - 5;
    let expired = tokens().sign(&claims).expect("signs");
    for token in [forged.as_str(), expired.as_str(), "not-a-jwt"] {
        let mut c = open().await;
        c.text(&format!(r#"{{"type":"auth","token":"{token}"}}"#));
        assert_eq!(c.error().await, ErrorCode::InvalidToken);
        assert_eq!(c.closed_with().await, Some(close_code::POLICY));
        c.close(None);
        assert_eq!(c.ended().await, Closure::Lost, "no login for {token}");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_frames_get_errors_and_the_connection_goes_on() {
    let mut c = open().await;
    // Before signing in as well as after.
    c.send(Message::Binary(vec![1, 2, 3].into()));
    assert_eq!(c.error().await, ErrorCode::BadFrame);
    c.sign_in().await;
    let cases = [
        ("{nope", ErrorCode::BadJson),
        ("[1,2]", ErrorCode::BadJson),
        (r#"{"type":"teleport"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"call","to":7,"media":"video"}"#,
            ErrorCode::BadMessage,
        ),
    ];
    for (frame, code) in cases {
        c.text(frame);
        assert_eq!(c.error().await, code, "{frame}");
    }
    c.send(Message::Binary(vec![0].into()));
    assert_eq!(c.error().await, ErrorCode::BadFrame);
    // Pings are the WebSocket layer's business.
    c.send(Message::Ping(vec![1].into()));
    // None of it reached the hub; the next good message does.
    c.text(r#"{"type":"hangup","room_id":"r"}"#);
    assert!(matches!(
        c.hub.recv().await,
        Some(HubInput::Message(ID, ClientMsg::Hangup { .. }))
    ));
    assert!(c.replies.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_size_limit_closes_and_keeps_the_session() {
    let mut c = open().await;
    c.sign_in().await;
    c.frames.send(Err(ReadError::TooLarge)).expect("reads");
    assert_eq!(c.error().await, ErrorCode::BadFrame);
    assert_eq!(c.closed_with().await, Some(close_code::SIZE));
    c.close(Some(close_code::SIZE));
    assert_eq!(c.ended().await, Closure::Lost);
}

#[tokio::test(start_paused = true)]
async fn too_many_messages_are_refused_until_the_bucket_refills() {
    let mut c = open().await;
    c.sign_in().await;
    // The sign-in took one of the burst of 40.
    for _ in 0..39 {
        c.text(r#"{"type":"create_room"}"#);
    }
    c.text(r#"{"type":"create_room"}"#);
    assert_eq!(c.error().await, ErrorCode::RateLimited);
    for _ in 0..39 {
        assert!(matches!(c.hub.recv().await, Some(HubInput::Message(..))));
    }
    assert!(c.hub.try_recv().is_err(), "the 41st was dropped");
    // Half a second later, ten more.
    tokio::time::advance(Duration::from_millis(500)).await;
    for _ in 0..11 {
        c.text(r#"{"type":"create_room"}"#);
    }
    assert_eq!(c.error().await, ErrorCode::RateLimited);
    for _ in 0..10 {
        assert!(matches!(c.hub.recv().await, Some(HubInput::Message(..))));
    }
    assert!(c.hub.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_clean_close_is_answered_and_signs_out() {
    // 1000, 1001 (a page that closes) and a close without a code.
    for code in [Some(close_code::NORMAL), Some(close_code::AWAY), None] {
        let mut c = open().await;
        c.sign_in().await;
        c.close(code);
        assert_eq!(c.closed_with().await, code, "the close is answered");
        assert_eq!(c.ended().await, Closure::SignedOut, "{code:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn other_closes_and_drops_keep_the_session() {
    let mut c = open().await;
    c.sign_in().await;
    c.close(Some(4000));
    assert_eq!(c.closed_with().await, Some(4000), "the close is answered");
    assert_eq!(c.ended().await, Closure::Lost);
    // The socket drops without a close frame.
    let mut c = open().await;
    c.sign_in().await;
    c.frames.send(Err(ReadError::Broken)).expect("reads");
    assert!(c.replies.recv().await.is_none(), "nothing is sent");
    assert_eq!(c.ended().await, Closure::Lost);
}

#[tokio::test(start_paused = true)]
async fn the_hub_closes_a_replaced_connection_after_its_last_message() {
    let mut c = open().await;
    c.sign_in().await;
    let replaced = ServerMsg::Error {
        code: ErrorCode::Replaced,
        message: "signed in from another connection".into(),
    };
    c.outgoing
        .send(Outgoing::Msg(replaced.clone()))
        .expect("alive");
    c.outgoing.send(Outgoing::Close).expect("alive");
    assert_eq!(c.reply().await, text(&replaced));
    assert_eq!(c.closed_with().await, Some(close_code::NORMAL));
    c.close(Some(close_code::NORMAL));
    // The hub forgot this connection already: it hears only that it is gone.
    assert_eq!(c.ended().await, Closure::Lost);
}

#[test]
fn the_rate_limit_allows_bursts_of_twice_the_rate() {
    let t0 = Instant::now();
    let mut bucket = RateLimit::new(5, t0);
    assert_eq!((0..12).filter(|_| bucket.take(t0)).count(), 10);
    let t1 = t0 + Duration::from_millis(400);
    assert_eq!((0..5).filter(|_| bucket.take(t1)).count(), 2);
    // A long pause refills only the burst.
    let t2 = t1 + Duration::from_secs(60);
    assert_eq!((0..20).filter(|_| bucket.take(t2)).count(), 10);
}
