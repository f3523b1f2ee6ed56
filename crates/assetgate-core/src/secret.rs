//! Secrets as a type: redacted `Debug`, no `Display`/`Serialize`, wiped on drop.
//!
//! Each secret also carries its HMAC-SHA256 key schedule: the SHA-256 states
//! after the inner (`key ^ ipad`) and outer (`key ^ opad`) blocks, computed once
//! when the secret is loaded. An upload token's HMAC then starts from those
//! states ([`Secret::hmac_sha256`]) instead of hashing the two padded key blocks
//! again for every request: 2 compressions per token instead of 4 to 5 (the
//! payload of a granite token is at most one block in the common case). The
//! states are as secret as the key (they forge tags), so they are wiped on drop
//! like the key, and never shown. [`Mac`] is checked against the `hmac` crate
//! for keys and messages of every length that matters (unit tests below).

use std::fmt;

use sha2::digest::generic_array::GenericArray;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Shortest secret accepted from configuration.
pub const MIN_SECRET_LEN: usize = 16;

/// Whether `text` can be a secret from configuration (a secret file's line,
/// a TOML string, an environment variable); `Err` says why not, never showing
/// the text.
///
/// Secrets are text: granite-assets holds `secure_link_secret` and
/// `upload_secret` as `str` and signs with their UTF-8 bytes, and nginx's
/// `secure_link_md5` takes the link secret from its configuration file. A NUL
/// or another control character (C0, DEL, C1) cannot come from either: it means
/// a wrong file (a binary, a sparse file, a terminal escape pasted along), so
/// it is refused rather than becoming a secret nothing can ever match. A
/// byte-order mark is refused too (an editor's, invisible, it would be the
/// secret's first bytes). Spaces and other printable Unicode stay allowed:
/// both sides sign the same UTF-8 bytes.
pub fn check_text(text: &str) -> Result<(), &'static str> {
    if text.contains('\0') {
        return Err("contains a control character (a NUL byte): secrets are printable text, one per line");
    }
    if text.chars().any(char::is_control) {
        return Err("contains a control character: secrets are printable text, one per line");
    }
    if text.contains('\u{feff}') {
        return Err("contains a byte-order mark: save the file as UTF-8 without BOM");
    }
    Ok(())
}

/// One shared secret (HMAC key or secure_link secret).
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
    hmac: KeySchedule,
}

impl Secret {
    /// Wraps raw secret bytes (and computes its HMAC-SHA256 key schedule once).
    pub fn new(bytes: Vec<u8>) -> Self {
        let hmac = KeySchedule::new(&bytes);
        Secret {
            bytes: Zeroizing::new(bytes),
            hmac,
        }
    }

    /// The secret bytes, for the one place that feeds them to a MAC or digest.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A fresh HMAC-SHA256 under this secret, started from the precomputed
    /// padded-key states (no per-call key hashing).
    pub fn hmac_sha256(&self) -> Mac {
        Mac {
            state: self.hmac.inner,
            outer: self.hmac.outer,
            block: [0; BLOCK],
            filled: 0,
            // The inner key block is already in `state`.
            total: BLOCK as u64,
        }
    }

    /// A fresh random secret of `len` bytes of entropy, as URL-safe text.
    pub fn generate(len: usize) -> Self {
        use base64::Engine as _;
        let mut raw = Zeroizing::new(vec![0u8; len]);
        getrandom::getrandom(&mut raw).expect("the OS random source is available");
        Secret::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&*raw)
                .into_bytes(),
        )
    }
}

/// Constant-time in the bytes (`subtle`), so comparing configurations (a
/// reload) says nothing about a secret through timing; the length is not
/// secret.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.as_slice().ct_eq(other.bytes.as_slice()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted, {} bytes>)", self.bytes.len())
    }
}

/// SHA-256's block size.
const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

/// The SHA-256 states after the inner and outer padded key blocks of HMAC.
#[derive(Clone)]
struct KeySchedule {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl KeySchedule {
    /// RFC 2104: a key longer than a block is hashed first, then zero-padded.
    fn new(key: &[u8]) -> Self {
        let mut k = Zeroizing::new([0u8; BLOCK]);
        if key.len() > BLOCK {
            use sha2::Digest as _;
            let mut digest = sha2::Sha256::digest(key);
            k[..32].copy_from_slice(&digest);
            digest.zeroize();
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut pad = Zeroizing::new([0u8; BLOCK]);
        let mut schedule = KeySchedule {
            inner: SHA256_IV,
            outer: SHA256_IV,
        };
        for (p, b) in pad.iter_mut().zip(k.iter()) {
            *p = b ^ 0x36;
        }
        compress(&mut schedule.inner, &pad[..]);
        for (p, b) in pad.iter_mut().zip(k.iter()) {
            *p = b ^ 0x5c;
        }
        compress(&mut schedule.outer, &pad[..]);
        schedule
    }
}

impl Drop for KeySchedule {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

/// A running HMAC-SHA256 (from [`Secret::hmac_sha256`]). Wiped on drop.
pub struct Mac {
    /// The inner hash's running state.
    state: [u32; 8],
    /// The outer hash's state after the key block.
    outer: [u32; 8],
    /// Bytes not yet compressed.
    block: [u8; BLOCK],
    filled: usize,
    /// Bytes hashed by the inner hash, key block included.
    total: u64,
}

impl Mac {
    /// Feeds message bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.filled > 0 {
            let take = (BLOCK - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < BLOCK {
                return;
            }
            compress(&mut self.state, &self.block);
            self.filled = 0;
        }
        let mut blocks = data.chunks_exact(BLOCK);
        for b in &mut blocks {
            compress(&mut self.state, b);
        }
        let rest = blocks.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The tag.
    pub fn finalize(mut self) -> [u8; 32] {
        let inner = finish(&mut self.state, &mut self.block, self.filled, self.total);
        self.block[..32].copy_from_slice(&inner);
        finish(&mut self.outer, &mut self.block, 32, (BLOCK + 32) as u64)
    }

    /// Whether the tag equals `expected`, compared in constant time.
    pub fn verify(self, expected: &[u8; 32]) -> subtle::Choice {
        self.finalize().ct_eq(expected)
    }
}

/// SHA-256's final padding: `0x80`, zeros, the length in bits; returns the digest.
fn finish(state: &mut [u32; 8], block: &mut [u8; BLOCK], filled: usize, total: u64) -> [u8; 32] {
    block[filled] = 0x80;
    block[filled + 1..].fill(0);
    if filled + 1 > BLOCK - 8 {
        compress(state, &block[..]);
        block.fill(0);
    }
    block[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
    compress(state, &block[..]);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state.iter()) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

impl Drop for Mac {
    fn drop(&mut self) {
        self.state.zeroize();
        self.outer.zeroize();
        self.block.zeroize();
    }
}

/// The accepted secrets of one trust boundary, newest first (rotation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretSet(Vec<Secret>);

#[cfg(any(test, feature = "testing"))]
impl SecretSet {
    /// Unit tests' secrets, from text, newest first (one helper for every
    /// module's tests).
    pub fn from_texts(secrets: &[&str]) -> Self {
        SecretSet(
            secrets
                .iter()
                .map(|s| Secret::new(s.as_bytes().to_vec()))
                .collect(),
        )
    }
}

impl SecretSet {
    /// A set from secrets ordered newest first.
    pub fn new(secrets: Vec<Secret>) -> Self {
        SecretSet(secrets)
    }

    /// The secret new tokens are signed with.
    pub fn newest(&self) -> Option<&Secret> {
        self.0.first()
    }

    /// All accepted secrets, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// Number of secrets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no secret is configured (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(b"super-secret-value-123".to_vec());
        let shown = format!("{:?}", SecretSet::new(vec![s]));
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn hmac_matches_the_hmac_crate() {
        use hmac::{Hmac, Mac as _};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        // Keys around the block size (hashed above 64 bytes), messages around
        // every padding boundary (55/56/64 bytes of a block), fed whole and in
        // random pieces.
        for key_len in (0..=70).chain([100, 128, 129, 200]) {
            let key: Vec<u8> = (0..key_len).map(|_| rng.gen()).collect();
            let secret = Secret::new(key.clone());
            for msg_len in (0..=140).chain([191, 192, 193, 1000]) {
                let msg: Vec<u8> = (0..msg_len).map(|_| rng.gen()).collect();
                let mut want = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
                want.update(&msg);
                let want: [u8; 32] = want.finalize().into_bytes().into();
                let mut whole = secret.hmac_sha256();
                whole.update(&msg);
                assert_eq!(whole.finalize(), want, "key {key_len}, msg {msg_len}");
                let mut pieces = secret.hmac_sha256();
                let mut rest = &msg[..];
                while !rest.is_empty() {
                    let n = rng.gen_range(0..=rest.len().min(70));
                    pieces.update(&rest[..n]);
                    rest = &rest[n..];
                }
                let mut wrong = want;
                wrong[31] ^= 1;
                let mut again = secret.hmac_sha256();
                again.update(&msg);
                assert!(bool::from(pieces.verify(&want)), "key {key_len}, msg {msg_len}");
                assert!(!bool::from(again.verify(&wrong)));
            }
        }
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231, test case 2.
        let mut m = Secret::new(b"Jefe".to_vec()).hmac_sha256();
        m.update(b"what do ya want ");
        m.update(b"for nothing?");
        assert_eq!(
            hex::encode(m.finalize()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_are_printable_text() {
        for good in [
            "link-secret-0123456789",
            "with spaces inside it",
            "non-ASCII: clé secrète ü 秘密",
            "punctuation !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        ] {
            assert_eq!(check_text(good), Ok(()), "{good:?}");
        }
        for bad in [
            "nul-\0-inside-0123456789",
            "escape-\x1b[0m-0123456789",
            "tab-\t-inside-0123456789",
            "del-\x7f-0123456789",
            "c1-\u{85}-0123456789",
            "\u{feff}bom-first-0123456789",
        ] {
            let why = check_text(bad).unwrap_err();
            assert!(!why.contains("0123456789"), "{why}");
        }
        assert!(check_text("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn generated_secrets_differ_and_are_long_enough() {
        let a = Secret::generate(32);
        let b = Secret::generate(32);
        assert!(a.len() >= MIN_SECRET_LEN);
        assert_ne!(a.expose(), b.expose());
    }
}
