//! `patchaudit token`: create, list and revoke API tokens.
//!
//! On the local database this needs no token at all: whoever can open the
//! database already controls the ledger. That is how the first admin token
//! is made; there is no default password and no open window at first start.
//! With `--server`, the commands go through the API with an admin token.

use crate::backend::{encode_segment, Backend};
use crate::commands::{backend, table};
use crate::compliance::api_failure;
use crate::{config::Config, ClientArgs};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use patchaudit_server::auth::{self, CreatedToken, TokenIn, TokenList, TokenOut};
use patchaudit_store::tokens;
use reqwest::Method;
use std::io::Write;

/// `patchaudit token`.
#[derive(Args, Clone)]
pub struct TokenArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

impl TokenArgs {
    /// The client flags.
    pub fn client(&self) -> &ClientArgs {
        &self.client
    }
}

/// How to show a created token.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum CreatedFormat {
    /// The bearer token alone on stdout; what it is on stderr.
    Token,
    /// JSON with the token and everything about it.
    Json,
}

/// Table or JSON.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ListFormat {
    /// A terminal table.
    Table,
    /// JSON, as the API returns it.
    Json,
}

#[derive(Subcommand, Clone)]
enum TokenCommand {
    /// Create a token; it is printed once and only its hash is kept.
    Create {
        /// A name for the token, such as agent-web-01 (shown in recorded_by).
        #[arg(long)]
        name: String,
        /// ingest, read or admin; repeat or separate with commas.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<String>,
        /// Only write events for systems matching this pattern (* and ?); repeatable.
        #[arg(long = "system", value_name = "PATTERN")]
        systems: Vec<String>,
        /// Only write events for systems with this key=value tag; repeatable.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "token")]
        format: CreatedFormat,
    },
    /// List every token (never their secrets).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
    },
    /// Revoke a token: every server refuses it from the next request on.
    Revoke {
        /// The token id (16 hex digits, as `token list` shows).
        id: String,
    },
}

/// Who a local change is recorded as: the operating-system user.
fn local_actor() -> String {
    crate::backend::local_principal()
}

/// Runs `patchaudit token`.
pub async fn run(config: &Config, a: TokenArgs) -> Result<()> {
    let server = a
        .client
        .server
        .clone()
        .or_else(|| config.server.value.clone());
    let b = match server {
        Some(_) => backend(config, &a.client, true).await?,
        // Only `create` may create the database (the first admin token is
        // made before the first `serve`); a mistyped --database-url for
        // `list` or `revoke` must not pass as an empty ledger.
        None if matches!(a.command, TokenCommand::Create { .. }) => {
            Backend::Local(crate::commands::open_store_for_records(config).await?)
        }
        None => Backend::Local(crate::commands::open_store(config, true).await?),
    };
    match a.command {
        TokenCommand::Create {
            name,
            scopes,
            systems,
            tags,
            format,
        } => {
            let input = TokenIn {
                name,
                scopes,
                systems,
                tags,
            };
            let created: CreatedToken = match &b {
                Backend::Local(store) => {
                    let (t, bearer) = auth::create_token(&**store, input, &local_actor())
                        .await
                        .map_err(api_failure)?;
                    CreatedToken {
                        token: bearer.reveal(),
                        info: TokenOut::from(&t),
                    }
                }
                Backend::Remote { .. } => {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "name": input.name, "scopes": input.scopes,
                        "systems": input.systems, "tags": input.tags,
                    }))?;
                    b.call(Method::POST, "/v1/tokens", &[], Some(body)).await?
                }
            };
            match format {
                CreatedFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&created)?);
                }
                CreatedFormat::Token => {
                    let i = &created.info;
                    eprintln!(
                        "created token {} (id {}) with scope {}{}; it is shown only now, so store it safely",
                        i.name,
                        i.id,
                        i.scopes.join(","),
                        restriction(i)
                    );
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", created.token)?;
                }
            }
            Ok(())
        }
        TokenCommand::List { format } => {
            let list: TokenList = match &b {
                Backend::Local(store) => TokenList {
                    tokens: tokens::list(&**store)
                        .await
                        .map_err(|e| api_failure(e.into()))?
                        .iter()
                        .map(TokenOut::from)
                        .collect(),
                },
                Backend::Remote { .. } => b.call(Method::GET, "/v1/tokens", &[], None).await?,
            };
            match format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                ListFormat::Table => {
                    if list.tokens.is_empty() {
                        println!("no tokens");
                        return Ok(());
                    }
                    let mut t = table();
                    t.set_header(["ID", "NAME", "SCOPES", "WRITES", "CREATED", "BY", "REVOKED"]);
                    for x in &list.tokens {
                        let writes = restriction(x);
                        t.add_row([
                            x.id.clone(),
                            x.name.clone(),
                            x.scopes.join(","),
                            if writes.is_empty() {
                                "any system".into()
                            } else {
                                writes.trim_start_matches("; writes ").to_owned()
                            },
                            x.created_at.clone(),
                            x.created_by.clone(),
                            match (&x.revoked_at, &x.revoked_by) {
                                (Some(at), Some(by)) => format!("{at} by {by}"),
                                _ => "-".into(),
                            },
                        ]);
                    }
                    println!("{t}");
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let out: TokenOut = match &b {
                Backend::Local(store) => TokenOut::from(
                    &tokens::revoke(&**store, &id, &local_actor())
                        .await
                        .map_err(|e| api_failure(e.into()))?,
                ),
                Backend::Remote { .. } => {
                    b.call(
                        Method::POST,
                        &format!("/v1/tokens/{}/revoke", encode_segment(&id)),
                        &[],
                        None,
                    )
                    .await?
                }
            };
            eprintln!(
                "token {} (id {}) is revoked since {}",
                out.name,
                out.id,
                out.revoked_at.as_deref().unwrap_or("now")
            );
            Ok(())
        }
    }
}

/// "; writes systems matching web-* or tagged env=prod", or "" for any system.
fn restriction(t: &TokenOut) -> String {
    let mut parts: Vec<String> = t.systems.iter().map(|p| format!("matching {p}")).collect();
    parts.extend(t.tags.iter().map(|x| format!("tagged {x}")));
    if parts.is_empty() {
        String::new()
    } else {
        format!("; writes systems {}", parts.join(" or "))
    }
}
