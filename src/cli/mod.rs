//! The command line: clap definitions and one file per subcommand, each
//! parsing its arguments, calling the library and printing. No behaviour
//! lives here.

mod calibrate;
mod check_config;
mod explain;
mod import_events;
mod override_;
mod replay;
mod run;
mod store;
mod whatif;

use clap::{Args, Parser, Subcommand};
use sra_milter::config::SocketSpec;
use sra_milter::config::{Config, Overrides, EX_CONFIG};
use sra_milter::vocab::Class;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// The store itself: `copy` a site's history between backends.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Fit the factors' weights to the site's feedback and propose
    /// them with their measured separation (nothing is changed).
    Calibrate {
        #[command(flatten)]
        common: Common,
        /// How far back the daemon's journal is read.
        #[arg(long, default_value = "30d", value_name = "SPAN")]
        since: sra_milter::vocab::Span,
        /// Verdict records (JSON lines, e.g. `replay --jsonl`) instead of
        /// the journal.
        #[arg(long = "records", value_name = "FILE")]
        records: Vec<PathBuf>,
        /// Feedback as JSON lines {"message_id", "label": "bad"|"good"},
        /// before the store's.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Share of the days, the latest, held out to measure separation.
        #[arg(long, default_value_t = 0.3)]
        held_out: f64,
        #[arg(long)]
        json: bool,
    },
    /// Re-rate recent verdicts under a candidate configuration and show
    /// what would change (nothing is changed).
    Whatif {
        /// The candidate configuration.
        #[arg(short = 'c', long = "candidate", value_name = "CANDIDATE.toml")]
        candidate: PathBuf,
        /// The current configuration (default: the installed one).
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// How far back the daemon's journal is read.
        #[arg(long, default_value = "7d", value_name = "SPAN")]
        since: sra_milter::vocab::Span,
        /// Verdict records (JSON lines, e.g. `replay --jsonl`) instead of
        /// the journal.
        #[arg(long = "records", value_name = "FILE")]
        records: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
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

#[derive(Subcommand)]
enum StoreCommand {
    /// Copies everything one store holds into an empty other (RocksDB to
    /// Redis and back), verified by counts.
    Copy {
        #[command(flatten)]
        common: Common,
        /// rocksdb:PATH or redis://HOST:PORT
        #[arg(long, value_name = "SPEC")]
        from: String,
        /// rocksdb:PATH or redis://HOST:PORT
        #[arg(long, value_name = "SPEC")]
        to: String,
        /// The source is a Redis Cluster (SPEC names a seed node).
        #[arg(long)]
        from_cluster: bool,
        /// The destination is a Redis Cluster.
        #[arg(long)]
        to_cluster: bool,
        /// Key prefix on Redis (default: [store.redis] prefix).
        #[arg(long)]
        prefix: Option<String>,
        /// Keeps the destination's addresses and IP addresses as keyed
        /// hashes under this key file (what `[store] identity_key_file`
        /// then names): converts a store kept in clear.
        #[arg(long, value_name = "FILE")]
        identity_key: Option<std::path::PathBuf>,
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

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { common } => check_config::main(&common),
        Command::Run {
            common,
            socket,
            monitor_only,
        } => run::main(&common, socket, monitor_only),
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
        } => replay::main(
            &common,
            sra_milter::replay::ReplayOptions {
                paths,
                dry_run,
                trusted_relays,
                trusted_authserv_ids: trusted_authserv,
                verify_dns,
                batch,
                progress: true,
                events: Vec::new(),
            },
            jsonl,
            events,
        ),
        Command::Calibrate {
            common,
            since,
            records,
            labels,
            held_out,
            json,
        } => calibrate::main(
            &common,
            calibrate::Options {
                since,
                records,
                labels,
                held_out,
                json,
            },
        ),
        Command::Whatif {
            candidate,
            current,
            state_dir,
            since,
            records,
            json,
        } => whatif::main(whatif::Options {
            candidate,
            current,
            state_dir,
            since,
            records,
            json,
        }),
        Command::ImportEvents { common, file } => import_events::main(&common, &file),
        Command::Explain { common, who, json } => explain::main(&common, who, json),
        Command::Override {
            common,
            who,
            class,
            reason,
            remove,
        } => override_::main(&common, who, class, reason, remove),
        Command::Store(StoreCommand::Copy {
            common,
            from,
            to,
            from_cluster,
            to_cluster,
            prefix,
            identity_key,
        }) => store::copy_main(
            &common,
            store::Spec {
                text: from,
                cluster: from_cluster,
            },
            store::Spec {
                text: to,
                cluster: to_cluster,
            },
            prefix,
            identity_key,
        ),
    }
}
