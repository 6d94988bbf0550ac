//! `patchaudit changes`: the tool's own audit trail, from the database or
//! a server.

use crate::backend::Backend;
use crate::commands::{backend, table};
use crate::exit::Failure;
use crate::{config::Config, ClientArgs};
use anyhow::Result;
use clap::{Args, ValueEnum};
use patchaudit_server::changes::{self, ChangePage, MAX_PAGE};
use patchaudit_store::compliance::RecordKind;
use reqwest::Method;

/// Table or JSON.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// A terminal table.
    Table,
    /// JSON, as the API returns it (one page, with `next_after`).
    Json,
}

/// `patchaudit changes`.
#[derive(Args, Clone)]
pub struct ChangesArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only changes after this rev (the `next_after` of an earlier page).
    #[arg(long, value_name = "REV", default_value_t = 0)]
    after: u64,
    /// Only this kind of record.
    #[arg(long, value_parser = ["catalog", "system", "policy", "exception", "token", "inventory"])]
    kind: Option<String>,
    /// At most this many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl ChangesArgs {
    /// The client flags.
    pub fn client(&self) -> &ClientArgs {
        &self.client
    }
}

/// Runs `patchaudit changes`.
pub async fn run(config: &Config, a: ChangesArgs) -> Result<()> {
    if !(1..=MAX_PAGE as u64).contains(&a.limit) {
        return Err(
            Failure::usage(format!("--limit must be 1 to {MAX_PAGE}, got {}", a.limit)).into(),
        );
    }
    let b = backend(config, &a.client, true).await?;
    let page: ChangePage = match &b {
        Backend::Local(store) => {
            let kind = a.kind.as_deref().and_then(RecordKind::parse);
            changes::page(&**store, a.after, kind, a.limit as usize, true)
                .await
                .map_err(crate::compliance::api_failure)?
        }
        Backend::Remote { .. } => {
            let mut q = vec![
                ("after", a.after.to_string()),
                ("limit", a.limit.to_string()),
            ];
            if let Some(k) = &a.kind {
                q.push(("kind", k.clone()));
            }
            b.call(Method::GET, "/v1/changes", &q, None).await?
        }
    };
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&page)?),
        Format::Table => {
            if page.changes.is_empty() {
                println!("no changes");
                return Ok(());
            }
            let mut t = table();
            t.set_header(["REV", "WHEN", "BY", "KIND", "ID", "ACTION"]);
            for c in &page.changes {
                t.add_row([
                    c.rev.to_string(),
                    c.changed_at.clone(),
                    c.changed_by.clone(),
                    c.kind.clone(),
                    c.id.clone(),
                    c.action.clone(),
                ]);
            }
            println!("{t}");
            if let Some(n) = page.next_after {
                eprintln!("more: patchaudit changes --after {n}");
            }
        }
    }
    Ok(())
}
