//! Framing: how messages travel over one TCP connection.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes: a
//! JSON message, and after the handshake a 32-byte MAC of it (see
//! [`super::auth::SessionKey::frame_mac`]) under the session key, over the
//! writer's side and the frame's sequence number. The length is checked
//! against a cap before anything is allocated: a peer cannot make the
//! reader buffer more than one capped frame. Handshake frames have a small
//! cap of their own ([`HANDSHAKE_MAX_FRAME`]), so a peer that has not
//! authenticated costs at most a few KiB and a few seconds.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{MAC_LEN, SessionKey, Side, constant_time_eq};

/// Largest frame before authentication.
pub const HANDSHAKE_MAX_FRAME: usize = 4 * 1024;

/// Largest frame after authentication by default: room for a tracking set
/// of a few thousand containers or a batch of events.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// Why a frame could not be read or written. Every variant ends the
/// connection: after any of them the two sides no longer agree on where
/// the next frame starts or on its sequence number.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection between two frames.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer announced a frame above the cap (or we tried to write one).
    #[error("frame of {len} bytes is over the {max}-byte cap")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The frame's MAC is wrong: not written by a holder of the token for
    /// this session, altered, replayed or reordered.
    #[error("frame failed authentication (wrong token, or altered, replayed or reordered)")]
    BadMac,
    /// The frame is not a message of the protocol.
    #[error("malformed message: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The reading half of a connection.
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The socket half.
    inner: R,
    /// Set once the handshake succeeded: every later frame must carry a MAC.
    key: Option<SessionKey>,
    /// Who writes the frames this half reads (part of the MAC).
    peer: Side,
    /// Sequence number of the next authenticated frame.
    seq: u64,
    /// Cap on one frame's length.
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader for the handshake: no MAC yet, small frames only.
    pub fn new(inner: R, peer: Side) -> Self {
        FrameReader { inner, key: None, peer, seq: 0, max: HANDSHAKE_MAX_FRAME }
    }

    /// From now on, require a MAC under `key` on every frame, up to `max`
    /// bytes each.
    pub fn authenticate(&mut self, key: SessionKey, max: usize) {
        self.key = Some(key);
        self.max = max;
    }

    /// Read one frame and decode it.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        let mut len = [0u8; 4];
        match self.inner.read_exact(&mut len).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(err) => return Err(err.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body).await?;
        let payload = match &self.key {
            None => &body[..],
            Some(key) => {
                let Some(split) = len.checked_sub(MAC_LEN) else { return Err(FrameError::BadMac) };
                let (payload, mac) = body.split_at(split);
                if !constant_time_eq(mac, &key.frame_mac(self.peer, self.seq, payload)) {
                    return Err(FrameError::BadMac);
                }
                self.seq += 1;
                payload
            }
        };
        Ok(serde_json::from_slice(payload)?)
    }
}

/// The writing half of a connection.
#[derive(Debug)]
pub struct FrameWriter<W> {
    /// The socket half.
    inner: W,
    /// Set once the handshake succeeded.
    key: Option<SessionKey>,
    /// Who we are (part of the MAC).
    side: Side,
    /// Sequence number of the next authenticated frame.
    seq: u64,
    /// Cap on one frame's length: the peer would refuse a longer one.
    max: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer for the handshake.
    pub fn new(inner: W, side: Side) -> Self {
        FrameWriter { inner, key: None, side, seq: 0, max: HANDSHAKE_MAX_FRAME }
    }

    /// From now on, MAC every frame under `key`, up to `max` bytes each.
    pub fn authenticate(&mut self, key: SessionKey, max: usize) {
        self.key = Some(key);
        self.max = max;
    }

    /// Encode `message` and write it as one frame.
    pub async fn write<T: Serialize>(&mut self, message: &T) -> Result<(), FrameError> {
        let frame = self.encode(message)?;
        self.inner.write_all(&frame).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// The bytes of one frame (length, payload, MAC); advances the sequence.
    fn encode<T: Serialize>(&mut self, message: &T) -> Result<Vec<u8>, FrameError> {
        let mut frame = vec![0u8; 4];
        serde_json::to_writer(&mut frame, message)?;
        if let Some(key) = &self.key {
            let mac = key.frame_mac(self.side, self.seq, &frame[4..]);
            frame.extend_from_slice(&mac);
            self.seq += 1;
        }
        let len = frame.len() - 4;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(frame)
    }

    /// Shut the write side down (the peer reads a clean close).
    pub async fn shutdown(&mut self) {
        let _ = self.inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::Token;

    fn key() -> SessionKey {
        SessionKey::derive(&Token::new(b"0123456789abcdef").expect("token"), b"a", b"d", "n1")
    }

    #[tokio::test]
    async fn frames_round_trip_before_and_after_authentication() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut writer = FrameWriter::new(a, Side::Agent);
        let mut reader = FrameReader::new(b, Side::Agent);
        writer.write(&"hello").await.expect("write");
        assert_eq!(reader.read::<String>().await.expect("read"), "hello");
        writer.authenticate(key(), 1024);
        reader.authenticate(key(), 1024);
        for i in 0..3u32 {
            writer.write(&i).await.expect("write");
            assert_eq!(reader.read::<u32>().await.expect("read"), i);
        }
        drop(writer);
        assert!(matches!(reader.read::<u32>().await, Err(FrameError::Closed)));
    }

    #[tokio::test]
    async fn an_announced_length_over_the_cap_is_refused_before_reading_it() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(b, Side::Agent);
        // 4 GiB announced, nothing sent: the reader must not wait for it.
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        let err = reader.read::<String>().await.expect_err("over the cap");
        assert!(matches!(err, FrameError::TooLarge { max: HANDSHAKE_MAX_FRAME, .. }), "{err}");
    }

    #[tokio::test]
    async fn a_writer_refuses_a_frame_the_peer_would_refuse() {
        let (a, _b) = tokio::io::duplex(64);
        let mut writer = FrameWriter::new(a, Side::Agent);
        let err = writer.write(&"x".repeat(HANDSHAKE_MAX_FRAME)).await.expect_err("too large");
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn altered_replayed_reflected_or_unkeyed_frames_fail_authentication() {
        let encode = |seq_skip: u64, side: Side, k: SessionKey| {
            let mut w = FrameWriter::new(tokio::io::sink(), side);
            w.authenticate(k, 1024);
            for _ in 0..seq_skip {
                w.encode(&0u32).expect("encode");
            }
            w.encode(&42u32).expect("encode")
        };
        let read = |bytes: Vec<u8>| async move {
            let mut r = FrameReader::new(&bytes[..], Side::Agent);
            r.authenticate(key(), 1024);
            r.read::<u32>().await
        };
        assert_eq!(read(encode(0, Side::Agent, key())).await.expect("good frame"), 42);
        // A flipped payload byte.
        let mut altered = encode(0, Side::Agent, key());
        altered[4] ^= 1;
        assert!(matches!(read(altered).await, Err(FrameError::BadMac)));
        // A frame from later in the session (sequence 1 read as 0).
        assert!(matches!(read(encode(1, Side::Agent, key())).await, Err(FrameError::BadMac)));
        // The decider's own frame sent back to it.
        assert!(matches!(read(encode(0, Side::Decider, key())).await, Err(FrameError::BadMac)));
        // Another session's key.
        let other = SessionKey::derive(&Token::new(b"0123456789abcdef").expect("token"), b"b", b"d", "n1");
        assert!(matches!(read(encode(0, Side::Agent, other)).await, Err(FrameError::BadMac)));
        // No MAC at all.
        let mut plain = FrameWriter::new(tokio::io::sink(), Side::Agent);
        assert!(matches!(read(plain.encode(&42u32).expect("encode")).await, Err(FrameError::BadMac)));
    }
}
