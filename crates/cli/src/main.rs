//! `patchaudit`: the command-line tool of the patch ledger.
//!
//! One binary serves the API (`serve`), records events (`log`, `import`)
//! and queries the ledger (`events`, `systems`, `patch`), either on the local
//! database or, with `--server URL`, through a running server.

mod audit;
mod backend;
mod changes;
mod collect;
mod commands;
mod compliance;
mod config;
mod exit;
mod inventory;
mod keys;
mod stream;
mod tokens;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

const ABOUT: &str =
    "A tamper-evident ledger of patches: what was applied where, what failed, and when.";

const EXAMPLES: &str = "\
Examples:
  patchaudit serve                                  # API on 127.0.0.1:8080, ledger in ./patchaudit.db
  patchaudit log --system web-01 --patch-id KB5034441 --status success
  patchaudit import events.ndjson --server http://127.0.0.1:8080
  patchaudit events --system web-01 --status failure
  patchaudit systems --format csv > systems.csv

Exit codes:
  0 success, 1 unexpected error, 2 bad command line, 3 invalid input (nothing recorded),
  4 event_id conflict (nothing recorded), 5 not found, 6 server or database unavailable (safe to retry),
  7 verification failed (the ledger, a proof or a checkpoint does not check out)

Configuration, lowest precedence first: built-in defaults, a TOML file (--config, PATCHAUDIT_CONFIG,
or ./patchaudit.toml), PATCHAUDIT_* environment variables, then flags. `patchaudit config` shows the result.";

#[derive(Parser)]
#[command(name = "patchaudit", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct GlobalArgs {
    /// A TOML config file [env: PATCHAUDIT_CONFIG] [default: ./patchaudit.toml if it exists].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The ledger database, e.g. sqlite://patchaudit.db [env: PATCHAUDIT_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// The checkpoint signing key file [env: PATCHAUDIT_SIGNING_KEY] [default: patchaudit.key
    /// beside the SQLite ledger, or in the working directory for PostgreSQL].
    #[arg(long, global = true, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// The API token to send to a server [env: PATCHAUDIT_TOKEN]. Prefer the environment
    /// variable or the config file: a flag shows in the process list.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// A PEM CA certificate to trust for the server's TLS certificate, besides the operating
    /// system's trust store and Mozilla's roots [env: PATCHAUDIT_CA_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct ClientArgs {
    /// Work through this server's API instead of the local database [env: PATCHAUDIT_SERVER].
    #[arg(long, value_name = "URL", global = true)]
    server: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    #[command(after_help = "\
Examples:
  patchaudit serve
  patchaudit serve --listen 127.0.0.1:9000 --database-url sqlite:///var/lib/patchaudit/ledger.db

Prints `patchaudit listening on http://ADDR` on stdout once it accepts connections.
Stops cleanly on Ctrl-C or SIGTERM, finishing the requests in flight.")]
    Serve(ServeArgs),
    /// Record one patch event from flags.
    #[command(after_help = "\
Examples:
  patchaudit log --system web-01 --patch-id KB5034441 --status success
  patchaudit log --system db-02 --patch-id openssl@3.0.13-1 --status failure \\
      --applied-at 2024-05-01T12:00:00Z --source apt --detail \"$(tail -n 20 /var/log/apt/term.log)\"
  patchaudit log --server http://127.0.0.1:8080 --system web-01 --patch-id KB1 --status rolled_back --event-id rb-1")]
    Log(LogArgs),
    /// Record events from a JSON, NDJSON or CSV file (or stdin).
    #[command(after_help = "\
Examples:
  patchaudit import events.ndjson
  patchaudit import export.csv --server http://127.0.0.1:8080
  some-agent | patchaudit import - --format ndjson

The whole file is validated first: if any event is invalid, every problem is listed and nothing
is recorded. Events without an event_id get one derived from their content, so re-running an
import after an interruption records nothing twice. CSV files have a header row of field names;
cves are separated by ';'.")]
    Import(ImportArgs),
    /// Record the patch events of this host's package-manager logs, osquery results or saved
    /// Windows and dnf output, each exactly once.
    #[command(after_help = "\
Sources (--source NAME):
  dpkg            /var/log/dpkg.log                       Debian, Ubuntu
  apt             /var/log/apt/history.log                Debian, Ubuntu
  yum             /var/log/yum.log                        RHEL, CentOS 7 and older
  dnf             `LC_ALL=C dnf history info 1..last`     RHEL 8+, Fedora (saved to a file)
  osquery         /var/log/osquery/osqueryd.results.log   osquery differential results
  wmic-qfe        `wmic qfe list`                         Windows (saved to a file)
  systeminfo      `systeminfo`                            Windows (saved to a file)
  get-hotfix      `Get-HotFix` as CSV or JSON             Windows (saved to a file)
  windows-update  `Get-WUHistory` or QueryHistory as CSV  Windows (saved to a file)

Examples:
  patchaudit collect --server http://127.0.0.1:8080     # every log found: dpkg, apt, yum, osquery
  # Debian, Ubuntu
  patchaudit collect --source dpkg --file /var/log/dpkg.log.2.gz --file /var/log/dpkg.log.1 \\
      --file /var/log/dpkg.log --system web-01
  patchaudit collect --source apt --utc-offset +02:00 --state /var/lib/patchaudit/collect.state
  # RHEL, Fedora
  LC_ALL=C dnf history info 1..last > /var/lib/patchaudit/dnf-history.txt
  patchaudit collect --source dnf --file /var/lib/patchaudit/dnf-history.txt
  # Windows: output saved by a scheduled task (wmic qfe list > qfe.txt), collected anywhere
  patchaudit collect --source wmic-qfe --file qfe.txt --system win-01
  patchaudit collect --source systeminfo --file systeminfo.txt --system win-01
  patchaudit collect --source get-hotfix --file hotfix.csv --system win-01 --date-order day-first
  # osquery
  patchaudit collect --source osquery --file /var/log/osquery/osqueryd.results.log

Without --source, reads each of /var/log/dpkg.log, /var/log/apt/history.log and /var/log/yum.log
that exists (or, on a host with none of them, /var/log/osquery/osqueryd.results.log), with its
rotations (NAME.1, NAME.2.gz, ...), oldest first. The other sources are read only with --source and --file. The state file remembers
what was sent, so each run sends only new events; a KB of a Windows snapshot (wmic-qfe,
systeminfo, get-hotfix) is sent once. If the server is unreachable, the events are kept in the
spool directory and the command exits 6; the next run sends the spool first. Event ids are
derived from the events, so nothing is ever recorded twice. Parser problems are printed as
warnings and never stop the run. Log times are read as UTC unless --utc-offset says otherwise
(Windows Update history dates are UTC). Entries of a Windows snapshot that have no date (every
systeminfo hotfix) take the file's modification time; a yum.log's year is that of its
modification time. Give --system for output saved on another host.")]
    Collect(CollectArgs),
    /// Query the ledger's events.
    #[command(after_help = "\
Examples:
  patchaudit events --system web-01
  patchaudit events --status failure --applied-from 2024-05-01T00:00:00Z --format csv
  patchaudit events --patch-id KB5034441 --all --format ndjson > kb.ndjson

Ranges are half-open: --applied-from and --seq-from are inclusive, --applied-to and --seq-to exclusive.")]
    Events(EventsArgs),
    /// List every system with its last event time and counts by status.
    #[command(after_help = "\
Examples:
  patchaudit systems
  patchaudit systems --format json --server http://127.0.0.1:8080")]
    Systems(SystemsArgs),
    /// Show which systems have a patch, which failed it and which rolled it back.
    #[command(after_help = "\
Examples:
  patchaudit patch KB5034441
  patchaudit patch openssl@3.0.13-1 --format json")]
    Patch(PatchArgs),
    /// Print the effective configuration (secrets hidden) and where each value came from.
    #[command(after_help = "\
Examples:
  patchaudit config
  PATCHAUDIT_MAX_BATCH=500 patchaudit config --config /etc/patchaudit.toml")]
    Config(ServeArgs),
    /// Check that no recorded event was altered, removed, reordered or inserted.
    #[command(after_help = "\
Examples:
  patchaudit verify                                   # the local ledger, trusting the local key
  patchaudit verify --key \"$(cat ledger.pub)\"         # trusting a published verifier key
  patchaudit verify --input ledger.export --key ledger.pub
  patchaudit verify --server https://patchaudit.example --key ledger.pub --state audit.state

On a database or an export, every leaf is rebuilt from its event's fields and the tree from the
leaves; the result must match every signed checkpoint and every stored tree hash. The first seq
where the ledger stops matching its signed history is reported with the reason, and the exit
code is 7. With --server, the server's checkpoint must be validly signed and, with --state, a
consistent extension of the checkpoint saved by the previous run, which is then replaced.")]
    Verify(VerifyArgs),
    /// Prove that one event is in the ledger, against a signed checkpoint.
    #[command(after_help = "\
Examples:
  patchaudit prove 42
  patchaudit prove 42 --server https://patchaudit.example --key ledger.pub --json

The event's leaf is rebuilt from its fields and checked with an inclusion proof against the latest
checkpoint, whose signature is checked with the trusted key. Exit code 7 if anything fails.")]
    Prove(ProveArgs),
    /// Write the ledger as NDJSON, headed by its signed checkpoint, for offline verification.
    #[command(after_help = "\
Examples:
  patchaudit export --output ledger.export
  patchaudit export --server https://patchaudit.example > ledger.export
  patchaudit verify --input ledger.export --key ledger.pub

The first line is {\"patchaudit_export\":1,\"checkpoint\":\"<signed note>\"}; each further line is one
event, in seq order, exactly as the API returns it, up to the checkpoint's size.")]
    Export(ExportArgs),
    /// Show or create the checkpoint signing key.
    #[command(after_help = "\
Examples:
  patchaudit key public                 # the verifier key to publish to auditors
  patchaudit key generate --name example.com/patchaudit

`serve` creates the key on first start (mode 0600) when none exists. Every server instance writing
one ledger must use the same key.")]
    Key(KeyArgs),
    /// Manage the patch catalog: entries, OSV imports, history.
    #[command(after_help = "\
Examples:
  patchaudit catalog put kb5034441.json          # one entry or an array, as the API takes them
  patchaudit catalog import-osv advisories/*.json --applies-to-tag os=debian
  patchaudit catalog list --severity critical,high
  patchaudit catalog get KB5034441 --as-of 2024-06-01T00:00:00Z
  patchaudit catalog history KB5034441

An entry: {\"id\":\"KB5034441\",\"severity\":\"critical\",\"released_at\":\"2024-01-09T00:00:00Z\",
\"title\":\"...\",\"cves\":[\"CVE-2024-20666\"],\"applies_to\":{\"tags\":[\"os=windows\"]}}. Without applies_to
an entry applies to every system. Every change is kept with who made it and when.")]
    Catalog(compliance::CatalogArgs),
    /// Show or replace a system's key=value tags.
    #[command(after_help = "\
Examples:
  patchaudit tags web-01                          # show
  patchaudit tags web-01 env=prod pci=in-scope    # replace
  patchaudit tags web-01 --clear

Tagging a system that has no events yet registers it: it counts as stale (unknown) in reports
until it reports.")]
    Tags(compliance::TagsArgs),
    /// Send or show a system's installed-package inventory.
    #[command(after_help = "\
Examples:
  patchaudit inventory web-01                                    # show
  patchaudit inventory web-01 --source dpkg-status --file /var/lib/dpkg/status
  rpm -qa --qf '%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n' \\
      | patchaudit inventory db-01 --source rpm-qa --file - --server https://pa.example
  patchaudit inventory win-01 --source wmic-qfe --file qfe.txt

The server keeps each system's latest list (an unchanged list writes nothing) and its history.
The compliance report uses it twice: a catalog entry whose packages have fixed versions applies to
a system with an inventory only if an affected version is installed there, and installed versions
that no logged event explains are listed as unaccounted changes. `patchaudit collect` sends the
inventory by itself. Sending needs the ingest scope.")]
    Inventory(inventory::InventoryArgs),
    /// Show or replace the SLA policy (days per severity, per tag scope, and staleness).
    #[command(after_help = "\
Examples:
  patchaudit policy                               # print it as JSON
  patchaudit policy --set policy.json

policy.json: {\"default\":{\"critical\":30,\"high\":30,\"medium\":90,\"low\":180},
\"scoped\":[{\"tag\":\"pci=in-scope\",\"days\":{\"critical\":14,\"high\":30,\"medium\":90,\"low\":180}}],
\"stale_after_days\":7}. When several scopes match a system, the strictest deadline wins.")]
    Policy(compliance::PolicyArgs),
    /// Record, list and revoke exceptions (accepted risks with an approver and an expiry).
    #[command(after_help = "\
Examples:
  patchaudit exception add --patch-id KB5034441 --system db-01 \\
      --reason \"vendor certification pending\" --approver ciso@example.com --expires-at 2025-03-01T00:00:00Z
  patchaudit exception list --active
  patchaudit exception revoke exc-1a2b3c4d5e6f")]
    Exception(compliance::ExceptionArgs),
    /// The compliance report: what is missing, overdue, failed, on time, late or excepted.
    #[command(after_help = "\
Examples:
  patchaudit report
  patchaudit report --tag pci=in-scope --severity critical,high
  patchaudit report --as-of 2024-06-30T23:59:59Z --format html --output q2-audit.html
  patchaudit report --format csv > overdue-and-failed.csv
  patchaudit report --fail-on-overdue --severity critical   # exit 8 if anything critical is overdue

Every report names the ledger checkpoint (tree size and root) it was computed from; --as-of T
recomputes it from the checkpoint recorded by T and the catalog, tags, policy and exceptions
as they stood then, so it does not change when later events arrive.")]
    Report(compliance::ReportArgs),
    /// Create, list and revoke API tokens.
    #[command(after_help = "\
Examples:
  patchaudit token create --name admin --scope admin,read,ingest     # the first one: on the database
  patchaudit token create --name agent-web-01 --scope ingest --system 'web-01'
  patchaudit token create --name dc1-agents --scope ingest --tag site=dc1 --server https://pa.example
  patchaudit token list
  patchaudit token revoke 3f9a0c1d2e4b5a69

Every /v1 endpoint needs a token: ingest to post events and inventories, read for queries, reports
and proofs, admin for the catalog, policy, exceptions, tags and tokens. The token is printed once on stdout
(TOKEN=$(patchaudit token create ...)); only its SHA-256 is stored. Without --server the command
works on the database directly, which is how the first admin token is made. Clients send the token
from --token, PATCHAUDIT_TOKEN or the config file. --system and --tag limit which systems a token
may write events for; events for others are refused with 403 and nothing is recorded.")]
    Token(tokens::TokenArgs),
    /// The tool's own audit trail: who changed the catalog, tags, policy, exceptions and tokens.
    #[command(after_help = "\
Examples:
  patchaudit changes                           # the first 100 changes, oldest first
  patchaudit changes --kind token --format json
  patchaudit changes --after 1200 --server https://pa.example

Each line is one revision: when, by whom (a token's name#id, or local:USER for changes made on
the database), what kind of record, which one, and whether it was written, deleted,
created or revoked. The content of each revision is in `catalog history` and the like; token
secrets and their hashes are never shown.")]
    Changes(changes::ChangesArgs),
    /// The real-time stream: where each sink stands, alerts, and webhook dead letters.
    #[command(after_help = "\
Examples:
  patchaudit stream status                     # each sink's cursor and lag
  patchaudit stream alerts --rule bad_patch
  patchaudit stream dead-letters
  patchaudit stream replay 12 13               # or --all
  patchaudit stream status --server https://pa.example --format json

`serve` publishes every event and alert to the sinks it is given (--nats-url, --webhook-url)
from a cursor per sink stored in the database, and raises alerts: a critical or high patch
that failed, one patch failing on --alert-bad-patch-systems systems within
--alert-bad-patch-window, and pairs that went overdue. Without --server the command reads the
database; a local replay POSTs to the webhooks of this configuration (webhook_urls).")]
    Stream(stream::StreamArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// The address to listen on [env: PATCHAUDIT_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The most events one request may carry [env: PATCHAUDIT_MAX_BATCH] [default: 10000].
    #[arg(long, value_name = "N")]
    max_batch: Option<usize>,
    /// The largest request body in bytes [env: PATCHAUDIT_MAX_BODY_BYTES] [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
    /// How far in the future applied_at may lie, e.g. 1h, 90s [env: PATCHAUDIT_FUTURE_SKEW] [default: 1h].
    #[arg(long, value_name = "DURATION")]
    future_skew: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key) [env: PATCHAUDIT_TLS_CERT].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert [env: PATCHAUDIT_TLS_KEY].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without TLS (tokens then cross the network in
    /// clear text) [env: PATCHAUDIT_ALLOW_INSECURE_LISTEN].
    #[arg(long)]
    allow_insecure_listen: bool,
    /// Serve /metrics without a token [env: PATCHAUDIT_METRICS_PUBLIC].
    #[arg(long)]
    public_metrics: bool,
    /// Requests per second per token; 0 turns the limit off [env: PATCHAUDIT_RATE_LIMIT] [default: 100].
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Requests a token may make in a burst [env: PATCHAUDIT_RATE_BURST] [default: 200].
    #[arg(long, value_name = "N")]
    rate_burst: Option<u32>,
    /// Requests in flight beyond which new ones get a 503; 0 means no cap
    /// [env: PATCHAUDIT_MAX_CONCURRENT_REQUESTS] [default: 512].
    #[arg(long, value_name = "N")]
    max_concurrent_requests: Option<usize>,
    /// How long a client may take to send its request headers [env: PATCHAUDIT_HEADER_TIMEOUT] [default: 30s].
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// How long a client may take to send a request body [env: PATCHAUDIT_BODY_TIMEOUT] [default: 60s].
    #[arg(long, value_name = "DURATION")]
    body_timeout: Option<String>,
    /// Publish every event and alert to this NATS server's JetStream, e.g. nats://127.0.0.1:4222
    /// [env: PATCHAUDIT_NATS_URL].
    #[arg(long, value_name = "URL", help_heading = "Stream")]
    nats_url: Option<String>,
    /// Record the events agents publish to this NATS subject (needs --nats-url)
    /// [env: PATCHAUDIT_CONSUME_NATS].
    #[arg(long, value_name = "SUBJECT", help_heading = "Stream")]
    consume_nats: Option<String>,
    /// Publish every event and alert to Kafka, keyed by system, e.g. 127.0.0.1:9092
    /// [env: PATCHAUDIT_KAFKA_BROKERS].
    #[arg(long, value_name = "HOST:PORT,...", help_heading = "Stream")]
    kafka_brokers: Option<String>,
    /// Record the events agents publish to this Kafka topic (needs --kafka-brokers)
    /// [env: PATCHAUDIT_CONSUME_KAFKA].
    #[arg(long, value_name = "TOPIC", help_heading = "Stream")]
    consume_kafka: Option<String>,
    /// POST every event and alert, signed, to this URL; repeat for several
    /// [env: PATCHAUDIT_WEBHOOK_URLS, comma-separated].
    #[arg(long = "webhook-url", value_name = "URL", help_heading = "Stream")]
    webhook_urls: Vec<String>,
    /// The HMAC-SHA256 key webhooks are signed with; prefer the environment variable, which
    /// other users cannot see in the process list [env: PATCHAUDIT_WEBHOOK_SECRET].
    #[arg(long, value_name = "SECRET", help_heading = "Stream")]
    webhook_secret: Option<String>,
    /// Attempts before a webhook message becomes a dead letter
    /// [env: PATCHAUDIT_WEBHOOK_MAX_ATTEMPTS] [default: 8].
    #[arg(long, value_name = "N", help_heading = "Stream")]
    webhook_max_attempts: Option<u32>,
    /// The bad-patch alert fires when one patch failed on this many systems...
    /// [env: PATCHAUDIT_ALERT_BAD_PATCH_SYSTEMS] [default: 3].
    #[arg(long, value_name = "N", help_heading = "Stream")]
    alert_bad_patch_systems: Option<usize>,
    /// ...within this window [env: PATCHAUDIT_ALERT_BAD_PATCH_WINDOW] [default: 1h].
    #[arg(long, value_name = "DURATION", help_heading = "Stream")]
    alert_bad_patch_window: Option<String>,
    /// How often overdue pairs are looked for; 0s turns the overdue alert off
    /// [env: PATCHAUDIT_ALERT_OVERDUE_EVERY] [default: 1m].
    #[arg(long, value_name = "DURATION", help_heading = "Stream")]
    alert_overdue_every: Option<String>,
}

/// Output formats of event listings.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum ListFormat {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// Output formats of summaries.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum SummaryFormat {
    Table,
    Json,
    Csv,
}

/// Output formats of `log`.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum LogFormat {
    Text,
    Json,
}

/// Input formats of `import`.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum InputFormat {
    Json,
    Ndjson,
    Csv,
}

#[derive(Args, Clone)]
struct LogArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The system the patch was applied to.
    #[arg(long)]
    system: String,
    /// The patch or advisory id.
    #[arg(long)]
    patch_id: String,
    /// success, failure or rolled_back.
    #[arg(long)]
    status: String,
    /// When it was applied (RFC 3339 with an offset) [default: now].
    #[arg(long, value_name = "TIME")]
    applied_at: Option<String>,
    /// An idempotency key: re-running with the same key records nothing twice.
    #[arg(long)]
    event_id: Option<String>,
    /// The package changed.
    #[arg(long)]
    package: Option<String>,
    /// The version before.
    #[arg(long)]
    from_version: Option<String>,
    /// The version after.
    #[arg(long)]
    to_version: Option<String>,
    /// Where the fact came from (dpkg, apt, dnf, windows-update, ansible, manual, ...).
    #[arg(long)]
    source: Option<String>,
    /// Who applied it.
    #[arg(long)]
    actor: Option<String>,
    /// Failure output (up to 64 KiB).
    #[arg(long)]
    detail: Option<String>,
    /// A CVE the patch fixes; repeat for several.
    #[arg(long = "cve", value_name = "CVE")]
    cves: Vec<String>,
    /// Whether a reboot is required (true or false; the bare flag means true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    reboot_required: Option<bool>,
    /// A change-ticket reference.
    #[arg(long)]
    change_ref: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: LogFormat,
}

#[derive(Args, Clone)]
struct ImportArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The file to read, or - for stdin.
    file: PathBuf,
    /// The input format [default: from the file extension, else detected from the content].
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Events per request or transaction.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    batch_size: usize,
    /// Do not derive an event_id for events that lack one.
    #[arg(long)]
    no_derive_event_id: bool,
    /// Validate only; record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print no progress and no summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct CollectArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Read only this source (see the list below) [default: every standard log present on this
    /// host].
    #[arg(
        long,
        value_name = "NAME",
        value_parser = clap::builder::PossibleValuesParser::new(
            patchaudit_collectors::Source::ALL.map(patchaudit_collectors::Source::name)
        ),
        hide_possible_values = true
    )]
    source: Option<String>,
    /// A file of the --source log or saved output; repeat for rotated files, oldest first
    /// [default: the standard path and its rotations; required for the sources without one].
    #[arg(long = "file", value_name = "FILE", requires = "source")]
    files: Vec<PathBuf>,
    /// The system the events belong to [default: /etc/hostname, else $HOSTNAME].
    #[arg(long)]
    system: Option<String>,
    /// The UTC offset of the logs' local times, e.g. +02:00; keep it the same on every run
    /// [default: +00:00].
    #[arg(long, value_name = "OFFSET")]
    utc_offset: Option<String>,
    /// How to read Windows slash dates such as 3/2/2019 (wmic-qfe, get-hotfix, osquery patches):
    /// month-first as WMI and en-US write them, or day-first as many other cultures do
    /// [default: month-first].
    #[arg(long, value_name = "ORDER", value_parser = ["month-first", "day-first"])]
    date_order: Option<String>,
    /// Events per request or transaction.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    batch_size: usize,
    /// Where to remember what was sent [default: patchaudit-collect.state beside the local
    /// SQLite ledger, or in the working directory with --server].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Where to keep events the server could not take [default: patchaudit-collect.spool beside
    /// the state file].
    #[arg(long, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Print no progress and no summary (warnings and errors still go to stderr).
    #[arg(long, short)]
    quiet: bool,
    /// Also send this file as the system's installed-package inventory, read as
    /// --inventory-source [default: without --source, /var/lib/dpkg/status, or `rpm -qa` where
    /// rpm is installed].
    #[arg(long, value_name = "FILE", requires = "inventory_source")]
    inventory: Option<PathBuf>,
    /// The format of --inventory: dpkg-status, rpm-qa, wmic-qfe, systeminfo or get-hotfix.
    #[arg(long, value_name = "SOURCE", requires = "inventory")]
    inventory_source: Option<patchaudit_collectors::inventory::InventorySource>,
    /// Send no inventory.
    #[arg(long, conflicts_with = "inventory")]
    no_inventory: bool,
}

#[derive(Args, Clone)]
struct EventsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this system's events.
    #[arg(long)]
    system: Option<String>,
    /// Only this patch's events.
    #[arg(long)]
    patch_id: Option<String>,
    /// Only events with this status: success, failure or rolled_back.
    #[arg(long)]
    status: Option<String>,
    /// Only events from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events applied at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    applied_from: Option<String>,
    /// Only events applied before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    applied_to: Option<String>,
    /// Only events with seq at or above this.
    #[arg(long, value_name = "SEQ")]
    seq_from: Option<u64>,
    /// Only events with seq below this.
    #[arg(long, value_name = "SEQ")]
    seq_to: Option<u64>,
    /// The most events to show [default: 100 for tables, all otherwise].
    #[arg(long, value_name = "N", conflicts_with = "all")]
    limit: Option<usize>,
    /// Show every matching event, even in a table.
    #[arg(long)]
    all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
}

#[derive(Args, Clone)]
struct VerifyArgs {
    /// Verify through this server: its checkpoint's signature and consistency [env: PATCHAUDIT_SERVER].
    #[arg(long, value_name = "URL", conflicts_with = "input")]
    server: Option<String>,
    /// The verifier key to trust (NAME+KEYID+BASE64), or a file holding it
    /// [default for a local ledger: the local signing key's].
    #[arg(long, value_name = "KEY|FILE")]
    key: Option<String>,
    /// Verify an export file instead of a database.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Also compare every stored tree hash (what proofs are served from) with the rebuilt
    /// tree. Without it they are read only to locate a divergence.
    #[arg(long, conflicts_with_all = ["server", "input"])]
    check_tree: bool,
    /// With --server: the checkpoint seen last time; checked against, then replaced.
    #[arg(long, value_name = "FILE", requires = "server")]
    state: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct ProveArgs {
    /// The event's seq.
    seq: u64,
    /// Ask this server for the proof [env: PATCHAUDIT_SERVER].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The verifier key to trust, or a file holding it [default for a local ledger: the local signing key's].
    #[arg(long, value_name = "KEY|FILE")]
    key: Option<String>,
    /// Print the event, the proof and the root as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct ExportArgs {
    /// Export through this server [env: PATCHAUDIT_SERVER].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Write here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct KeyArgs {
    /// The key file [default: the configured signing key].
    #[arg(long, value_name = "FILE", global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Clone)]
enum KeyCommand {
    /// Print the verifier (public) key that auditors pass to `verify --key`.
    Public,
    /// Create a new signing key file (mode 0600); never overwrites one.
    Generate {
        /// The key's name, which is also every checkpoint's origin line [default: patchaudit/HOSTNAME].
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Args, Clone)]
struct SystemsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: SummaryFormat,
}

#[derive(Args, Clone)]
struct PatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The patch id.
    patch_id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: SummaryFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::Code::Error as u8);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`patchaudit events | head`) is the reader's choice, not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            match e.downcast_ref::<exit::Failure>() {
                Some(f) => {
                    eprintln!("error: {f}");
                    ExitCode::from(f.code as u8)
                }
                None => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(exit::Code::Error as u8)
                }
            }
        }
    }
}
