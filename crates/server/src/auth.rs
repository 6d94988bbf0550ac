//! Authentication and authorisation: bearer tokens with scopes, per-token
//! rate limits, per-host write rights, and the token API.
//!
//! Every `/v1` route needs a token; which scope it needs follows from its
//! method and path by the rules of [`access`]. The middleware runs after
//! routing, so it sees the route's template (`/v1/events/{seq}`), never a
//! raw path an attacker could shape. A token is looked up in the store on
//! every request, so revoking it takes effect on the very next request,
//! on every server sharing the database.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use patchaudit_compliance::Tag;
use patchaudit_domain::access::{BearerToken, Scope, Scopes, SystemPattern, TokenName};
use patchaudit_domain::{ErrorCode, FieldError, IndexedFieldError, NewEvent, Timestamp};
use patchaudit_store::tokens::{self, Token};
use patchaudit_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token: health, readiness and the API
    /// description.
    Open,
    /// `/metrics`: open if the server is configured so, else `read`.
    Metrics,
    /// A token with this scope.
    Scope(Scope),
}

/// The access rule of a route, by its method and path template, or `None`
/// for a route the rules do not know (which is then refused to everyone).
///
/// The rules, in order:
/// - `GET /healthz`, `/readyz` and `/v1/openapi.json` are open; `/metrics`
///   is [`Access::Metrics`];
/// - anything under `/v1/tokens` needs `admin`;
/// - `POST /v1/events` and `PUT /v1/systems/{system}/inventory` need `ingest`;
/// - any other `GET` under `/v1/` needs `read`;
/// - any other method under `/v1/` (catalog, tags, policy, exceptions)
///   needs `admin`.
pub fn access(method: &Method, template: &str) -> Option<Access> {
    // axum answers HEAD with the GET handler, so it is judged as a GET.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let v1 = template.starts_with("/v1/");
    match (method, template) {
        (&Method::GET, "/healthz" | "/readyz" | "/v1/openapi.json") => Some(Access::Open),
        (&Method::GET, "/metrics") => Some(Access::Metrics),
        (_, t) if t == "/v1/tokens" || t.starts_with("/v1/tokens/") => {
            Some(Access::Scope(Scope::Admin))
        }
        (&Method::POST, "/v1/events") | (&Method::PUT, "/v1/systems/{system}/inventory") => {
            Some(Access::Scope(Scope::Ingest))
        }
        (&Method::GET, _) if v1 => Some(Access::Scope(Scope::Read)),
        (_, _) if v1 => Some(Access::Scope(Scope::Admin)),
        _ => None,
    }
}

/// The authenticated caller of a request, put in its extensions by the
/// middleware for handlers to read.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token the request presented.
    pub token: Arc<Token>,
}

impl Principal {
    /// How the caller is written in `recorded_by` and `changed_by`.
    pub fn label(&self) -> String {
        self.token.principal()
    }
}

/// Extracts who makes a request, for handlers that record it.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthorized("this endpoint needs a bearer token".into()))
    }
}

// Keyed by the token id's 64 bits: no allocation per request.
type KeyedLimiter = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock>;

/// A token bucket per token id.
pub struct Limiter {
    inner: Option<KeyedLimiter>,
}

impl Limiter {
    /// `per_second` requests per second per token, with bursts of up to
    /// `burst`; 0 requests per second turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Limiter {
        let inner = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Limiter { inner }
    }

    /// Takes one request from `key`'s bucket, or says how many whole seconds
    /// to wait (at least 1).
    fn check(&self, key: &str) -> Result<(), u64> {
        let Some(l) = &self.inner else {
            return Ok(());
        };
        // Ids are 16 hex digits; anything else shares one bucket rather
        // than escaping the limit.
        let key = u64::from_str_radix(key, 16).unwrap_or(u64::MAX);
        match l.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
            }
        }
    }
}

/// The SHA-256 of a token secret, hex: what the store keeps.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks a presented `Authorization` header value against the store.
/// Every failure is a 401 whose message says what is wrong without
/// repeating the secret.
pub async fn authenticate(store: &dyn Store, header: Option<&str>) -> Result<Token, ApiError> {
    let Some(value) = header else {
        return Err(ApiError::Unauthorized(
            "this endpoint needs a bearer token: send Authorization: Bearer pa_…".into(),
        ));
    };
    let Some(presented) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme".into(),
        ));
    };
    let token = BearerToken::parse(presented.trim())
        .map_err(|why| ApiError::Unauthorized(format!("not a patchaudit token: {why}")))?;
    let unknown = || ApiError::Unauthorized("the token is not recognised".into());
    let Some(stored) = tokens::get(store, token.id()).await? else {
        return Err(unknown());
    };
    let presented_hash = secret_hash(token.secret());
    if !bool::from(
        presented_hash
            .as_bytes()
            .ct_eq(stored.secret_sha256.as_bytes()),
    ) {
        return Err(unknown());
    }
    if let Some((at, _)) = &stored.revoked {
        return Err(ApiError::Unauthorized(format!(
            "token {} was revoked at {}",
            stored.id,
            at.to_rfc3339()
        )));
    }
    Ok(stored)
}

/// The middleware: finds the route's rule, authenticates, checks the
/// scope and the rate limit, and hands the handler a [`Principal`].
pub async fn require(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let rule = access(req.method(), &template);
    let needed = match rule {
        Some(Access::Open) => return Ok(next.run(req).await),
        Some(Access::Metrics) if st.config.metrics_public => return Ok(next.run(req).await),
        Some(Access::Metrics) => Scope::Read,
        Some(Access::Scope(s)) => s,
        None => {
            // Unreachable for documented routes (a test checks each one);
            // logged at debug so that probing cannot flood the log.
            tracing::debug!(method = %req.method(), route = %template, "route has no access rule; refused");
            return Err(ApiError::MethodNotAllowed);
        }
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let token = authenticate(st.store.as_ref(), header).await?;
    if !token.scopes.contains(needed) {
        return Err(ApiError::Forbidden {
            detail: format!(
                "token {} has scope {}; {} {} needs {}",
                token.principal(),
                token.scopes,
                req.method(),
                template,
                needed
            ),
            errors: Vec::new(),
        });
    }
    if let Err(retry_after_secs) = st.limiter.check(&token.id) {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    req.extensions_mut().insert(Principal {
        token: Arc::new(token),
    });
    Ok(next.run(req).await)
}

/// Refuses a write for one system (its inventory) that the token may not
/// write for, by the same rules as events: a matching system pattern, or a
/// tag the system carries.
pub async fn check_system(store: &dyn Store, token: &Token, system: &str) -> Result<(), ApiError> {
    if token.unrestricted() || token.systems.iter().any(|p| p.matches(system)) {
        return Ok(());
    }
    if !token.tags.is_empty() {
        let tags = patchaudit_store::compliance::tags_of(store, system).await?;
        if token.tags.iter().any(|want| tags.has(want)) {
            return Ok(());
        }
    }
    Err(ApiError::Forbidden {
        detail: format!(
            "token {} may not write for system {system:?}: it matches none of the token's systems or tags",
            token.principal()
        ),
        errors: Vec::new(),
    })
}

/// Refuses a batch holding events for systems the token may not write,
/// naming each such event. A token with neither patterns nor tags may
/// write for every system.
pub async fn check_systems(
    store: &dyn Store,
    token: &Token,
    events: &[NewEvent],
) -> Result<(), ApiError> {
    if token.unrestricted() {
        return Ok(());
    }
    use std::collections::{HashMap, HashSet};
    // The systems no pattern allows; only these need their tags.
    let unmatched: HashSet<&str> = events
        .iter()
        .map(|e| e.system.as_str())
        .filter(|s| !token.systems.iter().any(|p| p.matches(s)))
        .collect();
    let mut tagged: HashMap<&str, bool> = HashMap::new();
    if !token.tags.is_empty() && !unmatched.is_empty() {
        // A few systems: one point read each. Many (a collector's backlog,
        // an import): every system's tags in one read.
        if unmatched.len() <= 16 {
            for s in &unmatched {
                let tags = patchaudit_store::compliance::tags_of(store, s).await?;
                tagged.insert(s, token.tags.iter().any(|want| tags.has(want)));
            }
        } else {
            let all = patchaudit_store::compliance::system_tags(store, None).await?;
            for s in &unmatched {
                let t = all
                    .get(*s)
                    .is_some_and(|tags| token.tags.iter().any(|want| tags.has(want)));
                tagged.insert(s, t);
            }
        }
    }
    let mut errors = Vec::new();
    for (index, e) in events.iter().enumerate() {
        let system = e.system.as_str();
        if !unmatched.contains(system) {
            continue;
        }
        let tagged = tagged.get(system).copied().unwrap_or(false);
        if !tagged {
            errors.push(IndexedFieldError {
                index,
                error: FieldError::new(
                    "system",
                    ErrorCode::Forbidden,
                    format!(
                        "token {} may not write events for system {system:?}",
                        token.principal()
                    ),
                ),
            });
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut allowed: Vec<String> = token
        .systems
        .iter()
        .map(|p| format!("matching {p}"))
        .collect();
    allowed.extend(token.tags.iter().map(|t| format!("tagged {t}")));
    Err(ApiError::Forbidden {
        detail: format!(
            "{} event(s) name systems this token may not write (it may write systems {}); nothing was recorded",
            errors.len(),
            allowed.join(" or ")
        ),
        errors,
    })
}

// ---------------------------------------------------------------- tokens

/// A token to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    /// A name of 1–64 characters: ASCII letters, digits and `_ . : @ -`.
    #[schema(example = "agent-web-01")]
    pub name: String,
    /// One or more of `ingest`, `read` and `admin`.
    #[schema(example = json!(["ingest"]))]
    pub scopes: Vec<String>,
    /// Limits writes to systems matching any of these patterns (`*`, `?`).
    #[serde(default)]
    pub systems: Vec<String>,
    /// Limits writes to systems carrying any of these `key=value` tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A token as the API shows it: never its secret or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenOut {
    /// The public id.
    pub id: String,
    /// The name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// System patterns it may write (empty with `tags`: every system).
    pub systems: Vec<String>,
    /// System tags it may write.
    pub tags: Vec<String>,
    /// How it is written in `recorded_by`.
    pub principal: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revoked_at: Option<String>,
    /// Who revoked it, if anyone did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revoked_by: Option<String>,
}

impl From<&Token> for TokenOut {
    fn from(t: &Token) -> Self {
        TokenOut {
            id: t.id.clone(),
            name: t.name.to_string(),
            scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            systems: t.systems.iter().map(|p| p.to_string()).collect(),
            tags: t.tags.iter().map(|t| t.to_string()).collect(),
            principal: t.principal(),
            created_at: t.created_at.to_rfc3339(),
            created_by: t.created_by.clone(),
            revoked_at: t.revoked.as_ref().map(|(at, _)| at.to_rfc3339()),
            revoked_by: t.revoked.as_ref().map(|(_, by)| by.clone()),
        }
    }
}

/// A newly created token, with its secret, shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The bearer token to give the client. It is not stored and cannot be
    /// shown again.
    pub token: String,
    /// What the token is.
    #[serde(flatten)]
    pub info: TokenOut,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret must not reach a debug log.
        f.debug_struct("CreatedToken")
            .field("token", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// Every token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Ordered by id.
    pub tokens: Vec<TokenOut>,
}

/// Validates a token request, makes a fresh id and secret, and records
/// the token as `actor`. Shared with the CLI, which creates the first
/// admin token directly on the database.
pub async fn create_token(
    store: &dyn Store,
    input: TokenIn,
    actor: &str,
) -> Result<(Token, BearerToken), ApiError> {
    let mut errors = Vec::new();
    let name = TokenName::parse(&input.name, "name")
        .map_err(|e| errors.push(e))
        .ok();
    let scopes = Scopes::parse(&input.scopes, "scopes")
        .map_err(|e| errors.push(e))
        .ok();
    let systems: Vec<SystemPattern> = input
        .systems
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            SystemPattern::parse(p, &format!("systems[{i}]"))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    let tags: Vec<Tag> = input
        .tags
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            Tag::parse(t, &format!("tags[{i}]"))
                .map_err(|e| errors.push(e))
                .ok()
        })
        .collect();
    let (Some(name), Some(scopes), true) = (name, scopes, errors.is_empty()) else {
        return Err(ApiError::InvalidDocument(errors));
    };
    let bearer = new_bearer();
    let token = Token {
        id: bearer.id().to_owned(),
        name,
        scopes,
        systems,
        tags,
        secret_sha256: secret_hash(bearer.secret()),
        created_at: Timestamp::now(),
        created_by: actor.to_owned(),
        revoked: None,
    };
    let stored = tokens::create(store, &token).await?;
    Ok((stored, bearer))
}

/// A fresh token: a 64-bit id and a 256-bit secret from the OS's CSPRNG.
fn new_bearer() -> BearerToken {
    use rand::RngCore;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    BearerToken::from_parts(&hex::encode(id), &URL_SAFE_NO_PAD.encode(secret))
        .expect("a fresh id and secret always form a valid token")
}

/// Creates a token. The response carries the secret token once; only its
/// hash is stored.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    request_body = TokenIn,
    responses(
        (status = 201, description = "The new token, with its secret shown this once", body = CreatedToken),
        (status = 400, description = "The body is not well-formed JSON of the documented shape; the problem names the line and column", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within the body timeout", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over its limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The request breaks a rule; `errors` names each field", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn post_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let bytes = crate::api::read_body(body, st.config.max_body_bytes).await?;
    let crate::wire::Object(input) = serde_json::from_slice::<crate::wire::Object<TokenIn>>(&bytes)
        .map_err(|e| ApiError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let (token, bearer) = create_token(st.store.as_ref(), input, &who.label()).await?;
    tracing::info!(token = %token.principal(), scopes = %token.scopes, by = %who.label(), "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: bearer.reveal(),
            info: TokenOut::from(&token),
        }),
    ))
}

/// Every token, revoked ones included; never their secrets.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "Tokens", body = TokenList))
)]
async fn list_tokens(State(st): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = tokens::list(st.store.as_ref()).await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(TokenOut::from).collect(),
    }))
}

/// One token.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token id (16 hex digits)")),
    responses(
        (status = 200, description = "The token", body = TokenOut),
        (status = 404, description = "No such token", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn get_token(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenOut>, ApiError> {
    match tokens::get(st.store.as_ref(), &id).await? {
        Some(t) => Ok(Json(TokenOut::from(&t))),
        None => Err(ApiError::NotFound(format!("no token has id {id:?}"))),
    }
}

/// Revokes a token: from the next request on, it is refused everywhere.
/// Revoking a revoked token changes nothing.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens",
    params(("id" = String, Path, description = "The token id (16 hex digits)")),
    responses(
        (status = 200, description = "The revoked token", body = TokenOut),
        (status = 404, description = "No such token", body = crate::error::Problem, content_type = "application/problem+json")
    )
)]
async fn post_revoke_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenOut>, ApiError> {
    let t = tokens::revoke(st.store.as_ref(), &id, &who.label()).await?;
    tracing::info!(token = %t.principal(), by = %who.label(), "token revoked");
    Ok(Json(TokenOut::from(&t)))
}

/// The token routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_tokens, post_token))
        .routes(routes!(get_token))
        .routes(routes!(post_revoke_token))
}

/// Writes the access rules into the OpenAPI document: a `bearer` security
/// scheme, each operation's required scope, and the problem responses
/// every secured operation can give (401, 403, 429, 503). Clients and
/// fuzzers then know exactly what each route needs.
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    let problem = |what: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, op) in ops {
            let Some(op) = op.as_mut() else { continue };
            let scope = match access(&method, path) {
                Some(Access::Open) => {
                    op.security = Some(vec![SecurityRequirement::default()]);
                    continue;
                }
                Some(Access::Metrics) => {
                    op.security = Some(vec![
                        SecurityRequirement::default(),
                        SecurityRequirement::new("bearer", ["read"]),
                    ]);
                    Scope::Read
                }
                Some(Access::Scope(s)) => {
                    op.security = Some(vec![SecurityRequirement::new("bearer", [s.as_str()])]);
                    s
                }
                None => continue,
            };
            let r = &mut op.responses.responses;
            r.entry("401".into())
                .or_insert_with(|| problem("No token, or a malformed, unknown or revoked one"));
            r.entry("403".into())
                .or_insert_with(|| problem(&format!("The token lacks the {scope} scope")));
            r.entry("429".into())
                .or_insert_with(|| problem("The token is over its request rate; see Retry-After"));
            r.entry("503".into()).or_insert_with(|| {
                problem("The server is busy or its database is unavailable; see Retry-After")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_give_each_kind_of_route_its_scope() {
        let r = |m: Method, p: &str| access(&m, p);
        assert_eq!(r(Method::GET, "/healthz"), Some(Access::Open));
        assert_eq!(r(Method::GET, "/v1/openapi.json"), Some(Access::Open));
        assert_eq!(r(Method::GET, "/metrics"), Some(Access::Metrics));
        assert_eq!(
            r(Method::POST, "/v1/events"),
            Some(Access::Scope(Scope::Ingest))
        );
        assert_eq!(
            r(Method::GET, "/v1/events"),
            Some(Access::Scope(Scope::Read))
        );
        assert_eq!(
            r(Method::GET, "/v1/tokens"),
            Some(Access::Scope(Scope::Admin))
        );
        assert_eq!(
            r(Method::PUT, "/v1/policy"),
            Some(Access::Scope(Scope::Admin))
        );
        assert_eq!(r(Method::HEAD, "/healthz"), Some(Access::Open));
        assert_eq!(
            r(Method::HEAD, "/v1/events"),
            Some(Access::Scope(Scope::Read))
        );
        assert_eq!(r(Method::POST, "/healthz"), None);
        assert_eq!(r(Method::GET, "/elsewhere"), None);
    }

    #[test]
    fn every_documented_route_has_a_rule() {
        let doc = serde_json::to_value(crate::openapi()).unwrap();
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let m: Method = method.to_uppercase().parse().unwrap();
                assert!(
                    access(&m, path).is_some(),
                    "{method} {path} has no access rule"
                );
                n += 1;
            }
        }
        assert!(n > 20, "only {n} operations documented");
    }

    #[test]
    fn the_limiter_refuses_past_the_burst_and_says_when_to_retry() {
        let l = Limiter::new(1, 2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(l.check("b").is_ok(), "buckets are per token");
        let off = Limiter::new(0, 0);
        assert!((0..1000).all(|_| off.check("a").is_ok()));
    }

    #[test]
    fn a_fresh_token_is_valid_random_and_hashable() {
        let a = new_bearer();
        let b = new_bearer();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.secret(), b.secret());
        assert_eq!(BearerToken::parse(&a.reveal()).unwrap(), a);
        assert_eq!(secret_hash(a.secret()).len(), 64);
    }
}
