//! `patchaudit inventory`: send or show a system's installed-package
//! inventory, the list the compliance report checks advisories' fixed
//! versions against and finds unaccounted changes in.

use crate::backend::{encode_segment, Backend};
use crate::commands::{backend, table};
use crate::compliance::{api_failure, ShowFormat};
use crate::config::Config;
use crate::exit::Failure;
use crate::ClientArgs;
use anyhow::{Context as _, Result};
use clap::Args;
use patchaudit_collectors::inventory::{parse_inventory, InventorySource, ParsedInventory};
use patchaudit_collectors::Context;
use patchaudit_compliance::Inventory;
use patchaudit_domain::{SystemId, Timestamp};
use patchaudit_server::error::ApiError;
use patchaudit_server::inventory::{parse, InstalledPackageWire, InventoryIn, InventoryOut};
use patchaudit_store::compliance as records;
use reqwest::Method;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// `patchaudit inventory`.
#[derive(Args, Clone)]
pub struct InventoryArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The system.
    system: String,
    /// Send this system's inventory from FILE (`-` for stdin) instead of showing it.
    #[arg(long, value_name = "FILE", requires = "source")]
    file: Option<PathBuf>,
    /// The format of --file: dpkg-status, rpm-qa, wmic-qfe, systeminfo or get-hotfix.
    #[arg(long, value_name = "SOURCE")]
    source: Option<InventorySource>,
    /// How to show it.
    #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
    format: ShowFormat,
}

impl InventoryArgs {
    /// The client flags.
    pub fn client(&self) -> &ClientArgs {
        &self.client
    }
}

/// Reads `file` as an inventory of `source`: every line it cannot read is
/// printed as a warning with its file and line, and the rest is validated
/// as the server validates it. An invalid inventory is a failure (exit 3).
pub fn read_inventory(
    source: InventorySource,
    file: &Path,
) -> Result<(Inventory, ParsedInventory)> {
    let (name, bytes) = if file == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("reading the inventory from stdin")?;
        ("<stdin>".to_owned(), b)
    } else {
        let b = std::fs::read(file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
        (file.display().to_string(), b)
    };
    let parsed = parse_inventory(source, &name, &bytes, &Context::default());
    let inv = validate(&parsed)?;
    Ok((inv, parsed))
}

/// Validates a parsed inventory as the server will.
pub fn validate(parsed: &ParsedInventory) -> Result<Inventory> {
    parse(wire(parsed), Timestamp::now()).map_err(|errors| {
        let mut f = Failure::invalid("the inventory is invalid; nothing was sent");
        f.details = errors.iter().map(|e| e.to_string()).collect();
        f.into()
    })
}

/// The API's document for a parsed inventory.
pub fn wire(parsed: &ParsedInventory) -> InventoryIn {
    InventoryIn {
        format: Some(parsed.format.name().to_owned()),
        packages: parsed
            .packages
            .iter()
            .map(|p| InstalledPackageWire {
                name: Some(p.name.clone()),
                version: Some(p.version.clone()),
                arch: p.arch.clone(),
            })
            .collect(),
    }
}

/// Records `inv` as `system`'s inventory, on the database or through the
/// server, and answers as the API does.
pub async fn send(
    b: &Backend,
    system: &SystemId,
    parsed: &ParsedInventory,
) -> Result<InventoryOut> {
    match b {
        Backend::Local(store) => {
            let inv = validate(parsed)?;
            let rec =
                records::put_inventory(&**store, system, &inv, &crate::backend::local_principal())
                    .await
                    .map_err(|e| api_failure(ApiError::from(e)))?;
            Ok(patchaudit_server::inventory::out(
                system.as_str().to_owned(),
                &inv,
                &rec,
                false,
            ))
        }
        Backend::Remote { .. } => {
            let body = serde_json::to_vec(&wire(parsed))?;
            b.call(
                Method::PUT,
                &format!("/v1/systems/{}/inventory", encode_segment(system.as_str())),
                &[],
                Some(body),
            )
            .await
        }
    }
}

/// Prints each of the parser's problems as a warning.
pub fn warn_problems(parsed: &ParsedInventory) {
    for p in parsed.problems.iter().take(20) {
        eprintln!("warning: {}:{}: {}", p.file, p.line, p.message);
    }
    if parsed.problems.len() > 20 {
        eprintln!(
            "warning: ... and {} more problems",
            parsed.problems.len() - 20
        );
    }
}

/// Runs `patchaudit inventory`.
pub async fn run(config: &Config, a: InventoryArgs) -> Result<()> {
    let system = SystemId::parse(a.system.clone())
        .map_err(|(_, m)| Failure::usage(format!("the system {m}")))?;
    if let Some(file) = &a.file {
        let source = a.source.expect("clap requires --source with --file");
        let (_, parsed) = read_inventory(source, file)?;
        warn_problems(&parsed);
        let b = backend(config, &a.client, false).await?;
        let out = send(&b, &system, &parsed).await?;
        if a.format == ShowFormat::Json {
            return crate::compliance::print_json(&out);
        }
        println!("{}", summary(&out, true));
        return Ok(());
    }
    let b = backend(config, &a.client, true).await?;
    let out: InventoryOut = match &b {
        Backend::Local(store) => match records::inventory_of(&**store, &a.system)
            .await
            .map_err(|e| api_failure(ApiError::from(e)))?
        {
            Some((inv, rec)) => {
                patchaudit_server::inventory::out(a.system.clone(), &inv, &rec, true)
            }
            None => {
                return Err(Failure::not_found(format!(
                    "system {:?} has not sent an inventory",
                    a.system
                ))
                .into())
            }
        },
        Backend::Remote { .. } => {
            b.call(
                Method::GET,
                &format!("/v1/systems/{}/inventory", encode_segment(&a.system)),
                &[],
                None,
            )
            .await?
        }
    };
    if a.format == ShowFormat::Json {
        return crate::compliance::print_json(&out);
    }
    let mut t = table();
    t.set_header(["PACKAGE", "VERSION", "ARCH"]);
    for p in out.packages.iter().flatten() {
        t.add_row([
            p.name.clone().unwrap_or_default(),
            p.version.clone().unwrap_or_default(),
            p.arch.clone().unwrap_or_default(),
        ]);
    }
    println!("{}\n{t}", summary(&out, false));
    Ok(())
}

/// One line about a stored inventory; `sent` for the answer to sending it.
pub fn summary(out: &InventoryOut, sent: bool) -> String {
    format!(
        "{}: {} {} packages, {} {} (rev {} by {})",
        out.system,
        out.package_count,
        out.format,
        match (sent, out.revision.changed) {
            (true, false) => "unchanged since",
            _ => "recorded at",
        },
        out.recorded_at,
        out.revision.rev,
        out.revision.changed_by
    )
}

/// The query `collect` runs for an rpm host's inventory: the form
/// [`InventorySource::RpmQa`] reads with the epoch and the architecture.
const RPM_QUERY: &str = "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// Where this host's package list comes from: dpkg's status file where it
/// exists, else `rpm -qa` where rpm is installed; `None` on other hosts.
pub fn host_inventory() -> Result<Option<(InventorySource, String, Vec<u8>)>> {
    const STATUS: &str = "/var/lib/dpkg/status";
    if Path::new(STATUS).exists() {
        let bytes = std::fs::read(STATUS).with_context(|| format!("reading {STATUS}"))?;
        return Ok(Some((
            InventorySource::DpkgStatus,
            STATUS.to_owned(),
            bytes,
        )));
    }
    if Path::new("/var/lib/rpm").exists() {
        let out = std::process::Command::new("rpm")
            .args(["-qa", "--qf", RPM_QUERY])
            .output();
        return match out {
            Ok(o) if o.status.success() => Ok(Some((
                InventorySource::RpmQa,
                "rpm -qa".to_owned(),
                o.stdout,
            ))),
            Ok(o) => Err(Failure::error(format!(
                "rpm -qa failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))
            .into()),
            Err(e) => Err(Failure::error(format!("cannot run rpm -qa: {e}")).into()),
        };
    }
    Ok(None)
}

/// Parses an inventory from bytes and sends it for `system`: what
/// `collect` does after the events. Parser problems are warnings.
pub async fn collect_and_send(
    b: &Backend,
    system: &SystemId,
    source: InventorySource,
    name: &str,
    bytes: &[u8],
) -> Result<InventoryOut> {
    let parsed = parse_inventory(source, name, bytes, &Context::default());
    warn_problems(&parsed);
    send(b, system, &parsed).await
}
