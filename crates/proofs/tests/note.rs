//! Signed notes and checkpoints against published vectors, and their
//! properties: round trips, tampering, wrong keys and random checkpoints.
//!
//! The vectors come from:
//! - `golang.org/x/mod/sumdb/note` (github.com/golang/mod, `sumdb/note/note.go`
//!   package docs and `sumdb/note/note_test.go`: `TestNewVerifier`,
//!   `TestNewSigner`, `TestSign`, `TestOpen`): the PeterNeumann and EnochRoot
//!   keys, and the signed note of the Peter Neumann quote;
//! - `golang.org/x/mod/sumdb/tlog` (`sumdb/tlog/note_test.go`, `TestFormatTree`
//!   and `TestParseTree`): a tree note body;
//! - github.com/google/trillian-examples `formats/log/note_test.go` (since moved
//!   to github.com/transparency-dev/formats `log/note_test.go`): four signer and
//!   verifier key pairs, and a tree head signed by sum.golang.org with its
//!   published key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use patchaudit_proofs::{
    leaf_hash, open_checkpoint, open_note, Checkpoint, Hash, KeyKind, NoteError, NoteSigner,
    NoteVerifier,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PETER_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

const SUMDB_VERIFIER: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n\
                          6476701\n\
                          mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\
                          \n\
                          — sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

fn peter() -> NoteSigner {
    NoteSigner::parse(PETER_SIGNER).unwrap()
}

fn verifier(text: &str) -> NoteVerifier {
    NoteVerifier::parse(text).unwrap()
}

fn go_note() -> String {
    format!("{TEXT}\n{PETER_SIG}")
}

// Published vectors.

#[test]
fn go_signer_key_parses_and_derives_the_go_verifier_key() {
    let signer = peter();
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.to_text(), PETER_SIGNER);
    assert_eq!(signer.verifier().to_string(), PETER_VERIFIER);
    assert_eq!(signer.verifier(), verifier(PETER_VERIFIER));
}

#[test]
fn go_verifier_keys_parse_and_print_back() {
    for (text, name, key_id) in [
        (PETER_VERIFIER, "PeterNeumann", 0xc74f20a3),
        (ENOCH_VERIFIER, "EnochRoot", 0xaf0cfe78),
        (SUMDB_VERIFIER, "sum.golang.org", 0x033de0ae),
    ] {
        let parsed = verifier(text);
        assert_eq!(parsed.name(), name);
        assert_eq!(parsed.key_id(), key_id);
        assert_eq!(parsed.to_string(), text);
    }
}

#[test]
fn trillian_examples_key_pairs_match() {
    let pairs = [
        (
            "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
            "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        ),
        (
            "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
            "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        ),
        (
            "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
            "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        ),
        (
            "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
            "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        ),
    ];
    for (signer_text, verifier_text) in pairs {
        let signer = NoteSigner::parse(signer_text).unwrap();
        assert_eq!(signer.to_text(), signer_text);
        assert_eq!(signer.verifier().to_string(), verifier_text);
        assert_eq!(signer.verifier(), verifier(verifier_text));
    }
}

#[test]
fn go_signed_note_opens() {
    assert_eq!(
        open_note(&go_note(), &verifier(PETER_VERIFIER)).as_deref(),
        Ok(TEXT)
    );
}

#[test]
fn signing_reproduces_the_go_note_byte_for_byte() {
    // Ed25519 (RFC 8032) is deterministic, so the same key and text give the
    // same signature as Go's note.Sign.
    assert_eq!(peter().sign_note(TEXT).unwrap(), go_note());
}

#[test]
fn go_note_with_two_signatures_opens_with_either_key() {
    let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(
        open_note(&note, &verifier(PETER_VERIFIER)).as_deref(),
        Ok(TEXT)
    );
    assert_eq!(
        open_note(&note, &verifier(ENOCH_VERIFIER)).as_deref(),
        Ok(TEXT)
    );
    let other = NoteSigner::generate("PeterNeumann").unwrap().verifier();
    assert_eq!(
        open_note(&note, &other),
        Err(NoteError::NotSigned {
            name: "PeterNeumann".into(),
            key_id: other.key_id()
        })
    );
}

#[test]
fn go_note_with_repeated_signatures_opens() {
    let note = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}");
    assert_eq!(
        open_note(&note, &verifier(PETER_VERIFIER)).as_deref(),
        Ok(TEXT)
    );
}

#[test]
fn go_note_with_a_corrupt_signature_is_refused() {
    // From TestOpen: four base64 characters inserted into the signature.
    let corrupt = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    let note = format!("{TEXT}\n{corrupt}");
    assert_eq!(
        open_note(&note, &verifier(PETER_VERIFIER)),
        Err(NoteError::InvalidSignature {
            line: 4,
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    // Enoch's corrupt signature is another key's: ignored.
    let note = format!(
        "{TEXT}\n{PETER_SIG}{}ABCD{}",
        &ENOCH_SIG[..60],
        &ENOCH_SIG[60..]
    );
    assert_eq!(
        open_note(&note, &verifier(PETER_VERIFIER)).as_deref(),
        Ok(TEXT)
    );
}

#[test]
fn go_malformed_notes_are_refused() {
    // The invalid encodings of TestOpen; "\xff" cannot be in a &str.
    let bad = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
    ];
    for note in bad {
        let result = open_note(&note, &verifier(PETER_VERIFIER));
        assert!(
            matches!(result, Err(NoteError::MalformedNote { .. })),
            "{note:?}: {result:?}"
        );
    }
}

#[test]
fn go_signatures_by_other_names_or_ids_are_ignored() {
    // From TestOpen: the name, then the key ID, changed.
    let misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
    let wrong_id = PETER_SIG.replace("x08g", "xxxx");
    for sig in [misnamed, wrong_id] {
        let note = format!("{TEXT}\n{sig}");
        assert_eq!(
            open_note(&note, &verifier(PETER_VERIFIER)),
            Err(NoteError::NotSigned {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );
        let note = format!("{TEXT}\n{sig}{PETER_SIG}");
        assert_eq!(
            open_note(&note, &verifier(PETER_VERIFIER)).as_deref(),
            Ok(TEXT)
        );
    }
}

/// Every proper substring of `key` and every copy of it with one byte
/// incremented, as TestNewVerifier and TestNewSigner mangle keys.
fn manglings(key: &str) -> Vec<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if i != 0 || j != bytes.len() {
                out.push(String::from_utf8(bytes[i..j].to_vec()).unwrap());
            }
        }
    }
    for i in 0..bytes.len() {
        let mut changed = bytes.to_vec();
        changed[i] += 1;
        out.push(String::from_utf8(changed).unwrap());
    }
    out
}

#[test]
fn go_mangled_verifier_keys_are_refused() {
    let mangled = manglings(PETER_VERIFIER);
    assert!(mangled.len() > 2000);
    for key in mangled {
        assert!(NoteVerifier::parse(&key).is_err(), "{key:?}");
    }
    // A key of the wrong length, and one of an unknown type, with key IDs
    // that match them.
    let long = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
    assert!(matches!(
        NoteVerifier::parse(long),
        Err(NoteError::MalformedKey { .. })
    ));
    let unknown = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(
        NoteVerifier::parse(unknown),
        Err(NoteError::UnsupportedAlgorithm {
            kind: KeyKind::Verifier,
            algorithm: 0x65
        })
    );
}

#[test]
fn go_mangled_signer_keys_are_refused() {
    let mangled = manglings(PETER_SIGNER);
    assert!(mangled.len() > 3000);
    for key in mangled {
        assert!(NoteSigner::parse(&key).is_err(), "{key:?}");
    }
}

#[test]
fn go_tree_note_body_formats_and_parses() {
    // TestFormatTree: the root is tlog.RecordHash("hello world"), the RFC
    // 6962 leaf hash.
    let golden =
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    let checkpoint = Checkpoint::new(
        "go.sum database tree",
        123456789012,
        leaf_hash(b"hello world"),
    );
    assert_eq!(checkpoint.to_body(), golden);
    assert_eq!(Checkpoint::parse_body(golden), Ok(checkpoint.clone()));

    // TestParseTree's bad trees.
    let bad = [
        ("go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", 2),
        ("go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n", 3),
    ];
    for (body, line) in bad {
        assert!(
            matches!(Checkpoint::parse_body(body), Err(NoteError::MalformedCheckpoint { line: l, .. }) if l == line),
            "{body:?}"
        );
    }
    // Go ignores lines after the root; a checkpoint reads them as extensions.
    let with_junk = format!("{golden}JOE\n");
    let mut extended = checkpoint;
    extended.extensions.push("JOE".into());
    assert_eq!(Checkpoint::parse_body(&with_junk), Ok(extended));
}

#[test]
fn sum_golang_org_tree_head_verifies() {
    let sumdb = verifier(SUMDB_VERIFIER);
    let body = open_note(SUMDB_NOTE, &sumdb).unwrap();
    let checkpoint = Checkpoint::parse_body(&body).unwrap();
    assert_eq!(checkpoint.origin, "go.sum database tree");
    assert_eq!(checkpoint.size, 6476701);
    assert_eq!(
        BASE64.encode(checkpoint.root),
        "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
    );
    assert!(checkpoint.extensions.is_empty());
    // sum.golang.org's origin is not its key name, which open_checkpoint
    // requires.
    assert_eq!(
        open_checkpoint(SUMDB_NOTE, &sumdb),
        Err(NoteError::OriginMismatch {
            origin: "go.sum database tree".into(),
            name: "sum.golang.org".into()
        })
    );
    let tampered = SUMDB_NOTE.replace("6476701", "6476702");
    assert!(matches!(
        open_note(&tampered, &sumdb),
        Err(NoteError::InvalidSignature { line: 5, .. })
    ));
}

// Round trips.

#[test]
fn generated_keys_round_trip() {
    let signer = NoteSigner::generate("example.com/ledger").unwrap();
    assert_eq!(signer.name(), "example.com/ledger");
    let text = signer.to_text();
    assert!(text.starts_with(&format!(
        "PRIVATE+KEY+example.com/ledger+{:08x}+",
        signer.key_id()
    )));
    let parsed = NoteSigner::parse(&text).unwrap();
    assert_eq!(parsed.to_text(), text);
    assert_eq!(parsed.verifier(), signer.verifier());

    let verifier = signer.verifier();
    assert_eq!(verifier.name(), "example.com/ledger");
    assert_eq!(verifier.key_id(), signer.key_id());
    assert_eq!(NoteVerifier::parse(&verifier.to_string()), Ok(verifier));
}

#[test]
fn generated_keys_differ() {
    let a = NoteSigner::generate("same").unwrap();
    let b = NoteSigner::generate("same").unwrap();
    assert_ne!(a.to_text(), b.to_text());
    assert_ne!(a.verifier(), b.verifier());
}

#[test]
fn signer_debug_hides_the_secret() {
    let signer = peter();
    let debug = format!("{signer:?}");
    assert_eq!(
        debug,
        "NoteSigner { name: \"PeterNeumann\", key_id: c74f20a3, .. }"
    );
    let secret = signer.to_text();
    let secret = secret.rsplit_once("c74f20a3+").unwrap().1;
    assert!(!debug.contains(secret));
    let cloned = format!("{:?}", signer.clone());
    assert_eq!(cloned, debug);
}

#[test]
fn verifier_debug_shows_the_key_string() {
    assert_eq!(
        format!("{:?}", verifier(PETER_VERIFIER)),
        format!("NoteVerifier({PETER_VERIFIER})")
    );
}

#[test]
fn checkpoints_round_trip() {
    let signer = peter();
    let mut checkpoint = Checkpoint::new("PeterNeumann", 7, [0xab; 32]);
    let note = signer.sign_checkpoint(7, &[0xab; 32]);
    assert_eq!(
        open_checkpoint(&note, &signer.verifier()),
        Ok(checkpoint.clone())
    );

    checkpoint.extensions = vec!["ext1".into(), "ext 2".into()];
    let note = signer.sign_note(&checkpoint.to_body()).unwrap();
    assert_eq!(open_checkpoint(&note, &signer.verifier()), Ok(checkpoint));
}

#[test]
fn signing_is_deterministic() {
    let signer = peter();
    assert_eq!(
        signer.sign_checkpoint(5, &[1; 32]),
        signer.sign_checkpoint(5, &[1; 32])
    );
    assert_ne!(
        signer.sign_checkpoint(5, &[1; 32]),
        signer.sign_checkpoint(6, &[1; 32])
    );
}

#[test]
fn cosigned_checkpoints_open_with_each_key() {
    let log = NoteSigner::generate("example.com/log").unwrap();
    let witness = NoteSigner::generate("witness.example").unwrap();
    let note = log.sign_checkpoint(10, &[3; 32]);
    let body = Checkpoint::new("example.com/log", 10, [3; 32]).to_body();
    let witness_line = witness.sign_note(&body).unwrap()[body.len() + 1..].to_owned();
    let cosigned = format!("{note}{witness_line}");
    assert_eq!(
        open_checkpoint(&cosigned, &log.verifier()).map(|c| c.size),
        Ok(10)
    );
    assert_eq!(
        open_note(&cosigned, &witness.verifier()).as_deref(),
        Ok(body.as_str())
    );
    // The witness is not the log: its name is not the origin.
    assert_eq!(
        open_checkpoint(&cosigned, &witness.verifier()),
        Err(NoteError::OriginMismatch {
            origin: "example.com/log".into(),
            name: "witness.example".into()
        })
    );
}

// Tampering and wrong keys.

#[test]
fn a_tampered_body_is_refused() {
    let signer = peter();
    let note = signer.sign_checkpoint(100, &[9; 32]);
    let tampered = note.replacen("100", "101", 1);
    assert_eq!(
        open_checkpoint(&tampered, &signer.verifier()),
        Err(NoteError::InvalidSignature {
            line: 5,
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    let other_root = note.replacen(&BASE64.encode([9; 32]), &BASE64.encode([8; 32]), 1);
    assert!(matches!(
        open_checkpoint(&other_root, &signer.verifier()),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn a_tampered_signature_is_refused() {
    let signer = peter();
    let note = signer.sign_checkpoint(100, &[9; 32]);
    let (head, line) = note.trim_end().rsplit_once(' ').unwrap();
    let mut bytes = BASE64.decode(line).unwrap();
    for i in [4, 20, 40, 67] {
        bytes[i] ^= 0x01;
        let tampered = format!("{head} {}\n", BASE64.encode(&bytes));
        assert!(
            matches!(
                open_checkpoint(&tampered, &signer.verifier()),
                Err(NoteError::InvalidSignature { line: 5, .. })
            ),
            "byte {i}"
        );
        bytes[i] ^= 0x01;
    }
    // A signature of the wrong length by the right key is invalid too.
    let short = format!("{head} {}\n", BASE64.encode(&bytes[..67]));
    assert!(matches!(
        open_checkpoint(&short, &signer.verifier()),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn a_note_by_another_key_is_refused() {
    let signer = NoteSigner::generate("log").unwrap();
    let impostor = NoteSigner::generate("log").unwrap();
    let note = impostor.sign_checkpoint(1, &[0; 32]);
    assert_eq!(
        open_checkpoint(&note, &signer.verifier()),
        Err(NoteError::NotSigned {
            name: "log".into(),
            key_id: signer.key_id()
        })
    );
}

#[test]
fn a_signature_by_another_key_under_our_key_id_is_invalid() {
    let signer = NoteSigner::generate("log").unwrap();
    let impostor = NoteSigner::generate("log").unwrap();
    let note = impostor.sign_checkpoint(1, &[0; 32]);
    let (head, line) = note.trim_end().rsplit_once(' ').unwrap();
    let mut bytes = BASE64.decode(line).unwrap();
    bytes[..4].copy_from_slice(&signer.key_id().to_be_bytes());
    let forged = format!("{head} {}\n", BASE64.encode(&bytes));
    assert!(matches!(
        open_checkpoint(&forged, &signer.verifier()),
        Err(NoteError::InvalidSignature { line: 5, .. })
    ));
}

#[test]
fn one_bad_signature_by_our_key_spoils_the_note() {
    let signer = peter();
    let note = signer.sign_checkpoint(1, &[0; 32]);
    let (head, signature) = note.trim_end().rsplit_once(' ').unwrap();
    let head = head.rsplit_once('\n').unwrap().1;
    // The 11th base64 character encodes bits of the signature, after the key ID.
    let flipped = if &signature[10..11] == "A" { "B" } else { "A" };
    let bad_line = format!("{head} {}{flipped}{}", &signature[..10], &signature[11..]);
    let note = format!("{note}{bad_line}\n");
    assert!(matches!(
        open_checkpoint(&note, &signer.verifier()),
        Err(NoteError::InvalidSignature { line: 6, .. })
    ));
}

#[test]
fn a_checkpoint_for_another_origin_is_refused() {
    let signer = NoteSigner::generate("a.example/log").unwrap();
    let body = Checkpoint::new("b.example/log", 1, [0; 32]).to_body();
    let note = signer.sign_note(&body).unwrap();
    let error = open_checkpoint(&note, &signer.verifier()).unwrap_err();
    assert_eq!(
        error,
        NoteError::OriginMismatch {
            origin: "b.example/log".into(),
            name: "a.example/log".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "the checkpoint origin \"b.example/log\" is not the verifier key name \"a.example/log\""
    );
}

#[test]
fn a_signed_checkpoint_with_a_bad_size_is_refused() {
    let signer = peter();
    let root = BASE64.encode([0; 32]);
    for (size, reason) in [
        ("01", "leading zero"),
        ("-1", "not a decimal number"),
        ("18446744073709551616", "64 bits"),
        ("", "empty"),
    ] {
        let note = signer
            .sign_note(&format!("PeterNeumann\n{size}\n{root}\n"))
            .unwrap();
        match open_checkpoint(&note, &signer.verifier()) {
            Err(NoteError::MalformedCheckpoint { line: 2, reason: r }) => {
                assert!(r.contains(reason), "{size:?}: {r}")
            }
            other => panic!("{size:?}: {other:?}"),
        }
    }
}

#[test]
fn a_signed_checkpoint_with_a_bad_root_is_refused() {
    let signer = peter();
    for (root, reason) in [
        (BASE64.encode([0; 31]), "31 bytes"),
        (BASE64.encode([0; 33]), "33 bytes"),
        ("not base64".to_owned(), "base64"),
    ] {
        let note = signer
            .sign_note(&format!("PeterNeumann\n1\n{root}\n"))
            .unwrap();
        match open_checkpoint(&note, &signer.verifier()) {
            Err(NoteError::MalformedCheckpoint { line: 3, reason: r }) => {
                assert!(r.contains(reason), "{root:?}: {r}")
            }
            other => panic!("{root:?}: {other:?}"),
        }
    }
}

#[test]
fn error_messages_name_the_place_and_the_rule() {
    let signer = peter();
    let cases = [
        (
            open_note("a\n\n- x AAAAAAA=\n", &signer.verifier()).unwrap_err(),
            "the note is malformed at line 3: a signature line must start with an em dash (U+2014) and a space",
        ),
        (
            Checkpoint::parse_body("o\n007\nAAAA\n").unwrap_err(),
            "the checkpoint body is malformed at line 2: the tree size \"007\" has a leading zero",
        ),
        (
            open_note(&signer.sign_note("a\n").unwrap(), &verifier(ENOCH_VERIFIER)).unwrap_err(),
            "the note has no signature by the key EnochRoot+af0cfe78",
        ),
        (
            NoteSigner::generate("a b").unwrap_err(),
            "the key name \"a b\" is invalid: it holds the whitespace character U+0020",
        ),
        (
            NoteVerifier::parse("a+0000000+AAAA").unwrap_err(),
            "the verifier key is malformed: the key ID is not 8 lowercase hexadecimal digits",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

// Properties over random checkpoints.

fn random_size(rng: &mut StdRng) -> u64 {
    match rng.gen_range(0..4) {
        0 => rng.gen_range(0..16),
        1 => rng.gen(),
        2 => u64::MAX - rng.gen_range(0..16),
        _ => 1 << rng.gen_range(0..64),
    }
}

#[test]
fn random_checkpoints_sign_and_open() {
    let mut rng = StdRng::seed_from_u64(0x6e6f7465);
    let signers: Vec<NoteSigner> = (0..4)
        .map(|i| NoteSigner::generate(&format!("log{i}.example/ledger")).unwrap())
        .collect();
    for _ in 0..300 {
        let signer = &signers[rng.gen_range(0..signers.len())];
        let size = random_size(&mut rng);
        let root: Hash = rng.gen();
        let note = signer.sign_checkpoint(size, &root);
        let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
        assert_eq!(checkpoint, Checkpoint::new(signer.name(), size, root));
        assert_eq!(
            checkpoint.to_body(),
            open_note(&note, &signer.verifier()).unwrap()
        );
        for other in signers.iter().filter(|s| s.name() != signer.name()) {
            assert!(matches!(
                open_checkpoint(&note, &other.verifier()),
                Err(NoteError::NotSigned { .. })
            ));
        }
    }
}

#[test]
fn every_single_byte_change_is_refused() {
    let mut rng = StdRng::seed_from_u64(0x74616d70);
    let signer = peter();
    let verifier = signer.verifier();
    let mut refused = 0;
    for _ in 0..40 {
        let size = random_size(&mut rng);
        let root: Hash = rng.gen();
        let note = signer.sign_checkpoint(size, &root);
        let original = open_checkpoint(&note, &verifier).unwrap();
        for _ in 0..20 {
            let mut bytes = note.clone().into_bytes();
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            let result = open_checkpoint(&changed, &verifier);
            assert!(
                result.is_err(),
                "{changed:?} opened as {result:?}, was {original:?}"
            );
            refused += 1;
        }
    }
    assert!(refused > 400, "only {refused} changes were valid UTF-8");
}
