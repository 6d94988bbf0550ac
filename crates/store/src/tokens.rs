//! API tokens, kept as records of kind [`RecordKind::Token`].
//!
//! A token is created once and may later be revoked; both are revisions in
//! the append-only `records` table, so who created or revoked which token,
//! and when, is part of the tool's own audit trail and cannot be edited.
//! Only the SHA-256 of a token's secret is stored: the secret is 256 random
//! bits, so a slow password hash would add nothing but latency to every
//! request.

use crate::compliance::{Record, RecordChange, RecordKind};
use crate::{Store, StoreError};
use patchaudit_compliance::Tag;
use patchaudit_domain::access::{Scopes, SystemPattern, TokenName};
use patchaudit_domain::Timestamp;
use serde::{Deserialize, Serialize};

/// A token as stored: everything but its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The public id (16 lowercase hex digits).
    pub id: String,
    /// The human name.
    pub name: TokenName,
    /// What it may do.
    pub scopes: Scopes,
    /// Systems it may write events for, by pattern. With `tags`, empty in
    /// both means every system.
    pub systems: Vec<SystemPattern>,
    /// Systems it may write events for, by tag: a system carrying any of
    /// these tags.
    pub tags: Vec<Tag>,
    /// The SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// When and by whom it was revoked, if it was.
    pub revoked: Option<(Timestamp, String)>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is left out: with it, an offline guess could be checked.
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("systems", &self.systems)
            .field("tags", &self.tags)
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Whether the token may write events for any system (it has neither
    /// patterns nor tags).
    pub fn unrestricted(&self) -> bool {
        self.systems.is_empty() && self.tags.is_empty()
    }

    /// How the token appears in `recorded_by` and in the `changed_by` of
    /// records: its name and id, so the name reads well and the id is
    /// unambiguous.
    pub fn principal(&self) -> String {
        format!("{}#{}", self.name, self.id)
    }
}

#[derive(Serialize, Deserialize)]
struct TokenDoc {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    systems: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    secret_sha256: String,
    created_at: i64,
    created_by: String,
    #[serde(default)]
    revoked: bool,
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored token record {id:?}: {e}"))
}

fn encode(t: &Token) -> String {
    let doc = TokenDoc {
        name: t.name.as_str().to_owned(),
        scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        systems: t.systems.iter().map(|p| p.as_str().to_owned()).collect(),
        tags: t.tags.iter().map(|t| t.to_string()).collect(),
        secret_sha256: t.secret_sha256.clone(),
        created_at: t.created_at.as_micros(),
        created_by: t.created_by.clone(),
        revoked: t.revoked.is_some(),
    };
    serde_json::to_string(&doc).expect("a token document always serializes")
}

fn decode(r: &Record) -> Result<Token, StoreError> {
    let body = r
        .body
        .as_deref()
        .ok_or_else(|| corrupt(&r.id, "a token record has no body"))?;
    let d: TokenDoc = serde_json::from_str(body).map_err(|e| corrupt(&r.id, e))?;
    let name = TokenName::parse(&d.name, "name").map_err(|e| corrupt(&r.id, e))?;
    let scopes = Scopes::parse(&d.scopes, "scopes").map_err(|e| corrupt(&r.id, e))?;
    let systems = d
        .systems
        .iter()
        .map(|p| SystemPattern::parse(p, "systems"))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(&r.id, e))?;
    let tags = d
        .tags
        .iter()
        .map(|t| Tag::parse(t, "tags"))
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(&r.id, e))?;
    Ok(Token {
        id: r.id.clone(),
        name,
        scopes,
        systems,
        tags,
        secret_sha256: d.secret_sha256,
        created_at: Timestamp::from_micros(d.created_at),
        created_by: d.created_by,
        // The revision that revoked a token says when and by whom.
        revoked: d.revoked.then(|| (r.changed_at, r.changed_by.clone())),
    })
}

/// Whether a stored token revision is its revocation (for listing what
/// each revision did without decoding the whole token).
pub fn is_revocation(body: &str) -> bool {
    serde_json::from_str::<TokenDoc>(body).is_ok_and(|d| d.revoked)
}

/// Records a new token. `token.created_at` and `created_by` are taken as
/// given and any `revoked` is ignored. An id that already exists is an
/// internal error: ids are 64 random bits, so a clash means a bug, not bad
/// luck.
pub async fn create(store: &dyn Store, token: &Token) -> Result<Token, StoreError> {
    if !store
        .record_history(RecordKind::Token, &token.id)
        .await?
        .is_empty()
    {
        return Err(StoreError::Internal(format!(
            "token id {} already exists",
            token.id
        )));
    }
    let mut t = token.clone();
    t.revoked = None;
    let change = RecordChange {
        id: t.id.clone(),
        body: Some(encode(&t)),
    };
    let r = store
        .put_records(RecordKind::Token, vec![change], &t.created_by)
        .await?;
    r.first()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
        .and_then(decode)
}

/// The current state of one token, or `None` if no token has that id.
/// This is what authentication reads on every request, so a revocation
/// takes effect on the very next one.
pub async fn get(store: &dyn Store, id: &str) -> Result<Option<Token>, StoreError> {
    let history = store.record_history(RecordKind::Token, id).await?;
    history.last().map(decode).transpose()
}

/// Every token, revoked ones included, ordered by id.
pub async fn list(store: &dyn Store) -> Result<Vec<Token>, StoreError> {
    store
        .records(RecordKind::Token, None)
        .await?
        .iter()
        .map(decode)
        .collect()
}

/// Revokes a token as `actor`. Revoking a revoked token changes nothing
/// and returns it as it is; an unknown id is [`StoreError::NotFound`].
pub async fn revoke(store: &dyn Store, id: &str, actor: &str) -> Result<Token, StoreError> {
    let Some(mut t) = get(store, id).await? else {
        return Err(StoreError::NotFound(format!("no token has id {id:?}")));
    };
    if t.revoked.is_some() {
        return Ok(t);
    }
    t.revoked = Some((Timestamp::now(), actor.to_owned()));
    let change = RecordChange {
        id: t.id.clone(),
        body: Some(encode(&t)),
    };
    let r = store
        .put_records(RecordKind::Token, vec![change], actor)
        .await?;
    r.first()
        .ok_or_else(|| StoreError::Internal("put_records returned nothing".into()))
        .and_then(decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_its_codec() {
        let t = Token {
            id: "0123456789abcdef".into(),
            name: TokenName::parse("agent-web-01", "name").unwrap(),
            scopes: Scopes::parse(&["ingest,read"], "scopes").unwrap(),
            systems: vec![SystemPattern::parse("web-*", "systems").unwrap()],
            tags: vec![Tag::parse("env=prod", "tags").unwrap()],
            secret_sha256: "ab".repeat(32),
            created_at: Timestamp::from_micros(1_700_000_000_000_000),
            created_by: "local:root".into(),
            revoked: None,
        };
        let r = Record {
            id: t.id.clone(),
            rev: 1,
            changed_at: t.created_at,
            changed_by: t.created_by.clone(),
            body: Some(encode(&t)),
            changed: true,
        };
        assert_eq!(decode(&r).unwrap(), t);
        assert!(!is_revocation(r.body.as_deref().unwrap()));
        let revoked = Token {
            revoked: Some((t.created_at, "x".into())),
            ..t.clone()
        };
        assert!(is_revocation(&encode(&revoked)));
        assert_eq!(t.principal(), "agent-web-01#0123456789abcdef");
        assert!(
            !format!("{t:?}").contains(&t.secret_sha256),
            "no hash in Debug"
        );
        assert!(!t.unrestricted());
    }

    #[test]
    fn a_damaged_token_record_is_corrupt_not_a_panic() {
        let r = Record {
            id: "x".into(),
            rev: 1,
            changed_at: Timestamp::from_micros(0),
            changed_by: String::new(),
            body: Some(r#"{"name":"bad name","scopes":["read"],"secret_sha256":"","created_at":0,"created_by":""}"#.into()),
            changed: true,
        };
        assert!(matches!(decode(&r), Err(StoreError::Corrupt(_))));
    }
}
