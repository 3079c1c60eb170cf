//! The shared token and what is built on it: HMAC-SHA256, constant-time
//! comparison, nonces, and the key of one session.
//!
//! The token never crosses the wire. Each side proves it knows the token
//! by a MAC over both sides' fresh nonces (see [`super::frame`] for the
//! handshake), and every frame after the handshake carries a MAC under a
//! key derived from the token and those nonces: a peer without the token
//! can neither join nor inject into, replay or reorder a session. Frames
//! are authenticated, not encrypted: put the swarm's data plane on an
//! encrypted network if the measurements themselves are secret.
//!
//! Trust model: the token is per deployment, not per node. Any holder of
//! it is trusted to speak for the node id it announces (a node's secret
//! mount is as good as its engine socket, which the task also holds).

use std::path::{Path, PathBuf};

use crate::secret::fill_random;
pub use crate::secret::{constant_time_eq, hmac};

/// Where a Docker secret named `autoscaler_token` is mounted in a task.
pub const DEFAULT_TOKEN_FILE: &str = "/run/secrets/autoscaler_token";

/// Fewest bytes a token may have: 16 random bytes, or 32 hex digits.
pub const MIN_TOKEN_LEN: usize = 16;

/// Most bytes read from a token file; a token is short.
const MAX_TOKEN_LEN: usize = 4096;

/// Length of a MAC and of a session key.
pub const MAC_LEN: usize = 32;

/// Length of a handshake nonce.
pub const NONCE_LEN: usize = 32;

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read.
    #[error(
        "cannot read the cluster token from {path} ({source}); create a docker secret (`openssl rand -hex 32 | docker secret create autoscaler_token -`) and grant it to the service, or point --cluster-token-file at a file"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token is too short to resist guessing.
    #[error("the cluster token in {path} has {len} bytes, fewer than {MIN_TOKEN_LEN}; use `openssl rand -hex 32`")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length after trimming.
        len: usize,
    },
    /// The file is too large to be a token.
    #[error("{path} is larger than {MAX_TOKEN_LEN} bytes; a cluster token is one line")]
    TooLong {
        /// The file.
        path: PathBuf,
    },
}

/// The secret every node of one deployment shares. Its bytes are never
/// printed (`Debug` shows only the length).
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({} bytes)", self.0.len())
    }
}

impl Token {
    /// A token from bytes; surrounding whitespace (a trailing newline from
    /// `echo` or `openssl rand -hex`) is not part of it.
    pub fn new(bytes: &[u8]) -> Result<Token, usize> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_TOKEN_LEN {
            return Err(trimmed.len());
        }
        Ok(Token(trimmed.to_vec()))
    }

    /// Read a token from a file (a Docker secret or any file only the
    /// daemon can read).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        use std::io::Read;
        let read = |source| TokenError::Read { path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(MAX_TOKEN_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { path: path.to_path_buf() });
        }
        Token::new(&bytes).map_err(|len| TokenError::TooShort { path: path.to_path_buf(), len })
    }

    /// HMAC-SHA256 under the token of the concatenated `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        hmac(&self.0, parts)
    }
}

/// A fresh random nonce from the kernel (getrandom(2)).
pub fn nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    let mut buf = [0u8; NONCE_LEN];
    fill_random(&mut buf)?;
    Ok(buf)
}

/// Which side wrote a frame: part of every frame MAC, so a frame cannot be
/// reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The node that measures and forwards.
    Agent,
    /// The leader that decides.
    Decider,
}

impl Side {
    fn tag(self) -> &'static [u8] {
        match self {
            Side::Agent => b"agent",
            Side::Decider => b"decider",
        }
    }
}

/// The proof that `side` knows the token, bound to both nonces and the
/// agent's node id: a proof is good for one handshake only.
pub fn proof(token: &Token, side: Side, agent_nonce: &[u8], decider_nonce: &[u8], node_id: &str) -> [u8; MAC_LEN] {
    token.mac(&[b"swarm-autoscaler proof ", side.tag(), agent_nonce, decider_nonce, node_id.as_bytes()])
}

/// The key that authenticates one session's frames.
#[derive(Clone)]
pub struct SessionKey([u8; MAC_LEN]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// Derive the session key from the token and the handshake's nonces.
    pub fn derive(token: &Token, agent_nonce: &[u8], decider_nonce: &[u8], node_id: &str) -> SessionKey {
        SessionKey(token.mac(&[b"swarm-autoscaler session ", agent_nonce, decider_nonce, node_id.as_bytes()]))
    }

    /// The MAC of frame number `seq` written by `side`.
    pub fn frame_mac(&self, side: Side, seq: u64, payload: &[u8]) -> [u8; MAC_LEN] {
        hmac(&self.0, &[side.tag(), &seq.to_be_bytes(), payload])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe".
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        let key = [0xaau8; 131];
        let mac = hmac(&key, &[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens_are_trimmed_and_must_be_long_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").expect("write");
        let token = Token::from_file(&path).expect("a good token");
        assert_eq!(format!("{token:?}"), "Token(32 bytes)", "the bytes are never printed");

        std::fs::write(&path, "short\n").expect("write");
        let err = Token::from_file(&path).expect_err("too short");
        assert!(matches!(err, TokenError::TooShort { len: 5, .. }), "{err}");

        let err = Token::from_file(&dir.path().join("absent")).expect_err("no file");
        assert!(err.to_string().contains("docker secret create autoscaler_token"), "{err}");

        std::fs::write(&path, vec![b'a'; MAX_TOKEN_LEN + 1]).expect("write");
        assert!(matches!(Token::from_file(&path), Err(TokenError::TooLong { .. })));
    }

    #[test]
    fn proofs_bind_side_nonces_and_node() {
        let token = Token::new(b"0123456789abcdef").expect("token");
        let other = Token::new(b"fedcba9876543210").expect("token");
        let base = proof(&token, Side::Agent, b"a", b"d", "n1");
        assert_ne!(base, proof(&token, Side::Decider, b"a", b"d", "n1"));
        assert_ne!(base, proof(&token, Side::Agent, b"b", b"d", "n1"));
        assert_ne!(base, proof(&token, Side::Agent, b"a", b"e", "n1"));
        assert_ne!(base, proof(&token, Side::Agent, b"a", b"d", "n2"));
        assert_ne!(base, proof(&other, Side::Agent, b"a", b"d", "n1"));
        assert_ne!(nonce().expect("nonce"), nonce().expect("nonce"));
    }
}
