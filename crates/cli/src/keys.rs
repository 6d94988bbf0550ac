//! The checkpoint signing key on disk: created once with mode 0600, loaded
//! on every start, and refused if others could read it.

use crate::exit::Failure;
use anyhow::Result;
use patchaudit_proofs::NoteSigner;
use std::io::Write;
use std::path::Path;

/// The name a generated key gets when none is given: `patchaudit/<host>`,
/// which is also the origin line of every checkpoint it signs.
pub fn default_key_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    if host.is_empty() {
        "patchaudit/ledger".to_owned()
    } else {
        format!("patchaudit/{host}")
    }
}

/// Loads the key at `path`, or creates it (mode 0600, never overwriting)
/// when it does not exist yet.
pub fn load_or_create(path: &Path) -> Result<NoteSigner> {
    match load(path) {
        Ok(key) => Ok(key),
        Err(e)
            if e.downcast_ref::<Failure>()
                .is_some_and(|f| f.code == crate::exit::Code::NotFound) =>
        {
            match create(path, &default_key_name()) {
                Ok(key) => {
                    tracing::info!(path = %path.display(), key = %key.verifier(), "created the checkpoint signing key");
                    Ok(key)
                }
                // Another process (a second instance starting beside this
                // one) created it first: use that one.
                Err(e)
                    if e.downcast_ref::<Failure>()
                        .is_some_and(|f| f.code == crate::exit::Code::Conflict) =>
                {
                    load(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates a new key named `name` at `path`, failing if a file is there.
pub fn create(path: &Path, name: &str) -> Result<NoteSigner> {
    let key = NoteSigner::generate(name)
        .map_err(|e| Failure::usage(format!("key name {name:?}: {e}")))?;
    // The key is written whole to a private temporary file in the same
    // directory, then linked into place: the link fails if a key exists,
    // and a reader never sees a half-written key.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = || -> std::io::Result<tempfile::NamedTempFile> {
        // tempfile creates the file with mode 0600.
        let mut tmp = tempfile::Builder::new()
            .prefix(".patchaudit-key-")
            .tempfile_in(dir)?;
        tmp.write_all(format!("{}\n", key.to_text()).as_bytes())?;
        tmp.as_file().sync_all()?;
        Ok(tmp)
    };
    let tmp = write()
        .map_err(|e| Failure::error(format!("creating the signing key {}: {e}", path.display())))?;
    std::fs::hard_link(tmp.path(), path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::conflict(format!(
                "{} already exists; a signing key is never overwritten",
                path.display()
            ))
        } else {
            Failure::error(format!("creating the signing key {}: {e}", path.display()))
        }
    })?;
    Ok(key)
}

/// Loads the key at `path`. A missing file is "not found"; a file others
/// can read, or one that is not a key, is refused.
pub fn load(path: &Path) -> Result<NoteSigner> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::not_found(format!(
                "no signing key at {}; `patchaudit serve` creates one on first start, or run `patchaudit key generate`",
                path.display()
            ))
        } else {
            Failure::error(format!("reading the signing key {}: {e}", path.display()))
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Failure::usage(format!(
                "the signing key {} can be read by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ))
            .into());
        }
    }
    NoteSigner::parse(&text).map_err(|e| {
        Failure::usage(format!(
            "{} is not a patchaudit signing key: {e}",
            path.display()
        ))
        .into()
    })
}
