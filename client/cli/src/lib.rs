//! `riven`, the operator command line of a Riven cluster, as a library.
//!
//! The binary (`src/main.rs`) only parses its arguments and calls [`main`]; everything else is
//! here, so the commands can be driven with in-memory streams ([`Streams`]) as well as by the
//! integration tests, which run the real binary against real memcached processes.
//!
//! - [`cli`]: the arguments, as clap parses them.
//! - [`topology`]: reading the topology file, and `--zone`.
//! - [`commands`]: `get`, `set`, `delete`, `touch` through [`riven_client::Client`], and
//!   `where` from the rings.
//! - [`stats`]: every node's `stats` over memcached's text protocol, as a table ([`table`]).
//!
//! Exit statuses ([`Exit`]): 0 success, 1 "not there" (a miss, `NOT_FOUND`, `NOT_STORED`),
//! 2 an error. Scripts can then tell a missing key from a broken cluster.

#![warn(missing_docs)]

pub mod cli;
pub mod commands;
pub mod stats;
pub mod table;
pub mod topology;

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use riven_client::WritePolicy;

use crate::cli::{Cli, Command};

/// How a command ended, as the process's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It did what was asked (status 0).
    Success,
    /// The cluster answered, and the key was not there or the store was not done (status 1).
    NotFound,
    /// It failed, or only partly succeeded, such as `stats` with a node down (status 2).
    Failed,
}

impl Exit {
    /// The exit status number.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::NotFound => 1,
            Exit::Failed => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Where a command reads and writes: stdout, stderr and stdin in the binary, buffers in tests.
pub struct Streams<'a> {
    /// Results (values, `STORED`, tables).
    pub out: &'a mut dyn Write,
    /// Side information (`flags N`, `not found`) and errors.
    pub err: &'a mut dyn Write,
    /// The value of `set KEY -`.
    pub input: &'a mut dyn Read,
}

/// Runs `cli` on the process's standard streams and turns the outcome into an exit status,
/// printing an error as one line on stderr.
///
/// The runtime is single-threaded: a command makes a handful of calls, and a second thread
/// would only cost start-up time.
pub fn main(cli: Cli) -> ExitCode {
    let (stdout, stderr, stdin) = (io::stdout(), io::stderr(), io::stdin());
    let (mut out, mut err, mut input) = (stdout.lock(), stderr.lock(), stdin.lock());
    let mut streams = Streams {
        out: &mut out,
        err: &mut err,
        input: &mut input,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(&cli, &mut streams)))
        .and_then(|exit| {
            streams.out.flush().context("cannot write to stdout")?;
            Ok(exit)
        });
    match result {
        Ok(exit) => exit.into(),
        // A reader that went away (`riven stats | head`) is not worth an error message.
        Err(e) if is_broken_pipe(&e) => Exit::Failed.into(),
        Err(e) => {
            // `{:#}` puts the context chain on one line: "get \"k\": no zone could answer: ...".
            let _ = writeln!(streams.err, "riven: {e:#}");
            Exit::Failed.into()
        }
    }
}

/// Runs one command.
pub async fn run(cli: &Cli, io: &mut Streams<'_>) -> anyhow::Result<Exit> {
    let topology = topology::load(&cli.topology, cli.zone.as_deref())?;
    let timeout = Duration::from_millis(cli.timeout_ms);
    match &cli.command {
        Command::Get { key } => {
            let client = commands::client(topology, timeout, WritePolicy::Local)?;
            commands::get(&client, key, io).await
        }
        Command::Set(args) => commands::set(&topology, timeout, args, io).await,
        Command::Delete { key } => {
            let client = commands::client(topology, timeout, WritePolicy::Local)?;
            commands::delete(&client, key, io).await
        }
        Command::Touch { key, seconds } => {
            let client = commands::client(topology, timeout, WritePolicy::Local)?;
            commands::touch(&client, key, *seconds, io).await
        }
        Command::Where { key } => commands::locate(&topology, key, io),
        Command::Stats { filter } => stats::run(&topology, timeout, filter.as_deref(), io.out, io.err).await,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}
