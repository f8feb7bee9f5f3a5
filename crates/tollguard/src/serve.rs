//! `tollguard serve` and `tollguard token create|list|revoke`.

use crate::rate::setup;
use crate::InputArgs;
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tollguard_server::{Scope, Server};

/// Arguments of `tollguard serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (TOML): decks, accounts, policy and `[server]` (docs/api.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A-Z rate deck CSV (repeat for several); replaces the file's decks.
    #[arg(long = "rates")]
    rates: Vec<PathBuf>,
    /// A CGRateS tariff-plan folder that prices calls (replaces `[cgrates] plan`).
    #[arg(long)]
    cgrates_plan: Option<PathBuf>,
    /// Zone of accounts the configuration does not place. Default UTC.
    #[arg(long)]
    tz: Option<String>,
    /// Dialling plan country of accounts the configuration does not place.
    #[arg(long)]
    country: Option<String>,
    /// Address to listen on (overrides `[server] listen`).
    #[arg(long)]
    listen: Option<String>,
    /// SQLite database (overrides `[server] database`).
    #[arg(long)]
    database: Option<PathBuf>,
}

impl ServeArgs {
    /// The files and flags that build the rater and policy, then `--database` and `--listen`.
    fn into_parts(self) -> (InputArgs, Option<PathBuf>, Option<String>) {
        let input = InputArgs {
            cdr: vec![],
            format: tollguard_ingest::Format::Asterisk,
            rates: self.rates,
            cgrates_plan: self.cgrates_plan,
            config: self.config,
            tz: self.tz,
            country: self.country,
        };
        (input, self.database, self.listen)
    }
}

/// `tollguard snapshot`: the same files and flags as `serve`.
pub fn prepare(args: ServeArgs) -> Result<ExitCode> {
    let (input, database, _) = args.into_parts();
    let setup = setup(&input)?;
    let mut options = setup.server.options.clone();
    if let Some(db) = database {
        options.database = db;
    }
    let t = std::time::Instant::now();
    let (through, size) = tollguard_server::prepare_snapshot(Arc::new(setup.rater), setup.policy, &options)?;
    if size == 0 {
        println!("{}: the event log is empty, nothing to prepare", options.database.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "wrote {}.snapshot.next: the state at event {through} ({size} bytes) in {:.1} s; the next start of \
         this build with this configuration reads only the log after it",
        options.database.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let (input, database, listen) = args.into_parts();
    let setup = setup(&input)?;
    // `[server]` as read at start: a reload does not apply it (see below).
    let server_section = format!("{:?}", setup.server);
    let mut options = setup.server.options.clone();
    if let Some(db) = database {
        options.database = db;
    }
    let listen = listen.unwrap_or(setup.server.listen.clone());
    let db = options.database.clone();
    let scheme = if options.tls.is_some() { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // SIGHUP is caught from here on: its default action ends the process, and a reload asked for
    // during the start-up rebuild (which takes minutes on a long log; `systemctl reload`) would
    // stop the service instead. One that comes now is carried out once the server is up.
    #[cfg(unix)]
    let hup = {
        let _in_runtime = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot catch SIGHUP")?
    };
    eprintln!("tollguard serve: handling the event log in {} again before listening", db.display());
    let server = Server::start(Arc::new(setup.rater), setup.policy, options)?;
    // A reload (SIGHUP, or POST /v1/admin/reload) reads the same files and flags again and takes
    // the decks, accounts and policy. `[server]` (listening, the store, TLS, webhooks, e-mail,
    // tails, Kamailio, the lost-call rule) is taken at start only: a change to it is said, not
    // applied.
    server.set_reloader(Box::new(move || {
        let s = crate::rate::setup(&input)?;
        if format!("{:?}", s.server) != server_section {
            eprintln!(
                "warning: reload: the [server] section changed; it takes effect at the next restart \
                 (a reload applies the rating decks, the accounts and the policy)"
            );
        }
        Ok((Arc::new(s.rater), s.policy))
    }));
    let state = server.state();
    match server.state().from_snapshot {
        // The line before says what the snapshot held and what came after it.
        Some(_) => eprintln!("tollguard serve: listening on {scheme}://{listen}"),
        None => eprintln!(
            "tollguard serve: {} events from {} handled again; listening on {scheme}://{listen}",
            server.state().rebuilt_events,
            db.display()
        ),
    }
    runtime.block_on(async move {
        #[cfg(unix)]
        tokio::spawn(async move {
            let mut hup = hup;
            while hup.recv().await.is_some() {
                match state.reload("signal SIGHUP").await {
                    Ok(n) => eprintln!("tollguard serve: configuration reloaded ({n} events handled again)"),
                    Err(e) => eprintln!("error: reload failed, the running configuration stays: {e:#}"),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        server.serve(listener, shutdown_signal()).await
    })?;
    eprintln!("tollguard serve: stopped, store flushed");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("tollguard serve: shutting down (requests in flight finish, the store is flushed)");
}

/// `tollguard token ...`.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; prints it once (only its hash is stored).
    Create(TokenCreateArgs),
    /// List the tokens: name, scope, when created (the tokens themselves are not stored).
    List(TokenListArgs),
    /// Revoke the tokens with a name: a running server refuses them within 30 s.
    Revoke(TokenRevokeArgs),
}

/// Arguments of `tollguard token list`.
#[derive(clap::Args, Debug)]
pub struct TokenListArgs {
    /// The server's SQLite database.
    #[arg(long)]
    database: PathBuf,
}

/// Arguments of `tollguard token revoke`.
#[derive(clap::Args, Debug)]
pub struct TokenRevokeArgs {
    /// The server's SQLite database.
    #[arg(long)]
    database: PathBuf,
    /// The name the tokens were created with (every token with it is revoked).
    #[arg(long)]
    name: String,
}

/// Arguments of `tollguard token create`.
#[derive(clap::Args, Debug)]
pub struct TokenCreateArgs {
    /// The server's SQLite database.
    #[arg(long)]
    database: PathBuf,
    /// A name for people (who or what uses it).
    #[arg(long)]
    name: String,
    /// integration, operator or customer:<account>.
    #[arg(long)]
    scope: String,
}

pub fn token(cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create(a) => {
            let scope: Scope = a.scope.parse().map_err(|e: String| anyhow!("--scope: {e}"))?;
            let token = tollguard_server::create_token(&a.database, &a.name, &scope)?;
            println!("{token}");
            eprintln!("token {:?} with scope {scope} stored (hashed) in {}", a.name, a.database.display());
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List(a) => {
            let tokens = tollguard_server::list_tokens(&a.database)?;
            println!("{:<24} {:<24} created", "name", "scope");
            for (name, scope, created) in &tokens {
                println!("{name:<24} {scope:<24} {created}");
            }
            eprintln!("{} tokens in {}", tokens.len(), a.database.display());
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke(a) => {
            let n = tollguard_server::revoke_tokens(&a.database, &a.name)?;
            if n == 0 {
                return Err(anyhow!("no token named {:?} in {}", a.name, a.database.display()));
            }
            eprintln!(
                "revoked {n} token(s) named {:?} in {}; a running server refuses them within {} s",
                a.name,
                a.database.display(),
                tollguard_server::TOKEN_RECHECK.as_secs()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
