//! `tollguard`: the one binary. See `tollguard --help` and the README.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod config;
mod demo;
mod evaluate;
mod price;
mod rate;
mod reconcile;
mod replay;
mod report;
mod serve;
mod simulate;

/// Real-time toll-fraud prevention for voice traffic.
#[derive(Parser, Debug)]
#[command(name = "tollguard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What the CDR readers and raters need, shared by several commands.
#[derive(clap::Args, Debug, Clone)]
pub struct InputArgs {
    /// CDR file to read (repeat for several).
    #[arg(long = "cdr", required = true)]
    pub cdr: Vec<PathBuf>,
    /// CDR format: asterisk, freeswitch-csv, freeswitch-json, cucm or generic.
    #[arg(long)]
    pub format: tollguard_ingest::Format,
    /// A-Z rate deck CSV (repeat for several: the first is `cost`, the others `cost_NAME`).
    #[arg(long = "rates")]
    pub rates: Vec<PathBuf>,
    /// A CGRateS tariff-plan folder that prices calls (subject: the account); see
    /// docs/integrations/cgrates.md.
    #[arg(long)]
    pub cgrates_plan: Option<PathBuf>,
    /// Configuration file (TOML); see docs/configuration.md.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Zone of local timestamps in the CDRs (Asterisk writes local time). Default UTC.
    #[arg(long)]
    pub tz: Option<String>,
    /// ISO 3166 alpha-2 country of the dialling plan for accounts the configuration does not place.
    #[arg(long)]
    pub country: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The live service and its dashboard on simulated traffic with a 2011-style attack: prints
    /// the dashboard's address and tokens (nothing to set up).
    Demo(demo::DemoArgs),
    /// Rate CDRs: one output row per CDR with E.164 number, country, type, risk, prefix and cost.
    Rate(rate::RateArgs),
    /// Price one call against a deck (prints the cost alone).
    Price(price::PriceArgs),
    /// Replay CDRs through the engine in event time: what would the policy have done?
    Replay(replay::ReplayArgs),
    /// The detection scorecard on labelled traffic (from `tollguard simulate`).
    Evaluate(evaluate::EvaluateArgs),
    /// Generate a seeded month of PBX traffic with labelled fraud (Master.csv, labels.csv).
    Simulate(simulate::SimulateArgs),
    /// Two sets of records of the same traffic side by side: calls missing on either side,
    /// duration and cost differences, totals per day.
    Reconcile(reconcile::ReconcileArgs),
    /// Reports from the live service's store.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// The live service: HTTP API for authorization, call events and records (docs/api.md).
    Serve(serve::ServeArgs),
    /// API tokens.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// Prepare the next start: read the event log with this build and configuration (while the
    /// service runs) and write DATABASE.snapshot.next, so that the first start after an upgrade
    /// or a configuration change reads only the log after it (docs/operations.md).
    Snapshot(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<ExitCode> = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Rate(a) => rate::run(a),
        Command::Price(a) => price::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Reconcile(a) => reconcile::run(a),
        Command::Report(c) => report::run(c),
        Command::Serve(a) => serve::run(a),
        Command::Token(c) => serve::token(c),
        Command::Snapshot(a) => serve::prepare(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
