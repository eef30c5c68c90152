//! The `sra-milter` binary: command line, config, socket, signals. All
//! behaviour lives in the library.

use clap::{Args, Parser, Subcommand};
use sra_milter::config::{Config, Overrides, EX_CONFIG};
use sra_milter::daemon::{self, ControlRequest, Shared};
use sra_milter::explain::{self, Subject};
use sra_milter::overrides::Target;
use sra_milter::pipeline::Engine;
use sra_milter::rating::Class;
use sra_milter::socket::{MilterListener, SocketSpec};
use sra_milter::store::{ReputationStore, RocksStore};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sra-milter",
    version,
    about = "Sender reputation analysis milter for Postfix (MITRE D3FEND D3-SRA)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Configuration file [default: /etc/sra-milter/sra-milter.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Reputation store directory (overrides `state_dir`)
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
struct Who {
    /// A sender address
    #[arg(long, value_name = "ADDR")]
    sender: Option<String>,
    /// A sender domain
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// An MTA's IP address (override: also a CIDR network)
    #[arg(long, value_name = "IP")]
    mta: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the milter in the foreground
    Run {
        #[command(flatten)]
        common: Common,
        /// Milter socket (inet:HOST:PORT, inet:PORT@HOST, inet6:..., unix:PATH)
        #[arg(long, value_name = "SPEC")]
        socket: Option<SocketSpec>,
        /// Never reject, tempfail, discard or quarantine; log what would be done
        #[arg(long)]
        monitor_only: bool,
    },
    /// Validate the configuration and print the effective settings
    CheckConfig {
        #[command(flatten)]
        common: Common,
    },
    /// Show a rating with every factor and contribution
    Explain {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        who: Who,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Feed .eml files, Maildir folders and mbox files through the pipeline in date order
    Replay {
        #[command(flatten)]
        common: Common,
        /// Write one JSON verdict record per message here ("-": stdout)
        #[arg(long, value_name = "OUT")]
        jsonl: Option<PathBuf>,
        /// Rate without learning
        #[arg(long)]
        dry_run: bool,
        /// A relay of the organisation whose Received: headers are trusted (repeatable; adds to trusted_relays)
        #[arg(long = "trusted-relay", value_name = "CIDR")]
        trusted_relays: Vec<ipnet::IpNet>,
        /// Believe this authserv-id's Authentication-Results (repeatable; adds to auth.trusted_authserv_ids)
        #[arg(long = "trusted-authserv", value_name = "ID")]
        trusted_authserv: Vec<String>,
        /// Verify SPF/DKIM/DMARC again with live DNS instead of reading Authentication-Results
        #[arg(long)]
        verify_dns: bool,
        /// Messages per store write batch
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Engagement events (JSON lines, each with a time) replayed in time order with the mail
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Files, directories, Maildir folders, mbox files
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Apply engagement events (JSON lines: opened, junk, not_junk) from another system's log
    ImportEvents {
        #[command(flatten)]
        common: Common,
        /// JSON lines, as POST /v1/events takes them
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Fix the class of a sender, domain, MTA or network (or --remove it)
    Override {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        who: Who,
        /// unrated, neutral, trusted, suspicious or malicious
        #[arg(required_unless_present = "remove")]
        class: Option<Class>,
        /// Why (kept with the override)
        #[arg(long, default_value = "")]
        reason: String,
        /// Remove the override instead
        #[arg(long, conflicts_with = "class")]
        remove: bool,
    },
}

fn load(common: &Common, ov: Overrides) -> Result<Config, ExitCode> {
    let ov = Overrides {
        state_dir: common.state_dir.clone(),
        ..ov
    };
    Config::load(common.config.as_deref(), &ov).map_err(|e| {
        eprintln!("sra-milter: {e}");
        ExitCode::from(EX_CONFIG as u8)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { common } => match load(&common, Overrides::default()) {
            Ok(cfg) => match toml::to_string_pretty(&cfg) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sra-milter: cannot print config: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Command::Run {
            common,
            socket,
            monitor_only,
        } => {
            let ov = Overrides {
                socket,
                state_dir: common.state_dir.clone(),
                monitor_only,
            };
            let cfg = match load(&common, ov.clone()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            run(cfg, common.config.clone(), ov)
        }
        Command::Replay {
            common,
            jsonl,
            dry_run,
            trusted_relays,
            trusted_authserv,
            verify_dns,
            batch,
            events,
            paths,
        } => {
            let cfg = match load(&common, Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let events = match events.as_deref().map(read_events).transpose() {
                Ok(e) => e.unwrap_or_default(),
                Err(e) => {
                    eprintln!("sra-milter: {e}");
                    return ExitCode::from(65);
                }
            };
            let opts = sra_milter::replay::ReplayOptions {
                paths,
                dry_run,
                trusted_relays,
                trusted_authserv_ids: trusted_authserv,
                verify_dns,
                batch,
                progress: true,
                events,
            };
            let mut out: Box<dyn std::io::Write> = match jsonl.as_deref() {
                None => Box::new(std::io::sink()),
                Some(p) if p.as_os_str() == "-" => {
                    Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
                }
                Some(p) => match std::fs::File::create(p) {
                    Ok(f) => Box::new(std::io::BufWriter::new(f)),
                    Err(e) => {
                        eprintln!("sra-milter: {}: {e}", p.display());
                        return ExitCode::FAILURE;
                    }
                },
            };
            match sra_milter::replay::replay(&cfg, &opts, &mut out) {
                Ok(summary) => {
                    eprint!("{}", summary.to_text());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sra-milter: replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ImportEvents { common, file } => {
            let cfg = match load(&common, Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("sra-milter: {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            // Validate everything first: a bad line imports nothing.
            if let Err(bad) = sra_milter::events::parse_batch(&text) {
                eprintln!("sra-milter: {}: {bad}; nothing imported", file.display());
                return ExitCode::from(65);
            }
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let mut code = ExitCode::SUCCESS;
            for chunk in lines.chunks(1000) {
                let req = ControlRequest::Events {
                    body: chunk.join("\n"),
                };
                if control(&cfg, req) != ExitCode::SUCCESS {
                    code = ExitCode::FAILURE;
                }
            }
            code
        }
        Command::Explain { common, who, json } => {
            let cfg = match load(&common, Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let subject = match (who.sender, who.domain, who.mta) {
                (Some(s), _, _) => Subject::Sender(s),
                (_, Some(d), _) => Subject::Domain(d),
                (_, _, Some(m)) => match m.parse::<IpAddr>() {
                    Ok(ip) => Subject::Mta(ip),
                    Err(_) => {
                        eprintln!("sra-milter: {m:?} is not an IP address");
                        return ExitCode::from(64);
                    }
                },
                _ => return ExitCode::from(64),
            };
            match explain::explain(&cfg, &subject, sra_milter::now()) {
                Ok(e) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&explain::to_json(&e)).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Ok(e) => {
                    print!("{}", explain::to_text(&e));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sra-milter: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Override {
            common,
            who,
            class,
            reason,
            remove,
        } => {
            let cfg = match load(&common, Overrides::default()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let target = match (who.sender, who.domain, who.mta) {
                (Some(s), _, _) => Target::sender(&s),
                (_, Some(d), _) => Target::domain(&d),
                (_, _, Some(m)) => Target::mta(&m),
                _ => Err("nothing to override".into()),
            };
            let target = match target {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("sra-milter: {e}");
                    return ExitCode::from(64);
                }
            };
            let req = match (remove, class) {
                (true, _) => ControlRequest::RemoveOverride { target },
                (false, Some(class)) => ControlRequest::SetOverride {
                    target,
                    class,
                    reason,
                },
                (false, None) => return ExitCode::from(64),
            };
            control(&cfg, req)
        }
    }
}

/// Events for replay: each needs its time.
fn read_events(path: &std::path::Path) -> Result<Vec<sra_milter::events::Event>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let events = sra_milter::events::parse_batch(&text)
        .map_err(|bad| format!("{}: {bad}", path.display()))?;
    if let Some(i) = events.iter().position(|e| e.time.is_none()) {
        return Err(format!(
            "{}: event {} has no time; replay needs one",
            path.display(),
            i + 1
        ));
    }
    Ok(events)
}

/// A control request through the running daemon's control socket when it
/// answers, else applied to the store directly.
fn control(cfg: &Config, req: ControlRequest) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sra-milter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = cfg.control_socket();
    let resp = match rt.block_on(daemon::send_control(&path, &req)) {
        Ok(resp) => resp,
        Err(_) => {
            let store = match RocksStore::open(&cfg.state_dir, cfg.message_index_ttl.0.as_secs()) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    eprintln!(
                        "sra-milter: the daemon's control socket {} does not answer and the store cannot be opened: {e}",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let engine = match Engine::new(store.clone(), cfg) {
                Ok(e) => Arc::new(e),
                Err(e) => {
                    eprintln!("sra-milter: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let resp = daemon::execute(cfg, &engine, req);
            if let Err(e) = store.flush() {
                eprintln!("sra-milter: flushing the store: {e}");
                return ExitCode::FAILURE;
            }
            resp
        }
    };
    if resp.ok {
        println!("{}", resp.message);
        ExitCode::SUCCESS
    } else {
        eprintln!("sra-milter: {}", resp.message);
        ExitCode::FAILURE
    }
}

fn run(cfg: Config, path: Option<PathBuf>, ov: Overrides) -> ExitCode {
    if let Err(e) = sra_milter::logging::init(&cfg) {
        eprintln!("sra-milter: cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let store = match RocksStore::open(&cfg.state_dir, cfg.message_index_ttl.0.as_secs()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!("cannot open the store at {}: {e}", cfg.state_dir.display());
                return ExitCode::FAILURE;
            }
        };
        let engine = match Engine::new(store.clone(), &cfg) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                tracing::error!("cannot read overrides: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mode = cfg.socket_mode_bits().unwrap_or(0o660);
        let listener = match MilterListener::bind(&cfg.socket, mode).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {}: {e}", cfg.socket);
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "sra-milter {} listening on {} (mode {}, store {})",
            env!("CARGO_PKG_VERSION"),
            cfg.socket,
            cfg.mode,
            cfg.state_dir.display()
        );
        let shared = match Shared::new(cfg, engine) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot set up the DNS resolver: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = signals(shared.clone(), path, ov);
        let result = daemon::serve(listener, shared, shutdown).await;
        let flushed = tokio::task::spawn_blocking(move || store.flush()).await;
        match (result, flushed) {
            (Ok(()), Ok(Ok(()))) => {
                tracing::info!("stopped; store flushed");
                ExitCode::SUCCESS
            }
            (Err(e), _) => {
                tracing::error!("milter failed: {e}");
                ExitCode::FAILURE
            }
            (_, Ok(Err(e))) => {
                tracing::error!("flushing the store: {e}");
                ExitCode::FAILURE
            }
            (_, Err(e)) => {
                tracing::error!("flushing the store: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGTERM or SIGINT; reloads the config on SIGHUP.
fn signals(
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    ov: Overrides,
) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
                _ = hup.recv() => {
                    let shared = shared.clone();
                    let path = path.clone();
                    let ov = ov.clone();
                    let res = tokio::task::spawn_blocking(move || shared.reload(path.as_deref(), &ov)).await;
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!("config reload failed, keeping the running config: {e}"),
                        Err(e) => tracing::error!("config reload failed: {e}"),
                    }
                }
            }
        }
    }
}
