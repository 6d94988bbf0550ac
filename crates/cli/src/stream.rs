//! `patchaudit stream`: where each sink stands, the alerts raised, and the
//! webhook deliveries that gave up, from the database or a server.

use crate::backend::Backend;
use crate::commands::{backend, table};
use crate::exit::Failure;
use crate::{config::Config, ClientArgs};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use patchaudit_server::stream::alerts::{AlertOut, AlertPage};
use patchaudit_server::stream::status::{self, DeadLetterOut, Replayed, StreamStatus};
use patchaudit_server::stream::{webhook::WebhookSink, Sink};
use reqwest::Method;
use std::sync::Arc;

/// Table or JSON.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// A terminal table.
    Table,
    /// JSON, as the API returns it.
    Json,
}

/// `patchaudit stream`.
#[derive(Args, Clone)]
pub struct StreamArgs {
    #[command(subcommand)]
    command: StreamCommand,
}

#[derive(Subcommand, Clone)]
enum StreamCommand {
    /// Where each sink's cursor stands, and how far behind the ledger it is.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// The alerts raised, oldest first.
    Alerts {
        #[command(flatten)]
        client: ClientArgs,
        /// Only alerts after this id (the `next_after` of an earlier page).
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: u64,
        /// Only this rule.
        #[arg(long, value_parser = ["severe_failure", "bad_patch", "overdue"])]
        rule: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Webhook deliveries that failed every retry.
    DeadLetters {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this webhook's (`webhook:<hash>`, as listed).
        #[arg(long)]
        sink: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Deliver dead letters again; each one delivered is removed.
    Replay {
        #[command(flatten)]
        client: ClientArgs,
        /// The dead letters to replay.
        #[arg(value_name = "ID", required_unless_present = "all")]
        ids: Vec<u64>,
        /// Replay every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

impl StreamArgs {
    /// The client flags.
    pub fn client(&self) -> &ClientArgs {
        match &self.command {
            StreamCommand::Status { client, .. }
            | StreamCommand::Alerts { client, .. }
            | StreamCommand::DeadLetters { client, .. }
            | StreamCommand::Replay { client, .. } => client,
        }
    }
}

/// Runs `patchaudit stream`.
pub async fn run(config: &Config, a: StreamArgs) -> Result<()> {
    let b = backend(config, a.client(), true).await?;
    match a.command {
        StreamCommand::Status { format, .. } => {
            let s: StreamStatus = match &b {
                Backend::Local(store) => status::status(&**store)
                    .await
                    .map_err(crate::compliance::api_failure)?,
                Backend::Remote { .. } => {
                    b.call(Method::GET, "/v1/stream/status", &[], None).await?
                }
            };
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!(
                "ledger: {} events · latest alert: {} · dead letters: {}",
                s.ledger_len, s.last_alert, s.dead_letters
            );
            if s.cursors.is_empty() {
                println!("no sink has run yet");
                return Ok(());
            }
            let mut t = table();
            t.set_header(["CURSOR", "POSITION", "LAG", "UPDATED"]);
            for c in &s.cursors {
                t.add_row([
                    c.name.clone(),
                    c.position.to_string(),
                    c.lag.map_or_else(|| "-".to_owned(), |l| l.to_string()),
                    c.updated_at.clone(),
                ]);
            }
            println!("{t}");
        }
        StreamCommand::Alerts {
            after,
            rule,
            limit,
            format,
            ..
        } => {
            let page: AlertPage = match &b {
                Backend::Local(store) => {
                    let mut alerts = Vec::new();
                    let mut cursor = after;
                    loop {
                        let batch = store
                            .alerts(cursor, 1000)
                            .await
                            .map_err(|e| crate::compliance::api_failure(e.into()))?;
                        let done = batch.len() < 1000;
                        for x in &batch {
                            cursor = x.id;
                            if alerts.len() < limit as usize
                                && rule.as_deref().is_none_or(|r| r == x.rule)
                            {
                                alerts.push(AlertOut::from(x));
                            }
                        }
                        if done || alerts.len() == limit as usize {
                            break;
                        }
                    }
                    let next_after = (alerts.len() == limit as usize)
                        .then(|| alerts.last().map(|x| x.id))
                        .flatten();
                    AlertPage { alerts, next_after }
                }
                Backend::Remote { .. } => {
                    let mut q = vec![("after", after.to_string()), ("limit", limit.to_string())];
                    if let Some(r) = &rule {
                        q.push(("rule", r.clone()));
                    }
                    b.call(Method::GET, "/v1/alerts", &q, None).await?
                }
            };
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            if page.alerts.is_empty() {
                println!("no alerts");
                return Ok(());
            }
            let mut t = table();
            t.set_header(["ID", "RAISED", "RULE", "KEY"]);
            for x in &page.alerts {
                t.add_row([
                    x.id.to_string(),
                    x.raised_at.clone(),
                    x.rule.clone(),
                    x.key.clone(),
                ]);
            }
            println!("{t}");
            if let Some(n) = page.next_after {
                eprintln!("more: patchaudit stream alerts --after {n}");
            }
        }
        StreamCommand::DeadLetters { sink, format, .. } => {
            let letters = dead_letters(&b, sink.as_deref()).await?;
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
                return Ok(());
            }
            if letters.is_empty() {
                println!("no dead letters");
                return Ok(());
            }
            let mut t = table();
            t.set_header(["ID", "SINK", "MESSAGE", "ATTEMPTS", "FAILED", "ERROR"]);
            for l in &letters {
                t.add_row([
                    l.id.to_string(),
                    l.sink.clone(),
                    l.message_id.clone(),
                    l.attempts.to_string(),
                    l.failed_at.clone(),
                    l.error.clone(),
                ]);
            }
            println!("{t}");
        }
        StreamCommand::Replay { ids, all, .. } => {
            let ids: Vec<u64> = if all {
                dead_letters(&b, None).await?.iter().map(|l| l.id).collect()
            } else {
                ids
            };
            let mut failed = 0;
            for id in ids {
                match replay(&b, config, id).await {
                    Ok(r) => println!("replayed {} to {}", r.id, r.sink),
                    Err(e) => {
                        failed += 1;
                        eprintln!("dead letter {id}: {e:#}");
                    }
                }
            }
            if failed > 0 {
                return Err(Failure::unavailable(format!(
                    "{failed} dead letter(s) could not be delivered; they are kept"
                ))
                .into());
            }
        }
    }
    Ok(())
}

async fn dead_letters(b: &Backend, sink: Option<&str>) -> Result<Vec<DeadLetterOut>> {
    match b {
        Backend::Local(store) => Ok(store
            .dead_letters(sink)
            .await
            .map_err(|e| crate::compliance::api_failure(e.into()))?
            .into_iter()
            .map(DeadLetterOut::from)
            .collect()),
        Backend::Remote { .. } => {
            let q: Vec<(&str, String)> = sink.map(|s| ("sink", s.to_owned())).into_iter().collect();
            b.call(Method::GET, "/v1/stream/dead-letters", &q, None)
                .await
        }
    }
}

/// Replays one dead letter: through the server, or on the database with
/// the webhooks of this configuration.
async fn replay(b: &Backend, config: &Config, id: u64) -> Result<Replayed> {
    match b {
        Backend::Local(store) => {
            let letter = store
                .dead_letters(None)
                .await
                .map_err(|e| crate::compliance::api_failure(e.into()))?
                .into_iter()
                .find(|l| l.id == id)
                .ok_or_else(|| Failure::not_found(format!("no dead letter {id}")))?;
            let hooks = patchaudit_server::stream::webhooks(store, &config.stream_config());
            let hook: &Arc<WebhookSink> = hooks
                .iter()
                .find(|h| h.name() == letter.sink)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "dead letter {id} is for {}, which is not among the configured webhooks (webhook_urls)",
                        letter.sink
                    ))
                })?;
            hook.replay(&letter)
                .await
                .map_err(|e| Failure::unavailable(e.to_string()))?;
            Ok(Replayed {
                id,
                sink: letter.sink,
            })
        }
        Backend::Remote { .. } => {
            b.call(
                Method::POST,
                &format!("/v1/stream/dead-letters/{id}/replay"),
                &[],
                None,
            )
            .await
        }
    }
}
