//! Steps that many tests share.

use std::sync::Arc;
use std::time::Duration;

use chorus_signaling::protocol::{CallMedia, ClientMsg, ServerMsg};

use crate::peer::{Peer, PeerConfig};
use crate::signal::{Client, Error};

const T: Duration = Duration::from_secs(10);

/// `caller` rings `callee`, who accepts; returns once both are in the room,
/// with the room id.
pub async fn call_accepted(
    caller: &mut Client,
    callee: &mut Client,
    media: CallMedia,
) -> Result<String, Error> {
    let room_id = ring(caller, callee, media).await?;
    accept(caller, callee, &room_id).await?;
    Ok(room_id)
}

/// `caller` rings `callee`; returns the room id once the callee is rung.
pub async fn ring(
    caller: &mut Client,
    callee: &mut Client,
    media: CallMedia,
) -> Result<String, Error> {
    caller.send(&ClientMsg::Call {
        e2ee: None,
        to: callee.user_id.clone(),
        media,
    })?;
    let ServerMsg::IncomingCall { room_id, .. } = callee
        .recv_until(T, |m| matches!(m, ServerMsg::IncomingCall { .. }))
        .await?
    else {
        unreachable!("filtered above")
    };
    Ok(room_id)
}

/// `callee` accepts the ringing call in `room`; returns once both are in
/// the room.
pub async fn accept(caller: &mut Client, callee: &mut Client, room: &str) -> Result<(), Error> {
    callee.send(&ClientMsg::Accept {
        room_id: room.to_string(),
    })?;
    for c in [caller, callee] {
        c.recv_until(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
            .await?;
    }
    Ok(())
}

/// Creates a room (`room` None) or joins `room`; returns the room's id once
/// joined.
pub async fn join_room(client: &mut Client, room: Option<&str>) -> Result<String, Error> {
    client.send(&match room {
        None => ClientMsg::CreateRoom { e2ee: None },
        Some(r) => ClientMsg::JoinRoom {
            room_id: r.to_string(),
        },
    })?;
    let ServerMsg::RoomJoined { room_id, .. } = client
        .reply(T, |m| matches!(m, ServerMsg::RoomJoined { .. }))
        .await?
    else {
        unreachable!("filtered above")
    };
    match room {
        Some(r) if room_id != r => {
            Err(format!("{}: joined {room_id}, not {r}", client.name).into())
        }
        _ => Ok(room_id),
    }
}

/// A peer publishing a tone of `tone_hz` and video frames numbered from
/// `video_seq_base`.
pub async fn tone_peer(name: &str, tone_hz: f32, video_seq_base: u32) -> Result<Arc<Peer>, Error> {
    Ok(Arc::new(
        Peer::new(PeerConfig {
            name: name.into(),
            tone_hz: Some(tone_hz),
            video: true,
            video_seq_base,
            keyframe_interval: None,
        })
        .await?,
    ))
}

/// Both peers publish into `room` through their clients, connect, and start
/// sending media.
pub async fn publish_pair(
    (a, pa): (&mut Client, &Arc<Peer>),
    (b, pb): (&mut Client, &Arc<Peer>),
    room: &str,
) -> Result<(), Error> {
    let (ra, rb) = tokio::join!(a.publish(room, pa.clone()), b.publish(room, pb.clone()));
    ra?;
    rb?;
    pa.wait_connected(T).await?;
    pb.wait_connected(T).await?;
    pa.start_media();
    pb.start_media();
    Ok(())
}
