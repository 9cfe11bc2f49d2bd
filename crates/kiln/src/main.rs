//! The `kiln` binary: command-line parsing and wiring only. Each command lives in its own
//! module; the work is done by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod load;
mod run_cmd;
mod view;

/// Kiln: self-hosted build and delivery pipelines that run as containers.
#[derive(Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a workflow file here, now, without a server.
    Run(run_cmd::RunArgs),
    /// Check a workflow file and print every problem found.
    Validate {
        /// The workflow file.
        file: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print the JSON Schema of workflow files (for editors).
    Schema,
}

/// How a command prints its result.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text and tables.
    Table,
    /// JSON on stdout.
    Json,
}

/// Exit code for a run that did not succeed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input (workflow file, parameters, flags, executor not available).
pub const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Run(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            runtime.block_on(run_cmd::run(args))
        }
        Cmd::Validate { file, output } => load::validate(&file, output),
        Cmd::Schema => {
            match serde_json::to_string_pretty(&kiln_workflow::json_schema()) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            }
            ExitCode::SUCCESS
        }
    }
}
