//! Signed notes and checkpoints: the C2SP `signed-note` format with Ed25519
//! keys, and the C2SP `tlog-checkpoint` body, as `golang.org/x/mod/sumdb/note`
//! writes and reads them.
//!
//! A signed note is a text, a blank line, and one or more signature lines:
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//!
//! — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature)>
//! ```
//!
//! The signature covers the text exactly, final newline included. A key is
//! named, and identified by its name and a 32-bit key ID, the first four bytes
//! of `SHA-256(name || "\n" || 0x01 || public key)`. Keys travel as text:
//! `<name>+<key ID as 8 hex digits>+<base64(0x01 || public key)>` for a
//! verifier, and `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 || seed)>` for a
//! signer.
//!
//! Parsing is strict: every input that is not exactly of the form is refused
//! with an error that names the line and the rule, and no input panics.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::Hash;

/// The signature type byte of Ed25519 in the signed-note format.
const ALG_ED25519: u8 = 0x01;
/// The start of a signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The start of a signer key, which keeps it apart from a verifier key.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";
/// The most signature lines a note may have, as in the Go implementation.
const MAX_SIGNATURES: usize = 100;
/// How many characters of an offending input an error message quotes.
const QUOTE_CHARS: usize = 40;

/// A checkpoint: the origin of the log, the tree size and the root hash
/// (C2SP tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The identity of the log, conventionally the name of its signing key.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root hash of the tree of `size` leaves.
    pub root: Hash,
    /// The extension lines, without their newlines; usually none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Returns the checkpoint of the tree of `size` leaves with root `root`,
    /// without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note body: "<origin>\n<size>\n<base64 root>\n" then each
    /// extension line + "\n".
    ///
    /// [`Checkpoint::parse_body`] reads the body back to the same checkpoint
    /// when the origin is non-empty and the origin and the extension lines are
    /// non-empty single lines without control characters.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Strict parse of a body (no signatures). Errors name the line and what
    /// is wrong.
    ///
    /// The body is at least three lines, each ending in a newline: a non-empty
    /// origin, the tree size in decimal without sign or leading zeros (`0` for
    /// the empty tree), and the standard base64 of a 32-byte root hash. Any
    /// further lines are extension lines, which must be non-empty. No line may
    /// hold a control character.
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let malformed =
            |line: usize, reason: String| NoteError::MalformedCheckpoint { line, reason };
        if body.is_empty() {
            return Err(malformed(
                1,
                "the body is empty, but a checkpoint needs an origin, a tree size and a root hash line"
                    .to_owned(),
            ));
        }
        check_control_characters(body).map_err(|(line, reason)| malformed(line, reason))?;
        let Some(content) = body.strip_suffix('\n') else {
            return Err(malformed(
                last_line(body),
                "the last line does not end in a newline".to_owned(),
            ));
        };

        let mut lines = content.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed(1, "the origin line is empty".to_owned()));
        }
        let size = lines
            .next()
            .ok_or_else(|| malformed(2, "the tree size line is missing".to_owned()))?;
        let size = parse_size(size).map_err(|reason| malformed(2, reason))?;
        let root = lines
            .next()
            .ok_or_else(|| malformed(3, "the root hash line is missing".to_owned()))?;
        let root = parse_root(root).map_err(|reason| malformed(3, reason))?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(malformed(4 + i, "an extension line is empty".to_owned()));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

fn parse_size(line: &str) -> Result<u64, String> {
    if line.is_empty() {
        return Err("the tree size line is empty".to_owned());
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the tree size {} is not a decimal number",
            quoted(line)
        ));
    }
    if line.len() > 1 && line.starts_with('0') {
        return Err(format!("the tree size {} has a leading zero", quoted(line)));
    }
    line.parse()
        .map_err(|_| format!("the tree size {} does not fit in 64 bits", quoted(line)))
}

fn parse_root(line: &str) -> Result<Hash, String> {
    if line.is_empty() {
        return Err("the root hash line is empty".to_owned());
    }
    let bytes = BASE64
        .decode(line)
        .map_err(|_| format!("the root hash {} is not standard base64", quoted(line)))?;
    <Hash>::try_from(bytes.as_slice())
        .map_err(|_| format!("the root hash is {} bytes, expected 32", bytes.len()))
}

/// Which kind of key a key error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A signer (private) key, `PRIVATE+KEY+<name>+<key ID>+<key>`.
    Signer,
    /// A verifier (public) key, `<name>+<key ID>+<key>`.
    Verifier,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Signer => "signer key",
            KeyKind::Verifier => "verifier key",
        })
    }
}

/// The error of parsing or opening a note, a checkpoint or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name is empty, or holds whitespace, a plus sign or a control
    /// character.
    #[error("the key name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A signer or verifier key string is not of its form.
    #[error("the {kind} is malformed: {reason}")]
    MalformedKey {
        /// Which kind of key.
        kind: KeyKind,
        /// What is wrong with it. It never quotes the key data.
        reason: String,
    },
    /// A key is of a signature type other than Ed25519.
    #[error(
        "the {kind} has signature type {algorithm:#04x}, but only Ed25519 (0x01) is supported"
    )]
    UnsupportedAlgorithm {
        /// Which kind of key.
        kind: KeyKind,
        /// The signature type byte of the key.
        algorithm: u8,
    },
    /// The key ID written in a key string is not the ID of the key.
    #[error("the {kind} {name:?} states key ID {stated:08x}, but its key has ID {computed:08x}")]
    KeyIdMismatch {
        /// Which kind of key.
        kind: KeyKind,
        /// The key name.
        name: String,
        /// The key ID the string states.
        stated: u32,
        /// The key ID computed from the name and the key.
        computed: u32,
    },
    /// A signed note, or a text to sign, breaks the signed-note format.
    #[error("the note is malformed at line {line}: {reason}")]
    MalformedNote {
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint body breaks the tlog-checkpoint format.
    #[error("the checkpoint body is malformed at line {line}: {reason}")]
    MalformedCheckpoint {
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// No signature line of the note is by the key of the verifier.
    #[error("the note has no signature by the key {name}+{key_id:08x}")]
    NotSigned {
        /// The name of the verifier key.
        name: String,
        /// The ID of the verifier key.
        key_id: u32,
    },
    /// A signature line by the key of the verifier does not verify.
    #[error(
        "the signature on line {line} by the key {name}+{key_id:08x} is invalid: \
         the text was altered, or the signature was not made with this key"
    )]
    InvalidSignature {
        /// The line of the signature, counted from 1.
        line: usize,
        /// The name of the verifier key.
        name: String,
        /// The ID of the verifier key.
        key_id: u32,
    },
    /// The origin of a checkpoint is not the name of the key that signed it.
    #[error("the checkpoint origin {} is not the verifier key name {name:?}", quoted(.origin))]
    OriginMismatch {
        /// The origin line of the checkpoint.
        origin: String,
        /// The name of the verifier key.
        name: String,
    },
}

/// An Ed25519 note signing key with its name (the checkpoint origin is
/// conventionally the key name).
///
/// Its `Debug` output shows the name and key ID only, never the secret.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// Generates a new key named `name`, from the operating system's random
    /// number generator.
    ///
    /// The name must be non-empty, and hold no whitespace, no plus sign and
    /// no control character.
    pub fn generate(name: &str) -> Result<NoteSigner, NoteError> {
        check_name(name).map_err(|reason| NoteError::InvalidName {
            name: name.to_owned(),
            reason,
        })?;
        Ok(NoteSigner::from_key(name, SigningKey::generate(&mut OsRng)))
    }

    /// Parses a signer key,
    /// `PRIVATE+KEY+<name>+<hex8 key ID>+<base64(0x01 || 32-byte seed)>`,
    /// with surrounding whitespace trimmed. The key ID must be the one of the
    /// key. Errors never quote the key data.
    pub fn parse(text: &str) -> Result<NoteSigner, NoteError> {
        let kind = KeyKind::Signer;
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or_else(|| NoteError::MalformedKey {
                kind,
                reason: format!("it does not start with {PRIVATE_KEY_PREFIX:?}"),
            })?;
        let fields = KeyFields::parse(kind, rest)?;
        let signer = NoteSigner::from_key(fields.name, SigningKey::from_bytes(&fields.key));
        if signer.key_id != fields.key_id {
            return Err(NoteError::KeyIdMismatch {
                kind,
                name: signer.name,
                stated: fields.key_id,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    fn from_key(name: &str, key: SigningKey) -> NoteSigner {
        NoteSigner {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        }
    }

    /// Returns the signer key text, in the form [`NoteSigner::parse`] reads.
    /// It holds the secret key.
    pub fn to_text(&self) -> String {
        let mut data = Wiped(Vec::with_capacity(33));
        data.0.push(ALG_ED25519);
        data.0.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(&data.0)
        )
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns the verifier of this key's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs a checkpoint of (self.name(), size, root) and returns the full
    /// signed note text.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> String {
        // A valid key name is a valid origin, so the body is always valid.
        self.sign_valid_text(&Checkpoint::new(self.name.as_str(), size, *root).to_body())
    }

    /// Signs an arbitrary note body (must end in "\n"), returns body + "\n" +
    /// signature line(s).
    ///
    /// The body must be non-empty, hold no control character other than
    /// newline, and not end with an empty line (which would make two blank
    /// lines before the signature): [`open_note`] accepts every note this
    /// returns.
    pub fn sign_note(&self, body: &str) -> Result<String, NoteError> {
        check_text(body)?;
        Ok(self.sign_valid_text(body))
    }

    fn sign_valid_text(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + Signature::BYTE_SIZE);
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(blob)
        )
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A verifier key: "<name>+<hex8 keyid>+<base64(0x01 || 32-byte public key)>".
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key,
    /// `<name>+<hex8 key ID>+<base64(0x01 || 32-byte public key)>`, with
    /// surrounding whitespace trimmed.
    ///
    /// The key ID must be the one of the key, and the key must be a
    /// canonically encoded Ed25519 point that is not of small order (such a
    /// key would accept forged signatures).
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let kind = KeyKind::Verifier;
        let fields = KeyFields::parse(kind, text.trim())?;
        let computed = key_id(fields.name, &fields.key);
        if computed != fields.key_id {
            return Err(NoteError::KeyIdMismatch {
                kind,
                name: fields.name.to_owned(),
                stated: fields.key_id,
                computed,
            });
        }
        let malformed = |reason: &str| NoteError::MalformedKey {
            kind,
            reason: reason.to_owned(),
        };
        let key = VerifyingKey::from_bytes(&fields.key)
            .map_err(|_| malformed("the public key is not an Ed25519 curve point"))?;
        if key.to_edwards().compress().to_bytes() != fields.key {
            return Err(malformed("the public key is not canonically encoded"));
        }
        if key.is_weak() {
            return Err(malformed("the public key is a point of small order"));
        }
        Ok(NoteVerifier {
            name: fields.name.to_owned(),
            key_id: fields.key_id,
            key,
        })
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

impl fmt::Display for NoteVerifier {
    /// Writes the verifier key string, in the form [`NoteVerifier::parse`]
    /// reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = [0; 33];
        data[0] = ALG_ED25519;
        data[1..].copy_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(data)
        )
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NoteVerifier")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// Opens a signed note: checks that at least one signature line is by
/// `verifier` (name and key id match) and is valid; signatures by other keys
/// are ignored (as in the spec); returns the body text.
///
/// Every signature line by `verifier` must be valid, and the whole note must
/// be well formed, other keys' signature lines included: valid UTF-8 (a
/// `&str`), no control character other than newline, a non-empty text that
/// ends in a newline and not with an empty line, exactly one blank line, then
/// 1 to 100 signature lines `— <name> <base64 of at least 5 bytes>`, each
/// ending in a newline.
pub fn open_note(note: &str, verifier: &NoteVerifier) -> Result<String, NoteError> {
    let (text, signatures) = split_note(note)?;
    let mut verified = false;
    let ours = signatures
        .iter()
        .filter(|s| s.name == verifier.name && s.key_id == verifier.key_id);
    for signature in ours {
        let valid = Signature::from_slice(&signature.signature)
            .is_ok_and(|s| verifier.key.verify_strict(text.as_bytes(), &s).is_ok());
        if !valid {
            return Err(NoteError::InvalidSignature {
                line: signature.line,
                name: verifier.name.clone(),
                key_id: verifier.key_id,
            });
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NotSigned {
            name: verifier.name.clone(),
            key_id: verifier.key_id,
        });
    }
    Ok(text.to_owned())
}

/// Opens a signed checkpoint: open_note, then Checkpoint::parse_body, then
/// checks that checkpoint.origin == verifier.name() (otherwise an error naming
/// both).
pub fn open_checkpoint(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, NoteError> {
    let body = open_note(note, verifier)?;
    let checkpoint = Checkpoint::parse_body(&body)?;
    if checkpoint.origin != verifier.name {
        return Err(NoteError::OriginMismatch {
            origin: checkpoint.origin,
            name: verifier.name.clone(),
        });
    }
    Ok(checkpoint)
}

/// One signature line of a note.
struct SignatureLine<'a> {
    /// The line in the note, counted from 1.
    line: usize,
    name: &'a str,
    key_id: u32,
    /// The signature bytes after the key ID.
    signature: Vec<u8>,
}

/// Splits a signed note into its text and its signature lines, and checks
/// the format of both.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    let malformed = |line: usize, reason: String| NoteError::MalformedNote { line, reason };
    if note.is_empty() {
        return Err(malformed(1, "the note is empty".to_owned()));
    }
    check_control_characters(note).map_err(|(line, reason)| malformed(line, reason))?;
    let Some(content) = note.strip_suffix('\n') else {
        return Err(malformed(
            last_line(note),
            "the last line does not end in a newline".to_owned(),
        ));
    };
    // The text ends at the last blank line (C2SP signed-note).
    let Some(split) = note.rfind("\n\n") else {
        return Err(malformed(
            last_line(note),
            "no blank line separates the text from the signature lines".to_owned(),
        ));
    };
    let text = &note[..split + 1];
    check_text(text)?;
    let blank_line = text.matches('\n').count() + 1;
    let Some(signature_lines) = content.get(split + 2..).filter(|s| !s.is_empty()) else {
        return Err(malformed(
            blank_line,
            "no signature line follows the blank line".to_owned(),
        ));
    };

    let mut signatures = Vec::new();
    for (i, line) in signature_lines.split('\n').enumerate() {
        let number = blank_line + 1 + i;
        if i == MAX_SIGNATURES {
            return Err(malformed(
                number,
                format!("the note has more than {MAX_SIGNATURES} signature lines"),
            ));
        }
        let signature = parse_signature_line(number, line).map_err(|r| malformed(number, r))?;
        signatures.push(signature);
    }
    Ok((text, signatures))
}

fn parse_signature_line(number: usize, line: &str) -> Result<SignatureLine<'_>, String> {
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
        "a signature line must start with an em dash (U+2014) and a space".to_owned()
    })?;
    let (name, base64) = rest
        .split_once(' ')
        .ok_or_else(|| "the signature line has no space after the key name".to_owned())?;
    check_name(name)
        .map_err(|reason| format!("the key name {} is invalid: {reason}", quoted(name)))?;
    let bytes = BASE64
        .decode(base64)
        .map_err(|_| "the signature is not standard base64".to_owned())?;
    if bytes.len() < 5 {
        return Err(format!(
            "the signature is {} bytes, but a 4-byte key ID and a signature need at least 5",
            bytes.len()
        ));
    }
    let (id, signature) = bytes.split_at(4);
    let key_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    Ok(SignatureLine {
        line: number,
        name,
        key_id,
        signature: signature.to_vec(),
    })
}

/// Checks a note text (the signed part): non-empty, no control characters
/// other than newline, ending in a newline but not with an empty line.
fn check_text(text: &str) -> Result<(), NoteError> {
    let malformed = |line: usize, reason: &str| NoteError::MalformedNote {
        line,
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(malformed(1, "the note text is empty"));
    }
    check_control_characters(text)
        .map_err(|(line, reason)| NoteError::MalformedNote { line, reason })?;
    let Some(content) = text.strip_suffix('\n') else {
        return Err(malformed(
            last_line(text),
            "the note text does not end in a newline",
        ));
    };
    if content.is_empty() || content.ends_with('\n') {
        return Err(malformed(
            last_line(text),
            "the note text ends with an empty line, but exactly one blank line must \
             separate the text from the signature lines",
        ));
    }
    Ok(())
}

/// Returns the line and a description of the first control character other
/// than newline in `text`.
fn check_control_characters(text: &str) -> Result<(), (usize, String)> {
    for (i, line) in text.split('\n').enumerate() {
        if let Some(c) = line.chars().find(|c| u32::from(*c) < 0x20) {
            return Err((
                i + 1,
                format!(
                    "the line holds the control character U+{:04X}, but only newlines may appear",
                    u32::from(c)
                ),
            ));
        }
    }
    Ok(())
}

/// Returns the number of the last line of `text`: the one that holds its
/// last character.
fn last_line(text: &str) -> usize {
    let newlines = text.matches('\n').count();
    if text.ends_with('\n') {
        newlines.max(1)
    } else {
        newlines + 1
    }
}

/// Checks a key name: non-empty, no Unicode whitespace, no plus sign
/// (C2SP signed-note), and no control character (which no note may hold).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    for c in name.chars() {
        if c == '+' {
            return Err("it holds a plus sign".to_owned());
        }
        if c.is_whitespace() {
            return Err(format!(
                "it holds the whitespace character U+{:04X}",
                u32::from(c)
            ));
        }
        if u32::from(c) < 0x20 {
            return Err(format!(
                "it holds the control character U+{:04X}",
                u32::from(c)
            ));
        }
    }
    Ok(())
}

/// Returns the key ID of the Ed25519 key `public` named `name`: the first
/// four bytes, big-endian, of `SHA-256(name || "\n" || 0x01 || public)`.
fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The fields of `<name>+<hex8 key ID>+<base64(0x01 || 32 bytes)>`. The key
/// bytes are a secret seed for a signer key, so they are wiped on drop.
struct KeyFields<'a> {
    name: &'a str,
    key_id: u32,
    key: [u8; 32],
}

impl<'a> KeyFields<'a> {
    fn parse(kind: KeyKind, text: &'a str) -> Result<KeyFields<'a>, NoteError> {
        let malformed = |reason: String| NoteError::MalformedKey { kind, reason };
        let form = match kind {
            KeyKind::Signer => "PRIVATE+KEY+<name>+<key ID>+<key>",
            KeyKind::Verifier => "<name>+<key ID>+<key>",
        };
        let (name, rest) = text.split_once('+').ok_or_else(|| {
            malformed(format!(
                "it has no '+' after the key name, but its form is {form}"
            ))
        })?;
        check_name(name)
            .map_err(|reason| malformed(format!("the key name is invalid: {reason}")))?;
        let (id, data) = rest.split_once('+').ok_or_else(|| {
            malformed(format!(
                "it has no '+' after the key ID, but its form is {form}"
            ))
        })?;
        // Neither the key ID nor the name is quoted: in a mangled signer key
        // either may hold part of the secret.
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(malformed(
                "the key ID is not 8 lowercase hexadecimal digits".to_owned(),
            ));
        }
        let key_id = u32::from_str_radix(id, 16)
            .map_err(|_| malformed("the key ID is not hexadecimal".to_owned()))?;
        let decoded = Wiped(
            BASE64
                .decode(data)
                .map_err(|_| malformed("the key data is not standard base64".to_owned()))?,
        );
        let Some((&algorithm, key)) = decoded.0.split_first() else {
            return Err(malformed("the key data is empty".to_owned()));
        };
        if algorithm != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm { kind, algorithm });
        }
        let key = <[u8; 32]>::try_from(key).map_err(|_| {
            malformed(format!(
                "an Ed25519 key is 32 bytes, but this one is {} bytes",
                key.len()
            ))
        })?;
        Ok(KeyFields { name, key_id, key })
    }
}

impl Drop for KeyFields<'_> {
    fn drop(&mut self) {
        wipe(&mut self.key);
    }
}

/// Bytes that may hold a secret, overwritten with zeros on drop. This is best
/// effort: copies made before, such as by the base64 decoder, are not wiped.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    // Keeps the compiler from dropping the writes to memory about to be freed.
    std::hint::black_box(bytes);
}

/// Quotes the start of an untrusted input for an error message.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VERIFIER: &str =
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    fn peter() -> NoteSigner {
        NoteSigner::parse(PETER_SIGNER).unwrap()
    }

    fn root(byte: u8) -> Hash {
        [byte; 32]
    }

    /// A valid body with the given lines in place of the default ones.
    fn body(origin: &str, size: &str, root: &str) -> String {
        format!("{origin}\n{size}\n{root}\n")
    }

    fn root_b64() -> String {
        BASE64.encode(root(7))
    }

    fn checkpoint_error(body: &str) -> (usize, String) {
        match Checkpoint::parse_body(body) {
            Err(NoteError::MalformedCheckpoint { line, reason }) => (line, reason),
            other => panic!("expected a malformed checkpoint for {body:?}, got {other:?}"),
        }
    }

    fn note_error(note: &str) -> (usize, String) {
        match open_note(note, &peter().verifier()) {
            Err(NoteError::MalformedNote { line, reason }) => (line, reason),
            other => panic!("expected a malformed note for {note:?}, got {other:?}"),
        }
    }

    fn key_error(kind: KeyKind, text: &str) -> String {
        let result = match kind {
            KeyKind::Signer => NoteSigner::parse(text).map(|_| ()),
            KeyKind::Verifier => NoteVerifier::parse(text).map(|_| ()),
        };
        match result {
            Err(NoteError::MalformedKey { kind: got, reason }) => {
                assert_eq!(got, kind);
                reason
            }
            other => panic!("expected a malformed {kind} for {text:?}, got {other:?}"),
        }
    }

    // Checkpoint bodies.

    #[test]
    fn body_round_trips() {
        let mut checkpoint = Checkpoint::new("example.com/log", 42, root(7));
        assert_eq!(
            checkpoint.to_body(),
            format!("example.com/log\n42\n{}\n", root_b64())
        );
        assert_eq!(
            Checkpoint::parse_body(&checkpoint.to_body()),
            Ok(checkpoint.clone())
        );
        checkpoint.extensions = vec!["ext one".into(), "— two".into()];
        assert_eq!(
            checkpoint.to_body(),
            format!("example.com/log\n42\n{}\next one\n— two\n", root_b64())
        );
        assert_eq!(
            Checkpoint::parse_body(&checkpoint.to_body()),
            Ok(checkpoint)
        );
    }

    #[test]
    fn body_accepts_the_extreme_sizes() {
        for size in [0, 1, 9, 10, u64::MAX] {
            let parsed = Checkpoint::parse_body(&body("o", &size.to_string(), &root_b64()));
            assert_eq!(parsed.map(|c| c.size), Ok(size));
        }
    }

    #[test]
    fn body_origin_may_hold_spaces_and_plus() {
        // The spec only recommends a URL-like origin, and tells clients not
        // to rely on it.
        let parsed = Checkpoint::parse_body(&body("go.sum database tree+1", "5", &root_b64()));
        assert_eq!(
            parsed.map(|c| c.origin),
            Ok("go.sum database tree+1".to_owned())
        );
    }

    #[test]
    fn body_must_not_be_empty() {
        let (line, reason) = checkpoint_error("");
        assert_eq!(line, 1);
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn body_must_end_in_a_newline() {
        let (line, reason) = checkpoint_error(&format!("o\n5\n{}", root_b64()));
        assert_eq!(line, 3);
        assert!(reason.contains("newline"), "{reason}");
    }

    #[test]
    fn body_must_not_hold_control_characters() {
        let (line, reason) = checkpoint_error(&body("o", "5\r", &root_b64()));
        assert_eq!(line, 2);
        assert!(reason.contains("U+000D"), "{reason}");
        let (line, _) = checkpoint_error(&body("o\t", "5", &root_b64()));
        assert_eq!(line, 1);
    }

    #[test]
    fn body_origin_must_not_be_empty() {
        let (line, reason) = checkpoint_error(&body("", "5", &root_b64()));
        assert_eq!(line, 1);
        assert!(reason.contains("origin"), "{reason}");
    }

    #[test]
    fn body_needs_a_size_line() {
        let (line, reason) = checkpoint_error("o\n");
        assert_eq!(line, 2);
        assert!(reason.contains("missing"), "{reason}");
    }

    #[test]
    fn body_size_must_not_be_empty() {
        let (line, reason) = checkpoint_error(&body("o", "", &root_b64()));
        assert_eq!(line, 2);
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn body_size_must_be_plain_decimal() {
        for size in ["+5", "-5", "0x10", "1_000", " 5", "5 ", "٣", "1e3"] {
            let (line, reason) = checkpoint_error(&body("o", size, &root_b64()));
            assert_eq!(line, 2, "{size:?}");
            assert!(
                reason.contains("not a decimal number"),
                "{size:?}: {reason}"
            );
        }
    }

    #[test]
    fn body_size_must_not_have_leading_zeros() {
        for size in ["00", "05", "0000000000000000000001"] {
            let (line, reason) = checkpoint_error(&body("o", size, &root_b64()));
            assert_eq!(line, 2, "{size:?}");
            assert!(reason.contains("leading zero"), "{size:?}: {reason}");
        }
    }

    #[test]
    fn body_size_must_fit_in_64_bits() {
        let (line, reason) = checkpoint_error(&body("o", "18446744073709551616", &root_b64()));
        assert_eq!(line, 2);
        assert!(reason.contains("64 bits"), "{reason}");
    }

    #[test]
    fn body_needs_a_root_line() {
        let (line, reason) = checkpoint_error("o\n5\n");
        assert_eq!(line, 3);
        assert!(reason.contains("missing"), "{reason}");
    }

    #[test]
    fn body_root_must_not_be_empty() {
        let (line, reason) = checkpoint_error(&body("o", "5", ""));
        assert_eq!(line, 3);
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn body_root_must_be_standard_base64() {
        let good = root_b64();
        let unpadded = good.trim_end_matches('=').to_owned();
        let url_safe = BASE64
            .encode([0xfb; 32])
            .replace('+', "-")
            .replace('/', "_");
        // The last character carries two bits that must be zero.
        let mut non_canonical = good.clone();
        non_canonical.replace_range(42..43, "x");
        for root in [
            unpadded,
            url_safe,
            non_canonical,
            format!(" {good}"),
            "!".repeat(44),
        ] {
            let (line, reason) = checkpoint_error(&body("o", "5", &root));
            assert_eq!(line, 3, "{root:?}");
            assert!(reason.contains("base64"), "{root:?}: {reason}");
        }
    }

    #[test]
    fn body_root_must_be_32_bytes() {
        for len in [1, 31, 33, 64] {
            let (line, reason) = checkpoint_error(&body("o", "5", &BASE64.encode(vec![1; len])));
            assert_eq!(line, 3);
            assert!(reason.contains(&format!("{len} bytes")), "{reason}");
        }
    }

    #[test]
    fn body_extension_lines_must_not_be_empty() {
        let (line, reason) = checkpoint_error(&format!("{}\n", body("o", "5", &root_b64())));
        assert_eq!(line, 4);
        assert!(reason.contains("extension"), "{reason}");
        let (line, _) = checkpoint_error(&format!("{}a\n\nb\n", body("o", "5", &root_b64())));
        assert_eq!(line, 5);
    }

    // Key names.

    #[test]
    fn names_follow_the_spec() {
        assert_eq!(check_name("example.com/log-1_ü"), Ok(()));
        assert!(check_name("").unwrap_err().contains("empty"));
        assert!(check_name("a+b").unwrap_err().contains("plus"));
        for name in [
            "a b",
            "a\tb",
            "a\nb",
            "a\u{a0}b",
            "a\u{2028}b",
            "a\u{3000}b",
            "a\u{85}b",
        ] {
            assert!(
                check_name(name).unwrap_err().contains("whitespace"),
                "{name:?}"
            );
        }
        assert!(check_name("a\u{1}b").unwrap_err().contains("control"));
    }

    #[test]
    fn generate_refuses_invalid_names() {
        for name in ["", "a+b", "a b", "a\u{1}b"] {
            assert!(
                matches!(NoteSigner::generate(name), Err(NoteError::InvalidName { name: n, .. }) if n == name),
                "{name:?}"
            );
        }
    }

    // Keys.

    #[test]
    fn key_id_is_the_hash_of_name_and_key() {
        let verifier = NoteVerifier::parse(PETER_VERIFIER).unwrap();
        assert_eq!(key_id("PeterNeumann", verifier.key.as_bytes()), 0xc74f20a3);
        assert_ne!(key_id("PeterNeumanm", verifier.key.as_bytes()), 0xc74f20a3);
    }

    #[test]
    fn verifier_key_needs_its_plus_signs() {
        assert!(key_error(KeyKind::Verifier, "PeterNeumann").contains("after the key name"));
        assert!(key_error(KeyKind::Verifier, "PeterNeumann+c74f20a3").contains("after the key ID"));
    }

    #[test]
    fn verifier_key_name_must_be_valid() {
        let reason = key_error(
            KeyKind::Verifier,
            &format!(" {}", PETER_VERIFIER.replace("Peter", "Pe ter")),
        );
        assert!(
            reason.contains("key name") && reason.contains("whitespace"),
            "{reason}"
        );
        let reason = key_error(KeyKind::Verifier, "+c74f20a3+AAAA");
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn key_id_must_be_8_lowercase_hex_digits() {
        for id in [
            "c74f20a",
            "c74f20a30",
            "C74F20A3",
            "c74f20ag",
            "+74f20a3",
            " c74f20a",
        ] {
            let text = PETER_VERIFIER.replace("c74f20a3", id);
            let reason = key_error(KeyKind::Verifier, &text);
            assert!(
                reason.contains("8 lowercase hexadecimal"),
                "{id:?}: {reason}"
            );
        }
    }

    #[test]
    fn key_data_must_be_standard_base64() {
        let text = PETER_VERIFIER.trim_end_matches('W').to_owned();
        assert!(key_error(KeyKind::Verifier, &text).contains("base64"));
        let text = PETER_VERIFIER.replace('/', "_");
        assert!(key_error(KeyKind::Verifier, &text).contains("base64"));
    }

    #[test]
    fn key_data_must_not_be_empty() {
        assert!(key_error(KeyKind::Verifier, "PeterNeumann+c74f20a3+").contains("empty"));
    }

    #[test]
    fn key_must_be_ed25519() {
        let mut data = vec![0x02];
        data.extend([9; 32]);
        let text = format!("a+00000000+{}", BASE64.encode(&data));
        assert_eq!(
            NoteVerifier::parse(&text),
            Err(NoteError::UnsupportedAlgorithm {
                kind: KeyKind::Verifier,
                algorithm: 2
            })
        );
    }

    #[test]
    fn key_must_be_32_bytes() {
        for len in [0, 31, 33] {
            let mut data = vec![ALG_ED25519];
            data.extend(vec![9; len]);
            let text = format!("a+00000000+{}", BASE64.encode(&data));
            let reason = key_error(KeyKind::Verifier, &text);
            assert!(reason.contains(&format!("{len} bytes")), "{reason}");
        }
    }

    /// A verifier key string for `public`, with the right key ID.
    fn verifier_text(public: [u8; 32]) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend(public);
        format!("a+{:08x}+{}", key_id("a", &public), BASE64.encode(&data))
    }

    #[test]
    fn verifier_key_must_be_a_curve_point() {
        // y = 2 is not the y-coordinate of any point of the curve.
        let mut public = [0; 32];
        public[0] = 2;
        let reason = key_error(KeyKind::Verifier, &verifier_text(public));
        assert!(reason.contains("not an Ed25519 curve point"), "{reason}");
    }

    #[test]
    fn verifier_key_must_be_canonical() {
        // y = p + 1 encodes the identity point (y = 1) non-canonically.
        let mut public = [0xff; 32];
        public[0] = 0xee;
        public[31] = 0x7f;
        let reason = key_error(KeyKind::Verifier, &verifier_text(public));
        assert!(reason.contains("canonical"), "{reason}");
    }

    #[test]
    fn verifier_key_must_not_have_small_order() {
        // The identity point, y = 1.
        let mut public = [0; 32];
        public[0] = 1;
        let reason = key_error(KeyKind::Verifier, &verifier_text(public));
        assert!(reason.contains("small order"), "{reason}");
    }

    #[test]
    fn signer_key_needs_the_private_prefix() {
        let reason = key_error(KeyKind::Signer, PETER_VERIFIER);
        assert!(reason.contains("PRIVATE+KEY+"), "{reason}");
        let reason = key_error(KeyKind::Signer, &PETER_SIGNER.to_lowercase());
        assert!(reason.contains("PRIVATE+KEY+"), "{reason}");
    }

    #[test]
    fn key_errors_never_quote_the_secret() {
        let secret = PETER_SIGNER.split_once("c74f20a3+").unwrap().1;
        let mangled = [
            PETER_SIGNER.replace("c74f20a3", "c74f20a4"),
            format!("{PETER_SIGNER}A"),
            PETER_SIGNER.replace("+AYEK", "+AnEK"),
            PETER_SIGNER.replace("c74f20a3+", "c74f20a3"),
            PETER_SIGNER.replace("PeterNeumann+c74f20a3+", ""),
            PETER_SIGNER.replace("PeterNeumann+c74f20a3+", "Pe ter+"),
        ];
        for text in mangled {
            let error = NoteSigner::parse(&text).unwrap_err().to_string();
            for chunk in secret.as_bytes().chunks(6) {
                let chunk = std::str::from_utf8(chunk).unwrap();
                assert!(!error.contains(chunk), "{error} quotes {chunk:?}");
            }
        }
    }

    #[test]
    fn key_id_must_match_the_key() {
        let text = PETER_VERIFIER.replace("c74f20a3", "c74f20a4");
        assert_eq!(
            NoteVerifier::parse(&text),
            Err(NoteError::KeyIdMismatch {
                kind: KeyKind::Verifier,
                name: "PeterNeumann".into(),
                stated: 0xc74f20a4,
                computed: 0xc74f20a3
            })
        );
        let text = PETER_SIGNER.replace("c74f20a3", "00000000");
        assert_eq!(
            NoteSigner::parse(&text).unwrap_err(),
            NoteError::KeyIdMismatch {
                kind: KeyKind::Signer,
                name: "PeterNeumann".into(),
                stated: 0,
                computed: 0xc74f20a3
            }
        );
    }

    #[test]
    fn keys_are_trimmed() {
        assert_eq!(
            NoteSigner::parse(&format!("\n {PETER_SIGNER}\r\n"))
                .unwrap()
                .key_id(),
            0xc74f20a3
        );
        assert_eq!(
            NoteVerifier::parse(&format!("\t{PETER_VERIFIER}\n"))
                .unwrap()
                .key_id(),
            0xc74f20a3
        );
    }

    // Notes.

    #[test]
    fn note_must_not_be_empty() {
        assert_eq!(note_error(""), (1, "the note is empty".to_owned()));
    }

    #[test]
    fn note_must_not_hold_control_characters() {
        let note = peter()
            .sign_note("a\nb\n")
            .unwrap()
            .replacen('b', "b\u{7}", 1);
        let (line, reason) = note_error(&note);
        assert_eq!(line, 2);
        assert!(reason.contains("U+0007"), "{reason}");
        let note = format!("{}\r\n", peter().sign_note("a\n").unwrap().trim_end());
        let (line, reason) = note_error(&note);
        assert_eq!(line, 3);
        assert!(reason.contains("U+000D"), "{reason}");
    }

    #[test]
    fn note_must_end_in_a_newline() {
        let note = peter().sign_note("a\n").unwrap();
        let (line, reason) = note_error(note.trim_end_matches('\n'));
        assert_eq!(line, 3);
        assert!(reason.contains("does not end in a newline"), "{reason}");
    }

    #[test]
    fn note_needs_a_blank_line() {
        let note = peter().sign_note("a\n").unwrap().replace("\n\n", "\n");
        let (line, reason) = note_error(&note);
        assert_eq!(line, 2);
        assert!(reason.contains("no blank line"), "{reason}");
    }

    #[test]
    fn note_needs_a_signature_line() {
        let (line, reason) = note_error("a\nb\n\n");
        assert_eq!(line, 3);
        assert!(reason.contains("no signature line"), "{reason}");
    }

    #[test]
    fn note_text_must_not_end_with_an_empty_line() {
        let signed = peter().sign_note("a\n").unwrap();
        let (line, reason) = note_error(&signed.replacen("\n\n", "\n\n\n", 1));
        assert_eq!(line, 2);
        assert!(reason.contains("exactly one blank line"), "{reason}");
        // A text that is only an empty line.
        let (line, reason) = note_error(&format!("\n{}", &signed[2..]));
        assert_eq!(line, 1);
        assert!(reason.contains("exactly one blank line"), "{reason}");
    }

    #[test]
    fn note_text_may_hold_empty_lines_inside() {
        let signer = peter();
        let text = "\na\n\n\nb\n";
        let note = signer.sign_note(text).unwrap();
        assert_eq!(open_note(&note, &signer.verifier()).as_deref(), Ok(text));
    }

    #[test]
    fn signature_line_needs_the_em_dash() {
        let note = peter().sign_note("a\n").unwrap();
        for wrong in ["- ", "—", "– ", "-- ", " — ", "—\u{a0}"] {
            let (line, reason) = note_error(&note.replace("— ", wrong));
            assert_eq!(line, 3, "{wrong:?}");
            assert!(reason.contains("em dash"), "{wrong:?}: {reason}");
        }
    }

    #[test]
    fn signature_line_needs_a_space_after_the_name() {
        let note = peter().sign_note("a\n").unwrap();
        let (line, reason) = note_error(&note.replace("PeterNeumann ", "PeterNeumann"));
        assert_eq!(line, 3);
        assert!(reason.contains("no space"), "{reason}");
    }

    #[test]
    fn signature_line_name_must_be_valid() {
        let note = peter().sign_note("a\n").unwrap();
        let (line, reason) = note_error(&note.replace("PeterNeumann", "Peter+Neumann"));
        assert_eq!(line, 3);
        assert!(reason.contains("plus sign"), "{reason}");
        let (_, reason) = note_error(&note.replace("— PeterNeumann", "—  PeterNeumann"));
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn signature_must_be_standard_base64() {
        let note = peter().sign_note("a\n").unwrap();
        let sig_start = note.rfind(' ').unwrap() + 1;
        let cases = [
            format!("{}\n", note.trim_end().trim_end_matches('=')),
            format!("{} \n", note.trim_end()),
            format!("{}!{}", &note[..sig_start], &note[sig_start..]),
            format!("{}\n", &note[..sig_start]),
        ];
        for case in cases {
            let (line, reason) = note_error(&case);
            assert_eq!(line, 3, "{case:?}");
            assert!(
                reason.contains("base64") || reason.contains("0 bytes"),
                "{case:?}: {reason}"
            );
        }
    }

    #[test]
    fn signature_must_hold_a_key_id_and_a_signature() {
        for len in [0, 1, 4] {
            let note = format!("a\n\n— x {}\n", BASE64.encode(vec![1; len]));
            let (line, reason) = note_error(&note);
            assert_eq!(line, 3);
            assert!(reason.contains(&format!("is {len} bytes")), "{reason}");
        }
    }

    #[test]
    fn note_has_at_most_100_signatures() {
        let signer = peter();
        let signed = signer.sign_note("a\n").unwrap();
        let line = &signed[3..];
        let hundred = format!("a\n\n{}", line.repeat(100));
        assert_eq!(
            open_note(&hundred, &signer.verifier()).as_deref(),
            Ok("a\n")
        );
        let (number, reason) = note_error(&format!("a\n\n{}", line.repeat(101)));
        assert_eq!(number, 103);
        assert!(reason.contains("more than 100"), "{reason}");
    }

    #[test]
    fn sign_note_checks_the_text() {
        let signer = peter();
        let error = |text: &str| match signer.sign_note(text) {
            Err(NoteError::MalformedNote { line, reason }) => (line, reason),
            other => panic!("expected an error for {text:?}, got {other:?}"),
        };
        assert_eq!(error("").0, 1);
        assert!(error("a").1.contains("does not end in a newline"));
        assert!(error("a\nb").1.contains("does not end in a newline"));
        assert_eq!(error("a\nb").0, 2);
        assert!(error("\n").1.contains("empty line"));
        assert_eq!(error("a\n\n").0, 2);
        assert!(error("a\u{0}\n").1.contains("U+0000"));
    }

    #[test]
    fn sign_checkpoint_makes_an_openable_checkpoint() {
        let signer = peter();
        let note = signer.sign_checkpoint(3, &root(1));
        assert!(note.starts_with(&format!(
            "PeterNeumann\n3\n{}\n\n— PeterNeumann ",
            BASE64.encode(root(1))
        )));
        assert_eq!(
            open_checkpoint(&note, &signer.verifier()),
            Ok(Checkpoint::new("PeterNeumann", 3, root(1)))
        );
    }

    #[test]
    fn quoted_inputs_are_cut() {
        assert_eq!(quoted("abc"), "\"abc\"");
        let long = "é".repeat(100);
        assert_eq!(quoted(&long), format!("{:?}…", "é".repeat(QUOTE_CHARS)));
    }

    #[test]
    fn last_line_counts_lines() {
        assert_eq!(last_line(""), 1);
        assert_eq!(last_line("a"), 1);
        assert_eq!(last_line("a\n"), 1);
        assert_eq!(last_line("a\nb"), 2);
        assert_eq!(last_line("a\n\n"), 2);
    }
}
