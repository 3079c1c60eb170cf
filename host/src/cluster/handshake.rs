//! The handshake of the agent channel, both sides (messages in
//! [`super::wire`]). Each side proves it holds the token without sending
//! it; on success both halves of the connection switch to authenticated
//! frames under the session key.

use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{self, SessionKey, Side, Token, constant_time_eq};
use super::frame::{FrameError, FrameReader, FrameWriter};
use super::wire::{AgentHello, AgentProof, DeciderChallenge, PROTOCOL, valid_name};

/// Why a handshake failed. The decider logs these with the peer's address;
/// the agent with the manager's.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Framing or I/O.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer speaks another protocol version.
    #[error("protocol version {theirs}, this build speaks {PROTOCOL}; run the same image on every node")]
    Protocol {
        /// The peer's version.
        theirs: u32,
    },
    /// A malformed node id, hostname, nonce or proof.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// The peer's proof does not match our token.
    #[error("the peer does not hold this cluster's token")]
    BadProof,
    /// Getting a nonce from the kernel failed.
    #[error("no random nonce: {0}")]
    Random(std::io::Error),
}

/// Who the agent says it is, once its proof checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Swarm node id.
    pub node_id: String,
    /// Hostname, for logs.
    pub hostname: String,
}

fn decode_nonce(hex_text: &str) -> Result<Vec<u8>, HandshakeError> {
    match hex::decode(hex_text) {
        Ok(bytes) if bytes.len() == auth::NONCE_LEN => Ok(bytes),
        _ => Err(HandshakeError::Malformed("nonce")),
    }
}

fn decode_proof(hex_text: &str) -> Result<Vec<u8>, HandshakeError> {
    match hex::decode(hex_text) {
        Ok(bytes) if bytes.len() == auth::MAC_LEN => Ok(bytes),
        _ => Err(HandshakeError::Malformed("proof")),
    }
}

/// The agent's side: announce `node_id`, check the decider's proof, send
/// ours. On return both halves are authenticated with frames up to
/// `max_frame` bytes.
pub async fn agent<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    token: &Token,
    node_id: &str,
    hostname: &str,
    max_frame: usize,
) -> Result<(), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce = auth::nonce().map_err(HandshakeError::Random)?;
    let hello = AgentHello {
        protocol: PROTOCOL,
        node_id: node_id.to_string(),
        hostname: hostname.to_string(),
        nonce: hex::encode(nonce),
    };
    writer.write(&hello).await?;
    let challenge: DeciderChallenge = reader.read().await?;
    if challenge.protocol != PROTOCOL {
        return Err(HandshakeError::Protocol { theirs: challenge.protocol });
    }
    let theirs = decode_nonce(&challenge.nonce)?;
    let expected = auth::proof(token, Side::Decider, &nonce, &theirs, node_id);
    if !constant_time_eq(&decode_proof(&challenge.proof)?, &expected) {
        return Err(HandshakeError::BadProof);
    }
    let proof = auth::proof(token, Side::Agent, &nonce, &theirs, node_id);
    writer.write(&AgentProof { proof: hex::encode(proof) }).await?;
    let key = SessionKey::derive(token, &nonce, &theirs, node_id);
    reader.authenticate(key.clone(), max_frame);
    writer.authenticate(key, max_frame);
    Ok(())
}

/// The decider's side: read the hello, prove we hold the token, check the
/// agent's proof. Nothing but the challenge is sent before the agent has
/// proven itself.
pub async fn decider<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    token: &Token,
    max_frame: usize,
) -> Result<Peer, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello: AgentHello = reader.read().await?;
    if hello.protocol != PROTOCOL {
        return Err(HandshakeError::Protocol { theirs: hello.protocol });
    }
    if !valid_name(&hello.node_id) {
        return Err(HandshakeError::Malformed("node id"));
    }
    if !valid_name(&hello.hostname) {
        return Err(HandshakeError::Malformed("hostname"));
    }
    let theirs = decode_nonce(&hello.nonce)?;
    let nonce = auth::nonce().map_err(HandshakeError::Random)?;
    let proof = auth::proof(token, Side::Decider, &theirs, &nonce, &hello.node_id);
    writer
        .write(&DeciderChallenge { protocol: PROTOCOL, nonce: hex::encode(nonce), proof: hex::encode(proof) })
        .await?;
    let answer: AgentProof = reader.read().await?;
    let expected = auth::proof(token, Side::Agent, &theirs, &nonce, &hello.node_id);
    if !constant_time_eq(&decode_proof(&answer.proof)?, &expected) {
        return Err(HandshakeError::BadProof);
    }
    let key = SessionKey::derive(token, &theirs, &nonce, &hello.node_id);
    reader.authenticate(key.clone(), max_frame);
    writer.authenticate(key, max_frame);
    Ok(Peer { node_id: hello.node_id, hostname: hello.hostname })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::DeciderMsg;

    fn token(text: &str) -> Token {
        Token::new(text.as_bytes()).expect("token")
    }

    /// Run both sides over an in-memory pipe.
    async fn run(
        agent_token: Token,
        decider_token: Token,
    ) -> (Result<(), HandshakeError>, Result<Peer, HandshakeError>) {
        let (a, d) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (dr, dw) = tokio::io::split(d);
        let agent_side = tokio::spawn(async move {
            let mut r = FrameReader::new(ar, Side::Decider);
            let mut w = FrameWriter::new(aw, Side::Agent);
            let result = agent(&mut r, &mut w, &agent_token, "node1", "host1", 1 << 20).await;
            if result.is_ok() {
                // The first authenticated frame must check out.
                let msg: DeciderMsg = r.read().await.expect("welcome");
                assert_eq!(msg, DeciderMsg::Welcome);
            }
            result
        });
        let mut r = FrameReader::new(dr, Side::Agent);
        let mut w = FrameWriter::new(dw, Side::Decider);
        let peer = decider(&mut r, &mut w, &decider_token, 1 << 20).await;
        if peer.is_ok() {
            w.write(&DeciderMsg::Welcome).await.expect("write welcome");
        }
        drop((r, w));
        (agent_side.await.expect("agent task"), peer)
    }

    #[tokio::test]
    async fn the_same_token_authenticates_both_sides() {
        let (agent_result, peer) = run(token("0123456789abcdef"), token("0123456789abcdef")).await;
        agent_result.expect("agent side");
        assert_eq!(peer.expect("decider side"), Peer { node_id: "node1".into(), hostname: "host1".into() });
    }

    #[tokio::test]
    async fn a_different_token_is_refused_by_the_agent_before_it_proves_anything() {
        let (agent_result, peer) = run(token("0123456789abcdef"), token("another token here")).await;
        assert!(matches!(agent_result, Err(HandshakeError::BadProof)), "{agent_result:?}");
        // The agent hung up instead of answering the challenge.
        assert!(matches!(peer, Err(HandshakeError::Frame(FrameError::Closed))), "{peer:?}");
    }

    #[tokio::test]
    async fn a_peer_without_the_token_gets_only_the_challenge() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut a, d) = tokio::io::duplex(1 << 16);
        let (dr, dw) = tokio::io::split(d);
        let decider_task = tokio::spawn(async move {
            let mut r = FrameReader::new(dr, Side::Agent);
            let mut w = FrameWriter::new(dw, Side::Decider);
            decider(&mut r, &mut w, &token("0123456789abcdef"), 1 << 20).await
        });
        let hello = AgentHello {
            protocol: PROTOCOL,
            node_id: "n1".into(),
            hostname: "h".into(),
            nonce: hex::encode([7u8; 32]),
        };
        let mut w = FrameWriter::new(&mut a, Side::Agent);
        w.write(&hello).await.expect("hello");
        w.write(&AgentProof { proof: hex::encode([0u8; 32]) }).await.expect("forged proof");
        let result = decider_task.await.expect("decider task");
        assert!(matches!(result, Err(HandshakeError::BadProof)), "{result:?}");
        // What came back: exactly one frame, the challenge, then nothing.
        a.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await.expect("read");
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(rest.len(), 4 + len, "only the challenge was sent");
        let challenge: DeciderChallenge = serde_json::from_slice(&rest[4..]).expect("a challenge");
        assert_eq!(challenge.protocol, PROTOCOL);
    }

    #[tokio::test]
    async fn malformed_hellos_are_refused() {
        for (node_id, nonce, what) in [("bad id", hex::encode([1u8; 32]), "node id"), ("n1", "zz".to_string(), "nonce")]
        {
            let (mut a, d) = tokio::io::duplex(1 << 16);
            let (dr, dw) = tokio::io::split(d);
            let task = tokio::spawn(async move {
                let mut r = FrameReader::new(dr, Side::Agent);
                let mut w = FrameWriter::new(dw, Side::Decider);
                decider(&mut r, &mut w, &token("0123456789abcdef"), 1 << 20).await
            });
            let hello = AgentHello { protocol: PROTOCOL, node_id: node_id.into(), hostname: "h".into(), nonce };
            FrameWriter::new(&mut a, Side::Agent).write(&hello).await.expect("hello");
            let result = task.await.expect("task");
            assert!(matches!(result, Err(HandshakeError::Malformed(w)) if w == what), "{result:?}");
        }
    }
}
