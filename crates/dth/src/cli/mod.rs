//! Command-line structure (clap derive) and dispatch.

mod client;
mod hub;
mod image;
mod s3;
mod state;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Data Transfer Hub: move objects and container images between clouds, reliably, fast, and verified.
#[derive(Debug, Parser)]
#[command(name = "dth", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// More output: -v lists every key acted on, -vv adds debug logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: HTTP API, scheduler and workers, state in SQLite (default) or PostgreSQL.
    #[command(after_help = hub::SERVE_EXAMPLES)]
    Serve(Box<hub::ServeArgs>),
    /// Run workers only, joining a hub's store (PostgreSQL) from any machine.
    #[command(after_help = hub::WORKER_EXAMPLES)]
    Worker(hub::WorkerArgs),
    /// Object storage commands.
    #[command(subcommand)]
    S3(Box<s3::S3Command>),
    /// Container image commands.
    #[command(subcommand)]
    Image(Box<image::ImageCommand>),
    /// Sign in to a hub and store an API token for the commands below.
    #[command(after_help = client::LOGIN_EXAMPLES)]
    Login(client::LoginArgs),
    /// Revoke the stored token and forget the login.
    #[command(after_help = client::LOGOUT_EXAMPLES)]
    Logout(client::LogoutArgs),
    /// A hub's tasks: create, list, show, start, stop, watch, retry, report.
    #[command(after_help = client::TASK_EXAMPLES)]
    Task(client::ClientArgs<client::TaskCommand>),
    /// A hub's secrets: access keys and registry logins that tasks refer to by name.
    #[command(after_help = client::SECRET_EXAMPLES)]
    Secret(client::ClientArgs<client::SecretCommand>),
    /// A hub's users (admin): invite, list, change role, disable, reset passwords.
    #[command(after_help = client::USER_EXAMPLES)]
    User(client::ClientArgs<client::UserCommand>),
    /// Your API tokens on a hub: create, list, revoke.
    #[command(after_help = client::TOKEN_EXAMPLES)]
    Token(client::ClientArgs<client::TokenCommand>),
}

/// Sets up `tracing`: warnings by default, `DTH_LOG` or `RUST_LOG` to change.
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = if cli.verbose >= 2 {
        "dth=debug,dth_s3=debug,warn"
    } else {
        "warn,aws_config=error"
    };
    let filter = EnvFilter::try_from_env("DTH_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => hub::serve(*args).await,
        Command::Worker(args) => hub::worker(args).await,
        Command::S3(cmd) => s3::run(*cmd, cli.verbose).await,
        Command::Image(cmd) => image::run(*cmd, cli.verbose).await,
        Command::Login(a) => Ok(client::run(client::ClientCommand::Login(a)).await),
        Command::Logout(a) => Ok(client::run(client::ClientCommand::Logout(a)).await),
        Command::Task(a) => Ok(client::run(client::ClientCommand::Task(a)).await),
        Command::Secret(a) => Ok(client::run(client::ClientCommand::Secret(a)).await),
        Command::User(a) => Ok(client::run(client::ClientCommand::User(a)).await),
        Command::Token(a) => Ok(client::run(client::ClientCommand::Token(a)).await),
    }
}
