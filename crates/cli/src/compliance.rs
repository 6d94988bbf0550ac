//! The compliance commands: `catalog`, `tags`, `policy`, `exception` and
//! `report`. Each works on the local database or, with `--server`, through
//! the API, and gives the same answers either way.

use crate::backend::{encode_segment, Backend};
use crate::commands::{backend, table};
use crate::config::Config;
use crate::exit::Failure;
use crate::ClientArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use patchaudit_compliance::osv;
use patchaudit_compliance::report::ReportFilter;
use patchaudit_compliance::{AppliesTo, CatalogEntry, Tag, Tags};
use patchaudit_domain::{SystemId, Timestamp};
use patchaudit_server::compliance::{
    self as api, CatalogIn, CatalogOut, CatalogPage, CatalogWriteOut, ExceptionIn, ExceptionList,
    ExceptionOut, HistoryOut, PolicyOut, PolicyWire, ReportFormat, RevisionOut, TagsIn, TagsOut,
};
use patchaudit_server::error::ApiError;
use patchaudit_server::report_out::ReportOut;
use patchaudit_store::compliance::{self as records, RecordChange, RecordKind};
use reqwest::Method;
use std::io::Write;
use std::path::PathBuf;

/// Who a local change is recorded as: `local:$USER`, as for events written
/// straight to the database. Through a server, the server records the
/// token's principal instead.
fn actor() -> String {
    crate::backend::local_principal()
}

/// Turns an API error met in local mode into a failure with the right exit code.
pub(crate) fn api_failure(e: ApiError) -> anyhow::Error {
    let (status, problem) = e.to_problem();
    let mut f = match status.as_u16() {
        400 | 413 | 415 | 422 => Failure::invalid(problem.detail.clone()),
        404 => Failure::not_found(problem.detail.clone()),
        503 => Failure::unavailable(problem.detail.clone()),
        _ => Failure::error(problem.detail.clone()),
    };
    f.details = problem
        .errors
        .iter()
        .map(|e| format!("{}: {} [{}]", e.field, e.message, e.code))
        .collect();
    f.into()
}

fn store_err(e: patchaudit_store::StoreError) -> anyhow::Error {
    api_failure(ApiError::from(e))
}

fn invalid(errors: Vec<patchaudit_domain::FieldError>, what: &str) -> anyhow::Error {
    let mut f = Failure::invalid(format!("{what} is invalid; nothing was written"));
    f.details = errors.iter().map(|e| e.to_string()).collect();
    f.into()
}

fn parse_time(v: &str, flag: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(v).map_err(|m| Failure::usage(format!("{flag} {m}")).into())
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// Table or JSON.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShowFormat {
    /// A terminal table.
    Table,
    /// JSON, as the API returns it.
    Json,
}

// ---------------------------------------------------------------- catalog

/// `patchaudit catalog`.
#[derive(Args, Clone)]
pub struct CatalogArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: CatalogCommand,
}

#[derive(Subcommand, Clone)]
enum CatalogCommand {
    /// Create or replace entries from a JSON file (one entry or an array; `-` for stdin).
    Put {
        /// The file.
        file: PathBuf,
    },
    /// Import OSV advisories (osv.dev, Debian, Ubuntu, Red Hat, Alma, Rocky, SUSE, GHSA...).
    ImportOsv {
        /// OSV JSON files, each one record or an array of records.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Apply the imported entries only to systems with this key=value tag (repeatable: all must match).
        #[arg(
            long = "applies-to-tag",
            value_name = "KEY=VALUE",
            conflicts_with = "applies_to_system"
        )]
        applies_to_tag: Vec<String>,
        /// Apply the imported entries only to these systems (repeatable).
        #[arg(long = "applies-to-system", value_name = "SYSTEM")]
        applies_to_system: Vec<String>,
    },
    /// Show one entry.
    Get {
        /// The patch id.
        id: String,
        /// The entry as it stood at this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ShowFormat,
    },
    /// List entries.
    List {
        /// Only these comma-separated severities.
        #[arg(long)]
        severity: Option<String>,
        /// Only entries fixing this CVE.
        #[arg(long)]
        cve: Option<String>,
        /// The catalog as it stood at this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ShowFormat,
    },
    /// Who changed an entry, what, and when.
    History {
        /// The patch id.
        id: String,
    },
    /// Delete an entry (its history stays).
    Delete {
        /// The patch id.
        id: String,
    },
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

async fn put_entries(b: &Backend, entries: Vec<CatalogEntry>) -> Result<CatalogWriteOut> {
    match b {
        Backend::Local(store) => {
            let recs = records::put_catalog(&**store, &entries, &actor())
                .await
                .map_err(store_err)?;
            let changed = recs.iter().filter(|r| r.changed).count();
            Ok(CatalogWriteOut {
                changed,
                unchanged: recs.len() - changed,
            })
        }
        Backend::Remote { .. } => {
            // In chunks under the server's default max_batch; each chunk is
            // all or nothing, and re-sending a chunk changes nothing.
            let mut total = CatalogWriteOut {
                changed: 0,
                unchanged: 0,
            };
            for chunk in entries.chunks(5_000) {
                let body: Vec<CatalogIn> = chunk.iter().map(CatalogIn::from).collect();
                let out: CatalogWriteOut = b
                    .call(
                        Method::POST,
                        "/v1/catalog",
                        &[],
                        Some(serde_json::to_vec(&body)?),
                    )
                    .await?;
                total.changed += out.changed;
                total.unchanged += out.unchanged;
            }
            Ok(total)
        }
    }
}

/// Runs `patchaudit catalog`.
pub async fn catalog(config: &Config, a: CatalogArgs) -> Result<()> {
    let reads_only = matches!(
        a.command,
        CatalogCommand::Get { .. } | CatalogCommand::List { .. } | CatalogCommand::History { .. }
    );
    let b = backend(config, &a.client, reads_only).await?;
    match a.command {
        CatalogCommand::Put { file } => {
            let bytes = read_input(&file)?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::invalid(format!("{}: not JSON: {e}", file.display())))?;
            let items: Vec<CatalogIn> = match v {
                serde_json::Value::Array(_) => serde_json::from_value(v),
                other => serde_json::from_value(other).map(|one| vec![one]),
            }
            .map_err(|e| Failure::invalid(format!("{}: {e}", file.display())))?;
            let mut entries = Vec::new();
            let mut errors = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item.parse(None) {
                    Ok(e) => entries.push(e),
                    Err(errs) => errors.extend(errs.into_iter().map(|e| {
                        patchaudit_domain::FieldError::new(
                            format!("[{i}].{}", e.field),
                            e.code,
                            e.message,
                        )
                    })),
                }
            }
            if !errors.is_empty() {
                return Err(invalid(errors, &file.display().to_string()));
            }
            let out = put_entries(&b, entries).await?;
            println!(
                "{} entries written, {} already current",
                out.changed, out.unchanged
            );
            Ok(())
        }
        CatalogCommand::ImportOsv {
            files,
            applies_to_tag,
            applies_to_system,
        } => {
            let applies_to = if !applies_to_tag.is_empty() {
                AppliesTo::Tags(
                    applies_to_tag
                        .iter()
                        .map(|t| {
                            Tag::parse(t, "--applies-to-tag")
                                .map_err(|e| Failure::usage(e.to_string()))
                        })
                        .collect::<Result<_, _>>()?,
                )
            } else if !applies_to_system.is_empty() {
                AppliesTo::Systems(
                    applies_to_system
                        .iter()
                        .map(|s| {
                            SystemId::parse(s.clone()).map_err(|(_, m)| {
                                Failure::usage(format!("--applies-to-system {m}"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                )
            } else {
                AppliesTo::All
            };
            let mut entries = Vec::new();
            let mut failed = 0usize;
            let mut no_severity = Vec::new();
            for file in &files {
                let bytes = read_input(file)?;
                let results = osv::import_many(&bytes, applies_to.clone())
                    .map_err(|e| Failure::invalid(format!("{}: {e}", file.display())))?;
                for r in results {
                    match r {
                        Ok(imp) => {
                            for w in &imp.warnings {
                                eprintln!("warning: {}: {}: {w}", file.display(), imp.entry.id);
                            }
                            if imp.entry.severity == patchaudit_compliance::Severity::None {
                                no_severity.push(imp.entry.id.as_str().to_owned());
                            }
                            entries.push(imp.entry);
                        }
                        Err(e) => {
                            failed += 1;
                            eprintln!("error: {}: {e}", file.display());
                        }
                    }
                }
            }
            let out = put_entries(&b, entries).await?;
            println!(
                "{} entries written, {} already current, {} records rejected",
                out.changed, out.unchanged, failed
            );
            if !no_severity.is_empty() {
                eprintln!(
                    "warning: {} entries have no usable severity and were imported as none: {}",
                    no_severity.len(),
                    no_severity.join(", ")
                );
            }
            if failed > 0 {
                return Err(Failure::invalid(format!(
                    "{failed} OSV records could not be imported (listed above); the rest were"
                ))
                .into());
            }
            Ok(())
        }
        CatalogCommand::Get { id, as_of, format } => {
            let as_of = as_of.map(|t| parse_time(&t, "--as-of")).transpose()?;
            let out: CatalogOut = match &b {
                Backend::Local(store) => api::catalog_entry_out(&**store, &id, as_of)
                    .await
                    .map_err(api_failure)?,
                Backend::Remote { .. } => {
                    let q: Vec<(&str, String)> =
                        as_of.iter().map(|t| ("as_of", t.to_rfc3339())).collect();
                    b.call(
                        Method::GET,
                        &format!("/v1/catalog/{}", encode_segment(&id)),
                        &q,
                        None,
                    )
                    .await?
                }
            };
            match format {
                ShowFormat::Json => print_json(&out),
                ShowFormat::Table => {
                    let e = &out.entry;
                    let mut t = table();
                    let applies = match &e.applies_to {
                        None => "all systems".to_owned(),
                        Some(a) => a
                            .tags
                            .as_ref()
                            .map(|t| format!("tags {}", t.join(",")))
                            .or_else(|| {
                                a.systems
                                    .as_ref()
                                    .map(|s| format!("systems {}", s.join(",")))
                            })
                            .unwrap_or_default(),
                    };
                    let packages: Vec<String> = e
                        .packages
                        .iter()
                        .map(|p| {
                            format!(
                                "{} {} (fixed {})",
                                p.ecosystem,
                                p.name,
                                p.fixed.as_deref().unwrap_or("-")
                            )
                        })
                        .collect();
                    for (k, v) in [
                        ("id", e.id.clone().unwrap_or_default()),
                        ("title", e.title.clone().unwrap_or_default()),
                        ("severity", e.severity.clone().unwrap_or_default()),
                        ("released", e.released_at.clone().unwrap_or_default()),
                        ("cves", e.cves.join(" ")),
                        ("applies to", applies),
                        ("packages", packages.join("\n")),
                        (
                            "revision",
                            out.revision
                                .as_ref()
                                .map(|r| {
                                    format!("{} at {} by {}", r.rev, r.changed_at, r.changed_by)
                                })
                                .unwrap_or_default(),
                        ),
                    ] {
                        t.add_row([k.to_owned(), v]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        CatalogCommand::List {
            severity,
            cve,
            as_of,
            format,
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(s) = &severity {
                api::parse_severities(s).map_err(|m| Failure::usage(format!("--severity {m}")))?;
                q.push(("severity", s.clone()));
            }
            if let Some(c) = &cve {
                q.push(("cve", c.clone()));
            }
            if let Some(t) = &as_of {
                q.push(("as_of", parse_time(t, "--as-of")?.to_rfc3339()));
            }
            let page: CatalogPage = match &b {
                Backend::Local(store) => {
                    let sev = severity
                        .as_deref()
                        .map(api::parse_severities)
                        .transpose()
                        .map_err(Failure::usage)?;
                    let at = as_of
                        .as_deref()
                        .map(|t| parse_time(t, "--as-of"))
                        .transpose()?;
                    let entries = records::catalog(&**store, at).await.map_err(store_err)?;
                    CatalogPage {
                        entries: entries
                            .iter()
                            .filter(|e| sev.as_ref().is_none_or(|s| s.contains(&e.severity)))
                            .filter(|e| {
                                cve.as_deref()
                                    .is_none_or(|c| e.cves.iter().any(|x| x.as_str() == c))
                            })
                            .map(|e| CatalogOut {
                                entry: CatalogIn::from(e),
                                revision: None,
                            })
                            .collect(),
                    }
                }
                Backend::Remote { .. } => b.call(Method::GET, "/v1/catalog", &q, None).await?,
            };
            match format {
                ShowFormat::Json => print_json(&page),
                ShowFormat::Table => {
                    if page.entries.is_empty() {
                        println!("the catalog is empty");
                        return Ok(());
                    }
                    let mut t = table();
                    t.set_header(["ID", "SEVERITY", "RELEASED", "CVES", "TITLE"]);
                    for e in &page.entries {
                        let e = &e.entry;
                        t.add_row([
                            e.id.clone().unwrap_or_default(),
                            e.severity.clone().unwrap_or_default(),
                            e.released_at.clone().unwrap_or_default(),
                            e.cves.len().to_string(),
                            e.title.clone().unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        CatalogCommand::History { id } => {
            let h: HistoryOut = match &b {
                Backend::Local(store) => api::catalog_history_out(&**store, &id)
                    .await
                    .map_err(api_failure)?,
                Backend::Remote { .. } => {
                    b.call(
                        Method::GET,
                        &format!("/v1/catalog/{}/history", encode_segment(&id)),
                        &[],
                        None,
                    )
                    .await?
                }
            };
            print_json(&h)
        }
        CatalogCommand::Delete { id } => {
            match &b {
                Backend::Local(store) => {
                    store
                        .put_records(
                            RecordKind::Catalog,
                            vec![RecordChange {
                                id: id.clone(),
                                body: None,
                            }],
                            &actor(),
                        )
                        .await
                        .map_err(store_err)?;
                }
                Backend::Remote { .. } => {
                    b.call_empty(
                        Method::DELETE,
                        &format!("/v1/catalog/{}", encode_segment(&id)),
                    )
                    .await?;
                }
            }
            println!("deleted {id}");
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- tags

/// `patchaudit tags`.
#[derive(Args, Clone)]
pub struct TagsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The system.
    system: String,
    /// Replace the system's tags with these key=value tags; none to show them.
    tags: Vec<String>,
    /// Remove every tag.
    #[arg(long, conflicts_with = "tags")]
    clear: bool,
}

/// Runs `patchaudit tags`.
pub async fn tags(config: &Config, a: TagsArgs) -> Result<()> {
    let setting = a.clear || !a.tags.is_empty();
    let b = backend(config, &a.client, !setting).await?;
    let out: TagsOut = if setting {
        match &b {
            Backend::Local(store) => {
                let id = SystemId::parse(a.system.clone())
                    .map_err(|(_, m)| Failure::invalid(format!("system {m}")))?;
                let tags = Tags::parse(a.tags.iter().map(String::as_str), "tags")
                    .map_err(|e| invalid(vec![e], "the tag list"))?;
                let rec = records::set_system_tags(&**store, &id, &tags, &actor())
                    .await
                    .map_err(store_err)?;
                TagsOut {
                    system: a.system.clone(),
                    tags: tags.to_strings(),
                    revision: Some(RevisionOut::from(&rec)),
                }
            }
            Backend::Remote { .. } => {
                let body = serde_json::to_vec(&TagsIn {
                    tags: a.tags.clone(),
                })?;
                b.call(
                    Method::PUT,
                    &format!("/v1/systems/{}/tags", encode_segment(&a.system)),
                    &[],
                    Some(body),
                )
                .await?
            }
        }
    } else {
        match &b {
            Backend::Local(store) => {
                let all = records::system_tags(&**store, None)
                    .await
                    .map_err(store_err)?;
                TagsOut {
                    system: a.system.clone(),
                    tags: all.get(&a.system).map(Tags::to_strings).unwrap_or_default(),
                    revision: None,
                }
            }
            Backend::Remote { .. } => {
                b.call(
                    Method::GET,
                    &format!("/v1/systems/{}/tags", encode_segment(&a.system)),
                    &[],
                    None,
                )
                .await?
            }
        }
    };
    if out.tags.is_empty() {
        println!("{}: no tags", out.system);
    } else {
        println!("{}: {}", out.system, out.tags.join(" "));
    }
    Ok(())
}

// ---------------------------------------------------------------- policy

/// `patchaudit policy`.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Replace the policy with this JSON file (`-` for stdin); without it, print the policy.
    #[arg(long, value_name = "FILE")]
    set: Option<PathBuf>,
}

/// Runs `patchaudit policy`.
pub async fn policy(config: &Config, a: PolicyArgs) -> Result<()> {
    let b = backend(config, &a.client, a.set.is_none()).await?;
    let out: PolicyOut = match (&a.set, &b) {
        (Some(file), Backend::Local(store)) => {
            let wire: PolicyWire = serde_json::from_slice(&read_input(file)?)
                .map_err(|e| Failure::invalid(format!("{}: {e}", file.display())))?;
            let p = wire.parse().map_err(|e| invalid(e, "the policy"))?;
            let rec = records::put_policy(&**store, &p, &actor())
                .await
                .map_err(store_err)?;
            PolicyOut {
                policy: PolicyWire::from(&p),
                revision: Some(RevisionOut::from(&rec)),
            }
        }
        (Some(file), Backend::Remote { .. }) => {
            b.call(Method::PUT, "/v1/policy", &[], Some(read_input(file)?))
                .await?
        }
        (None, Backend::Local(store)) => api::policy_out(&**store).await.map_err(api_failure)?,
        (None, Backend::Remote { .. }) => b.call(Method::GET, "/v1/policy", &[], None).await?,
    };
    print_json(&out)
}

// ---------------------------------------------------------------- exceptions

/// `patchaudit exception`.
#[derive(Args, Clone)]
pub struct ExceptionArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ExceptionCommand,
}

#[derive(Subcommand, Clone)]
enum ExceptionCommand {
    /// Accept the risk of a missing patch on a system or tag scope, until a date.
    Add {
        /// The patch.
        #[arg(long)]
        patch_id: String,
        /// One system...
        #[arg(long, required_unless_present = "tag", conflicts_with = "tag")]
        system: Option<String>,
        /// ...or every system with this key=value tag.
        #[arg(long)]
        tag: Option<String>,
        /// Why the risk is accepted.
        #[arg(long)]
        reason: String,
        /// Who approved it.
        #[arg(long)]
        approver: String,
        /// When it stops counting (RFC 3339).
        #[arg(long, value_name = "TIME")]
        expires_at: String,
    },
    /// List exceptions.
    List {
        /// Only those that count now.
        #[arg(long)]
        active: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ShowFormat,
    },
    /// Revoke an exception now; it stays in the history.
    Revoke {
        /// The exception id.
        id: String,
    },
}

/// Runs `patchaudit exception`.
pub async fn exception(config: &Config, a: ExceptionArgs) -> Result<()> {
    let reads_only = matches!(a.command, ExceptionCommand::List { .. });
    let b = backend(config, &a.client, reads_only).await?;
    match a.command {
        ExceptionCommand::Add {
            patch_id,
            system,
            tag,
            reason,
            approver,
            expires_at,
        } => {
            let input = ExceptionIn {
                patch_id: Some(patch_id),
                system,
                tag,
                reason: Some(reason),
                approver: Some(approver),
                expires_at: Some(expires_at),
            };
            let out: ExceptionOut = match &b {
                Backend::Local(store) => {
                    let x = api::create_exception(&**store, input, &actor())
                        .await
                        .map_err(api_failure)?;
                    ExceptionOut::new(&x, Timestamp::now())
                }
                Backend::Remote { .. } => {
                    b.call(
                        Method::POST,
                        "/v1/exceptions",
                        &[],
                        Some(serde_json::to_vec(&input)?),
                    )
                    .await?
                }
            };
            println!("{}", out.id);
            Ok(())
        }
        ExceptionCommand::List { active, format } => {
            let list: ExceptionList = match &b {
                Backend::Local(store) => {
                    let now = Timestamp::now();
                    ExceptionList {
                        exceptions: records::exceptions(&**store, None)
                            .await
                            .map_err(store_err)?
                            .iter()
                            .map(|x| ExceptionOut::new(x, now))
                            .filter(|x| !active || x.active)
                            .collect(),
                    }
                }
                Backend::Remote { .. } => {
                    let q: Vec<(&str, String)> = if active {
                        vec![("active", "true".into())]
                    } else {
                        vec![]
                    };
                    b.call(Method::GET, "/v1/exceptions", &q, None).await?
                }
            };
            match format {
                ShowFormat::Json => print_json(&list),
                ShowFormat::Table => {
                    if list.exceptions.is_empty() {
                        println!("no exceptions");
                        return Ok(());
                    }
                    let mut t = table();
                    t.set_header([
                        "ID", "PATCH", "SCOPE", "EXPIRES", "ACTIVE", "APPROVER", "REASON",
                    ]);
                    for x in &list.exceptions {
                        t.add_row([
                            x.id.clone(),
                            x.patch_id.clone(),
                            x.system.clone().or(x.tag.clone()).unwrap_or_default(),
                            x.expires_at.clone(),
                            if x.active { "yes" } else { "no" }.to_owned(),
                            x.approver.clone(),
                            x.reason.clone(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        ExceptionCommand::Revoke { id } => {
            let out: ExceptionOut = match &b {
                Backend::Local(store) => {
                    let x = api::revoke_exception(&**store, &id, &actor())
                        .await
                        .map_err(api_failure)?;
                    ExceptionOut::new(&x, Timestamp::now())
                }
                Backend::Remote { .. } => {
                    b.call(
                        Method::POST,
                        &format!("/v1/exceptions/{}/revoke", encode_segment(&id)),
                        &[],
                        None,
                    )
                    .await?
                }
            };
            println!(
                "revoked {} at {}",
                out.id,
                out.revoked_at.unwrap_or_default()
            );
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- report

/// Output formats of `report`.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReportOutput {
    /// Summary and lists as terminal tables.
    Table,
    /// The full report as JSON.
    Json,
    /// The overdue and failure lists as CSV.
    Csv,
    /// The per-system table as CSV.
    SystemsCsv,
    /// The per-patch table as CSV.
    PatchesCsv,
    /// Every required pair as CSV, with its state, first attempt, first
    /// success, attempts and time to patch.
    PairsCsv,
    /// A self-contained HTML report with charts, for auditors.
    Html,
}

/// `patchaudit report`.
#[derive(Args, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The report as the ledger stood at this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// With --as-of: use exactly the events below this checkpoint size, as a
    /// report names it, to derive that report again.
    #[arg(long, value_name = "SIZE", requires = "as_of")]
    checkpoint: Option<u64>,
    /// Only systems with this key=value tag (repeatable: all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Vec<String>,
    /// Only patches of these comma-separated severities.
    #[arg(long)]
    severity: Option<String>,
    /// Only this system.
    #[arg(long)]
    system: Option<String>,
    /// Only this patch.
    #[arg(long)]
    patch_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ReportOutput,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also list every required pair in the JSON (`pairs`); implied by --format pairs-csv.
    #[arg(long)]
    pairs: bool,
    /// Exit with code 8 when any required pair is overdue (for CI gates).
    #[arg(long)]
    fail_on_overdue: bool,
}

/// Runs `patchaudit report`.
pub async fn report(config: &Config, a: ReportArgs) -> Result<()> {
    let as_of = a
        .as_of
        .as_deref()
        .map(|t| parse_time(t, "--as-of"))
        .transpose()?;
    if as_of.is_some_and(|t| t > Timestamp::now()) {
        return Err(Failure::usage(
            "--as-of must be a past instant: a report as of the future would change",
        )
        .into());
    }
    let tags: Vec<Tag> = a
        .tag
        .iter()
        .map(|t| Tag::parse(t, "--tag").map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<_, _>>()?;
    let severities = a
        .severity
        .as_deref()
        .map(api::parse_severities)
        .transpose()
        .map_err(|m| Failure::usage(format!("--severity {m}")))?
        .unwrap_or_default();
    let list_pairs = a.pairs || a.format == ReportOutput::PairsCsv;
    let b = backend(config, &a.client, true).await?;
    let report: ReportOut = match &b {
        Backend::Local(store) => {
            let filter = ReportFilter {
                tags,
                severities,
                system: a.system.clone(),
                patch_id: a.patch_id.clone(),
                list_pairs,
            };
            match (as_of, a.checkpoint) {
                (Some(at), Some(size)) => api::compute_report_at(&**store, at, size, filter).await,
                _ => api::compute_report(&**store, None, as_of, filter).await,
            }
            .map_err(api_failure)?
        }
        Backend::Remote { .. } => {
            let mut q: Vec<(&str, String)> = vec![("format", "json".into())];
            if let Some(t) = as_of {
                q.push(("as_of", t.to_rfc3339()));
            }
            if let Some(size) = a.checkpoint {
                q.push(("checkpoint", size.to_string()));
            }
            if !a.tag.is_empty() {
                q.push(("tag", a.tag.join(",")));
            }
            if let Some(s) = &a.severity {
                q.push(("severity", s.clone()));
            }
            if let Some(s) = &a.system {
                q.push(("system", s.clone()));
            }
            if let Some(p) = &a.patch_id {
                q.push(("patch_id", p.clone()));
            }
            if list_pairs {
                q.push(("pairs", "true".into()));
            }
            b.call(Method::GET, "/v1/reports/compliance", &q, None)
                .await?
        }
    };
    let body = match a.format {
        ReportOutput::Table => render_table(&report).into_bytes(),
        ReportOutput::Json => api::render_report(&report, ReportFormat::Json).1,
        ReportOutput::Csv => api::render_report(&report, ReportFormat::Csv).1,
        ReportOutput::SystemsCsv => api::render_report(&report, ReportFormat::SystemsCsv).1,
        ReportOutput::PatchesCsv => api::render_report(&report, ReportFormat::PatchesCsv).1,
        ReportOutput::PairsCsv => api::render_report(&report, ReportFormat::PairsCsv).1,
        ReportOutput::Html => api::render_report(&report, ReportFormat::Html).1,
    };
    match &a.output {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(&body)?,
    }
    if a.fail_on_overdue && report.summary.overdue > 0 {
        return Err(Failure::overdue(format!(
            "{} required (system, patch) pairs are overdue",
            report.summary.overdue
        ))
        .into());
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}%"))
}

fn render_table(r: &ReportOut) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Compliance report {} {}",
        if r.as_of { "as of" } else { "at" },
        r.at
    );
    match &r.checkpoint {
        Some(c) => {
            let _ = writeln!(
                s,
                "Computed from ledger checkpoint: size {} root {}",
                c.size, c.root
            );
        }
        None => {
            let _ = writeln!(s, "The ledger is empty.");
        }
    }
    let sm = &r.summary;
    let mut t = table();
    t.set_header([
        "PAIRS REQUIRED",
        "COVERAGE",
        "ON TIME",
        "OVERDUE",
        "FAILURE RATE",
        "STALE SYSTEMS",
    ]);
    t.add_row([
        sm.pairs_required.to_string(),
        pct(sm.coverage_pct),
        pct(sm.on_time_pct),
        sm.overdue.to_string(),
        pct(sm.failure_rate_pct),
        sm.stale_systems.len().to_string(),
    ]);
    let _ = writeln!(s, "{t}");
    let mut t = table();
    t.set_header(["STATE", "PAIRS"]);
    for (k, v) in sm.states.entries() {
        t.add_row([k.to_owned(), v.to_string()]);
    }
    let _ = writeln!(
        s,
        "Pairs by state ({} overdue in all, failed and unknown ones past their deadline included):\n{t}",
        sm.overdue
    );
    if !sm.time_to_patch.is_empty() {
        let mut t = table();
        t.set_header(["SEVERITY", "APPLIED", "MEAN DAYS", "P90 DAYS"]);
        for x in &sm.time_to_patch {
            t.add_row([
                x.severity.clone(),
                x.count.to_string(),
                format!("{:.1}", x.mean_days),
                format!("{:.1}", x.p90_days),
            ]);
        }
        let _ = writeln!(s, "Time to patch, from release to install:\n{t}");
    }
    let list = |title: &str, rows: &[patchaudit_server::report_out::ReportPair], s: &mut String| {
        if rows.is_empty() {
            return;
        }
        let mut t = table();
        t.set_header([
            "SYSTEM", "PATCH", "SEVERITY", "STATE", "DEADLINE", "ATTEMPTS",
        ]);
        for p in rows.iter().take(50) {
            t.add_row([
                p.system.clone(),
                p.patch_id.clone(),
                p.severity.clone(),
                p.state.clone(),
                p.deadline.clone().unwrap_or_else(|| "-".into()),
                p.attempts.to_string(),
            ]);
        }
        let more = rows.len().saturating_sub(50);
        let _ = writeln!(s, "{title} ({}):\n{t}", rows.len());
        if more > 0 {
            let _ = writeln!(
                s,
                "... and {more} more; use --format csv or json for all of them"
            );
        }
    };
    list("Overdue, oldest deadline first", &r.overdue, &mut s);
    list("Failed", &r.failures, &mut s);
    if sm.systems_with_inventory > 0 {
        let mut t = table();
        t.set_header(["SYSTEM", "PACKAGE", "VERSION", "ARCH"]);
        for u in r.unaccounted.iter().take(50) {
            t.add_row([
                u.system.clone(),
                u.package.clone(),
                u.version.clone(),
                u.arch.clone().unwrap_or_default(),
            ]);
        }
        let _ = writeln!(
            s,
            "Unaccounted changes: {} installed packages on {} systems with an inventory that no \
             logged event explains{}",
            sm.unaccounted,
            sm.systems_with_inventory,
            if sm.unaccounted > 0 { ":" } else { "." }
        );
        if sm.unaccounted > 0 {
            let _ = writeln!(s, "{t}");
            let more = sm.unaccounted.saturating_sub(50);
            if more > 0 {
                let _ = writeln!(
                    s,
                    "... and {more} more; use --format json with --pairs for all of them"
                );
            }
        }
    }
    s
}

macro_rules! client_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// The client flags.
            pub fn client(&self) -> &ClientArgs {
                &self.client
            }
        }
    )*};
}
client_of!(CatalogArgs, TagsArgs, PolicyArgs, ExceptionArgs, ReportArgs);
