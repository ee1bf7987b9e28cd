//! `moldau`: the broker binary.
//!
//! `moldau serve` (also the default with no subcommand) starts a single-node broker:
//! Kafka listener `localhost:9092`, data in `./moldau-data`. Configuration uses Kafka's
//! property names, from (later wins): a `server.properties`-style file (`--config`),
//! `MOLDAU_*` environment variables (`MOLDAU_LOG_DIRS` → `log.dirs`), and `-o name=value`.

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use moldau_server::{BrokerConfig, Server};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "moldau",
    version,
    about = "An event-streaming broker that speaks the Kafka protocol",
    after_help = "Exit codes: 0 success, 1 failure (a Kafka error, bad input), 2 usage error, 3 no broker reachable."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    client: cli::ClientArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (single node by default).
    Serve(ServeArgs),
    /// List, create, describe, delete topics and alter their configs.
    #[command(subcommand)]
    Topics(cli::topics::TopicsCommand),
    /// Write lines of stdin (or a file) to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Print records of a topic.
    Consume(cli::consume::ConsumeArgs),
    /// List and describe consumer groups (members, lag).
    #[command(subcommand)]
    Groups(cli::groups::GroupsCommand),
    /// List and describe transactions (state, open partitions).
    #[command(subcommand)]
    Transactions(cli::transactions::TransactionsCommand),
    /// Cluster id, controller and brokers.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
    /// List, create and delete ACLs (as kafka-acls.sh).
    #[command(subcommand)]
    Acls(cli::security::AclsCommand),
    /// SCRAM users: list, set a password, delete (as kafka-configs.sh --entity-type users).
    #[command(subcommand)]
    Users(cli::security::UsersCommand),
    /// Client byte-rate quotas: list, set, delete.
    #[command(subcommand)]
    Quotas(cli::security::QuotasCommand),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// A server.properties-style file (Kafka property names).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Set a property, e.g. `-o listeners=PLAINTEXT://0.0.0.0:9092` (repeatable).
    #[arg(long = "override", short = 'o', value_name = "NAME=VALUE")]
    overrides: Vec<String>,
}

/// Parses a `.properties` file: `name=value` (or `name: value`) lines, `#`/`!`
/// comments, and lines ending in `\` continued on the next (as Java reads them; Kafka's
/// JAAS configs are usually written that way).
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = if current.is_empty() {
            line.trim()
        } else {
            line.trim_start()
        };
        if current.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        logical.push(current);
    }
    logical
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once('=').or_else(|| l.split_once(':'))?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn load_properties(args: &ServeArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut props = BTreeMap::new();
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        props.extend(parse_properties(&text));
    }
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("MOLDAU_") {
            if name == "LOG" || name.starts_with("TEST_") {
                continue; // the tracing filter (see main), and test-harness switches
            }
            props.insert(name.to_ascii_lowercase().replace('_', "."), v);
        }
    }
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--override '{o}' is not NAME=VALUE"))?;
        props.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(props)
}

/// SIGTERM and SIGINT, listened for from the moment this is built: a signal that
/// arrives while the broker is still starting (or just after it logs "started") asks
/// for the same orderly shutdown instead of killing the process mid-way.
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT received since [`ShutdownSignal::listen`]
    /// (and not yet consumed by an earlier call). Cancel-safe.
    async fn received(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The HTTP API's settings, from Moldau's own properties (Kafka has none for HTTP):
/// `http.listener` (`host:port` or `http://host:port`, default `localhost:8080`;
/// `https://host:port` serves HTTPS with the `http.ssl.*` settings), `http.enable`
/// (default true), `http.max.body.bytes` (default 1 MiB).
struct HttpSettings {
    enable: bool,
    listener: String,
    max_body_bytes: usize,
    /// TLS for `https://`.
    tls: Option<moldau_server::config::security::TlsSettings>,
}

impl HttpSettings {
    fn from_properties(props: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let get = |k: &str| props.get(k).map(|v| v.trim());
        let https = get("http.listener").is_some_and(|l| {
            l.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        let tls = if https {
            Some(moldau_server::config::security::http_tls_settings(props)?)
        } else if let Some(key) = props.keys().find(|k| k.starts_with("http.ssl.")) {
            anyhow::bail!(
                "{key} is set but http.listener is not https://host:port: the HTTP API would \
                 serve plain HTTP"
            );
        } else {
            None
        };
        Ok(HttpSettings {
            tls,
            enable: match get("http.enable") {
                None => true,
                Some(v) => v
                    .parse()
                    .with_context(|| format!("http.enable={v:?} is not true or false"))?,
            },
            listener: get("http.listener")
                .map(|v| v.rsplit("://").next().unwrap_or(v).to_owned())
                .unwrap_or_else(|| "localhost:8080".into()),
            max_body_bytes: match get("http.max.body.bytes") {
                None => moldau_http::DEFAULT_MAX_BODY_BYTES,
                Some(v) => v
                    .parse()
                    .with_context(|| format!("http.max.body.bytes={v:?} is not a byte count"))?,
            },
        })
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut shutdown = ShutdownSignal::listen()?;
    let props = load_properties(&args)?;
    let http = HttpSettings::from_properties(&props)?;
    let config = BrokerConfig::from_properties(props)?;
    if http.enable && config.cluster.roles.broker && config.local_access.is_none() {
        anyhow::bail!(
            "http.enable=true, but the HTTP API has no broker listener to act through: it \
             needs a SASL listener (its users then log in with HTTP Basic), a PLAINTEXT one, \
             or an SSL one that does not require client certificates, with a truststore file \
             for TLS; add one or set http.enable=false"
        );
    }
    let local_access = config.local_access.clone();
    for warning in &config.no_effect {
        tracing::warn!("property has no effect: {warning}");
    }
    // A broker waits in `bind` until the controller unfences it, which never happens
    // if no quorum forms: a signal then ends start-up (like a kill, the logs recover on
    // the next start) instead of being ignored.
    let server = tokio::select! {
        server = Server::bind(config) => server?,
        _ = shutdown.received() => {
            tracing::info!("shutdown requested during start-up");
            return Ok(());
        }
    };
    let broker = server.broker().clone();
    let Some(kafka_addr) = server.local_addr() else {
        // A controller-only node: no Kafka listener, no HTTP API.
        tracing::info!(
            node_id = broker.config.node_id,
            cluster_id = %broker.cluster_id,
            log_dir = %broker.config.log_dir.display(),
            "Moldau controller started"
        );
        server.run(async move { shutdown.received().await }).await?;
        return Ok(());
    };
    let http_listener = if http.enable {
        Some(
            tokio::net::TcpListener::bind(&http.listener)
                .await
                .with_context(|| format!("binding the HTTP listener {}", http.listener))?,
        )
    } else {
        None
    };
    let http_addr = match &http_listener {
        Some(l) => l.local_addr()?.to_string(),
        None => "off".into(),
    };
    let advertised: Vec<String> = broker
        .advertised
        .iter()
        .map(|a| format!("{}://{}:{}", a.name, a.host, a.port))
        .collect();
    let basic = local_access
        .as_ref()
        .is_some_and(|a| !a.sasl_mechanisms.is_empty());
    let exposed = http_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .is_some_and(|a| !a.ip().is_loopback());
    if basic && exposed && http.tls.is_none() {
        tracing::warn!(
            http = %http_addr,
            "the HTTP API asks for Basic credentials over plain HTTP on a non-loopback \
             address: passwords cross the network in clear; serve HTTPS with \
             http.listener=https://… and http.ssl.*"
        );
    }
    if cfg!(feature = "test-skip-ack-fsync") {
        tracing::error!(
            "built with the test-only feature test-skip-ack-fsync: acks=all is answered \
             without an fsync, so acknowledged records do not survive a power loss"
        );
    }
    tracing::info!(
        listener = %kafka_addr,
        http = %http_addr,
        advertised = %advertised.join(","),
        log_dir = %broker.config.log_dir.display(),
        cluster_id = %broker.cluster_id,
        node_id = broker.config.node_id,
        "Moldau broker started"
    );
    let http_listener = match http_listener {
        Some(tcp) => Some(HttpListener::new(tcp, http.tls.as_ref())?),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_task = http_listener.map(|listener| {
        let access = http_access(&server, local_access.as_ref());
        let metrics_broker = broker.clone();
        let metrics: moldau_http::MetricsSource = Arc::new(move || metrics_broker.metrics_text());
        tokio::spawn(serve_http(
            listener,
            access,
            metrics,
            http.max_body_bytes,
            stop_rx,
        ))
    });
    server
        .run(async move {
            shutdown.received().await;
            // HTTP first: its requests in flight finish against a broker that still
            // serves them, then the broker drains its own connections.
            let _ = stop_tx.send(true);
            if let Some(task) = http_task {
                if tokio::time::timeout(std::time::Duration::from_secs(5), task)
                    .await
                    .is_err()
                {
                    tracing::warn!("HTTP requests did not finish within 5 s of shutdown");
                }
            }
        })
        .await?;
    Ok(())
}

/// The Kafka listener's address as a client on this host reaches it.
fn loopback(addr: std::net::SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => format!("127.0.0.1:{}", addr.port()),
        ip if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => addr.to_string(),
    }
}

/// How the HTTP API reaches this broker: through the listener the config chose
/// ([`moldau_server::config::security::LocalAccess`]), at its loopback address, or over
/// TLS at its advertised host so that the certificate's names match. A SASL listener
/// makes every HTTP user log in with Basic credentials.
fn http_access(
    server: &Server,
    local: Option<&moldau_server::config::security::LocalAccess>,
) -> moldau_http::Access {
    let Some(local) = local else {
        unreachable!("checked before start-up: a broker with HTTP on has a listener for it")
    };
    let bound = server
        .listener_addr(&local.listener)
        .expect("the chosen listener is a bound broker listener");
    let addr = match server
        .broker()
        .advertised
        .iter()
        .find(|a| a.name == local.listener)
    {
        Some(a) if local.security.tls.is_some() => format!("{}:{}", a.host, bound.port()),
        _ => loopback(bound),
    };
    let mut config = moldau_client::ClientConfig::new(&addr);
    config.client_id = "moldau-http".into();
    config.security = local.security.clone();
    if local.sasl_mechanisms.is_empty() {
        moldau_http::Access::Open(config)
    } else {
        moldau_http::Access::Basic {
            config,
            mechanisms: local.sasl_mechanisms.clone(),
        }
    }
}

/// The HTTP API's socket: plain HTTP, or HTTPS with each TLS handshake run apart.
enum HttpListener {
    Plain(tokio::net::TcpListener),
    Tls(
        moldau_http::HandshakeListener<
            moldau_server::security::tls::ServerTlsStream<tokio::net::TcpStream>,
        >,
    ),
}

impl HttpListener {
    /// Plain HTTP on `tcp`, or HTTPS with `tls` (its files reloaded when they change, as
    /// the broker's listeners do).
    fn new(
        tcp: tokio::net::TcpListener,
        tls: Option<&moldau_server::config::security::TlsSettings>,
    ) -> anyhow::Result<HttpListener> {
        let Some(settings) = tls else {
            return Ok(HttpListener::Plain(tcp));
        };
        let acceptor = Arc::new(
            moldau_server::security::tls::TlsAcceptor::new("HTTP".into(), settings.clone())
                .map_err(|e| anyhow::anyhow!("loading the HTTP API's TLS material: {e}"))?,
        );
        let listener = moldau_http::HandshakeListener::new(tcp, move |stream| {
            let acceptor = acceptor.clone();
            async move { acceptor.accept(stream).await.map(|(tls, _)| tls) }
        })?;
        Ok(HttpListener::Tls(listener))
    }
}

/// Serves the HTTP API, talking to this broker over its own Kafka listener.
async fn serve_http(
    listener: HttpListener,
    access: moldau_http::Access,
    metrics: moldau_http::MetricsSource,
    max_body_bytes: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let state = loop {
        let started = moldau_http::AppState::new(access.clone(), metrics.clone(), max_body_bytes);
        tokio::select! {
            started = started => match started {
                Ok(state) => break state,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP API: cannot reach the Kafka listener yet");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
    };
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = match listener {
        HttpListener::Plain(l) => moldau_http::serve(l, state, shutdown).await,
        HttpListener::Tls(l) => moldau_http::serve(l, state, shutdown).await,
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP API stopped");
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let serving = matches!(command, Command::Serve(_));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOLDAU_LOG").unwrap_or_else(|_| {
                // The CLI stays quiet unless asked; the broker logs at info.
                if serving {
                    "info,openraft=warn"
                } else {
                    "warn"
                }
                .into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ctx = cli::Context::new(cli.client);
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve(args).await,
            Command::Topics(c) => cli::topics::run(&ctx, c).await,
            Command::Produce(a) => cli::produce::run(&ctx, a).await,
            Command::Consume(a) => cli::consume::run(&ctx, a).await,
            Command::Groups(c) => cli::groups::run(&ctx, c).await,
            Command::Transactions(c) => cli::transactions::run(&ctx, c).await,
            Command::Cluster(c) => cli::cluster::run(&ctx, c).await,
            Command::Acls(c) => cli::security::acls(&ctx, c).await,
            Command::Users(c) => cli::security::users(&ctx, c).await,
            Command::Quotas(c) => cli::security::quotas(&ctx, c).await,
        }
    });
    match result {
        Ok(()) => Ok(()),
        Err(e) if serving => Err(e),
        Err(e) => {
            eprintln!("moldau: error: {e:#}");
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            std::process::exit(cli::exit_code(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_file_syntax() {
        let p = parse_properties(
            "# comment\nlog.dirs=/tmp/x\n listeners = PLAINTEXT://:9092\nbad line\n",
        );
        assert_eq!(p.get("log.dirs").map(String::as_str), Some("/tmp/x"));
        assert_eq!(
            p.get("listeners").map(String::as_str),
            Some("PLAINTEXT://:9092")
        );
        assert_eq!(p.len(), 2);
    }
}
