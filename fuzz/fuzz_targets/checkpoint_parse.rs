//! The parsers of checkpoint bodies, keys and signed notes never panic, and
//! what they accept prints back to the same text.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchaudit_proofs::{open_checkpoint, open_note, Checkpoint, NoteSigner, NoteVerifier};

/// The PeterNeumann key of golang.org/x/mod/sumdb/note's tests. The seed
/// corpus holds checkpoints it signed.
const SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

fn keys() -> &'static (NoteSigner, NoteVerifier) {
    static KEYS: OnceLock<(NoteSigner, NoteVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = NoteSigner::parse(SIGNER).expect("the test key parses");
        let verifier = signer.verifier();
        (signer, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signer, verifier) = keys();

    // Parsing is canonical: what parses prints back to the same text.
    if let Ok(checkpoint) = Checkpoint::parse_body(text) {
        assert_eq!(checkpoint.to_body(), text);
        assert_eq!(
            Checkpoint::parse_body(&checkpoint.to_body()),
            Ok(checkpoint)
        );
    }
    if let Ok(key) = NoteVerifier::parse(text) {
        assert_eq!(key.to_string(), text.trim());
        assert_eq!(NoteVerifier::parse(&key.to_string()), Ok(key));
    }
    if let Ok(key) = NoteSigner::parse(text) {
        assert_eq!(key.to_text(), text.trim());
        assert_eq!(key.verifier().key_id(), key.key_id());
    }

    // A checkpoint opens only if its note does, and then to its body.
    match open_note(text, verifier) {
        Ok(body) => {
            assert!(text.starts_with(&body));
            if let Ok(checkpoint) = open_checkpoint(text, verifier) {
                assert_eq!(checkpoint.origin, verifier.name());
                assert_eq!(Checkpoint::parse_body(&body), Ok(checkpoint));
            }
        }
        Err(_) => assert!(open_checkpoint(text, verifier).is_err()),
    }

    // Every text sign_note accepts opens back to itself.
    if let Ok(note) = signer.sign_note(text) {
        assert_eq!(open_note(&note, verifier).as_deref(), Ok(text));
    }
});
