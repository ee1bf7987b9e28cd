//! The CLI: `moldau topics|produce|consume|groups|transactions|cluster|acls|users|quotas`,
//! built on Moldau's own client
//! crate, with Kafka's script habits (`--bootstrap-server`, default `localhost:9092`).
//!
//! People get aligned tables; scripts get `--output json`. Errors print one line,
//! `moldau: error: …`, and exit with [`EXIT_FAILURE`] (or [`EXIT_UNREACHABLE`] when no
//! broker answers); usage mistakes exit 2 (clap's convention).

pub mod cluster;
pub mod consume;
pub mod groups;
pub mod output;
pub mod produce;
pub mod security;
pub mod topics;
pub mod transactions;

use moldau_client::{Admin, Client, ClientConfig};
use output::Output;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Exit code of a command that failed (a Kafka error, bad input).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code when no broker could be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Options every client command shares.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Brokers to bootstrap from, `host:port[,host:port…]`.
    /// (default `localhost:9092`, unless `--command-config` or `-X` give
    /// `bootstrap.servers`).
    #[arg(long, short = 'b', global = true, env = "MOLDAU_BOOTSTRAP_SERVER")]
    pub bootstrap_server: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up on a request after this long, ms (default 30000, unless the client
    /// properties set `request.timeout.ms`).
    #[arg(long, global = true)]
    pub request_timeout_ms: Option<u64>,
    /// A file of Kafka client properties (`security.protocol`, `ssl.*`, `sasl.*`, …),
    /// the `client.properties` Kafka's scripts take. `--bootstrap-server` wins over a
    /// `bootstrap.servers` in it.
    #[arg(long, global = true, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// A client property, e.g. `-X security.protocol=SASL_SSL` (repeatable; wins over
    /// `--command-config`).
    #[arg(
        short = 'X',
        long = "property",
        global = true,
        value_name = "NAME=VALUE"
    )]
    pub properties: Vec<String>,
}

/// What a command runs with.
pub struct Context {
    args: ClientArgs,
    /// Output format.
    pub output: Output,
}

impl Context {
    /// A context for `args`.
    pub fn new(args: ClientArgs) -> Context {
        Context {
            output: args.output,
            args,
        }
    }

    /// A client connected to the bootstrap servers. Connection failures are retried a
    /// few times, then reported as [`Unreachable`].
    pub async fn client(&self) -> anyhow::Result<Client> {
        let mut props = std::collections::BTreeMap::new();
        if let Some(path) = &self.args.command_config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            props.extend(crate::parse_properties(&text));
        }
        for p in &self.args.properties {
            let (k, v) = kv(p)?;
            if moldau_server::config::is_secret(&k) {
                // Said once per property, on stderr: a warning, not a refusal (kcat takes
                // -X sasl.password too), but the user should know who can read it.
                eprintln!(
                    "warning: -X {k} is visible to every user of this machine in the process \
                     list; put it in a --command-config file readable only by you"
                );
            }
            props.insert(k, v);
        }
        // Flags win over the properties, which win over the defaults.
        if let Some(b) = &self.args.bootstrap_server {
            props.insert("bootstrap.servers".into(), b.clone());
        }
        props
            .entry("bootstrap.servers".into())
            .or_insert_with(|| "localhost:9092".into());
        if let Some(ms) = self.args.request_timeout_ms {
            props.insert("request.timeout.ms".into(), ms.to_string());
        }
        props
            .entry("client.id".into())
            .or_insert_with(|| "moldau-cli".into());
        props.entry("retries".into()).or_insert_with(|| "3".into());
        let bootstrap = props["bootstrap.servers"].clone();
        let config = ClientConfig::from_properties(&props)?;
        Client::connect(config).await.map_err(|e| match e {
            moldau_client::Error::Connect { .. }
            | moldau_client::Error::Connection { .. }
            | moldau_client::Error::Timeout(_) => anyhow::Error::new(Unreachable {
                bootstrap,
                reason: e.to_string(),
            }),
            e => e.into(),
        })
    }

    /// An admin client.
    pub async fn admin(&self) -> anyhow::Result<Admin> {
        Ok(Admin::new(self.client().await?))
    }
}

/// No broker could be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach a broker at {bootstrap} ({reason}); is `moldau serve` running? (--bootstrap-server)")]
pub struct Unreachable {
    bootstrap: String,
    reason: String,
}

/// The exit code for an error.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Unreachable>().is_some() {
        EXIT_UNREACHABLE
    } else {
        EXIT_FAILURE
    }
}

/// Splits `NAME=VALUE`.
pub fn kv(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not NAME=VALUE"))
}

/// A progress line on stderr for long runs, redrawn at most once a second and only when
/// stderr is a terminal (scripts' output stays clean).
pub struct Progress {
    verb: &'static str,
    enabled: bool,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    /// A progress line saying "`verb` N records".
    pub fn new(verb: &'static str) -> Progress {
        let now = Instant::now();
        Progress {
            verb,
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            shown: false,
        }
    }

    /// Notes that `count` records are done; redraws if a second passed.
    pub fn tick(&mut self, count: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r{} {count} records ({:.0}/s)   ",
            self.verb,
            count as f64 / secs
        );
        self.shown = true;
    }

    /// Ends the line if one was drawn.
    pub fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}
