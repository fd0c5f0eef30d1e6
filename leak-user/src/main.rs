//! `leak`: the command line. Parsing and dispatch only; the work is in the
//! library's `cmd` modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leak_user::cmd;

/// Find memory leaks in running Go programs, from outside, with eBPF.
///
/// `leak top` shows which process's memory keeps growing, host-wide, with a
/// verdict per process. `leak trace` shows which call stacks hold memory
/// that is never freed, starting from what the program held before leak
/// looked, with numbers that agree with Go's own heap profile, as a report,
/// folded stacks and a flame graph; `leak trace -- CMD` starts a program
/// under leak. `leak heap` reads a Go program's own heap profile from
/// outside, with no eBPF; `leak goroutines` its goroutines, grouped as its
/// own goroutine profile groups them. Run as root.
#[derive(Parser, Debug)]
#[command(name = "leak", version, about, long_about)]
struct Cli {
    /// Log what leak and its probes see at debug level (as RUST_LOG=debug
    /// would, for leak's own modules only): failed reads, unexpected
    /// runtime data, full buffers.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Where is memory held? Outstanding bytes per call stack (Go, C, C++, Rust).
    #[command(long_about = cmd::trace::LONG_ABOUT)]
    Trace(cmd::trace::TraceArgs),
    /// Which process is leaking? Memory over time per process, with a verdict.
    #[command(long_about = cmd::top::LONG_ABOUT)]
    Top(cmd::top::TopArgs),
    /// What does a Go program's heap hold? Its own heap profile, read from
    /// outside (no eBPF).
    #[command(long_about = cmd::heap::LONG_ABOUT)]
    Heap(cmd::heap::HeapArgs),
    /// Which goroutines does a Go program hold? Its goroutines, grouped as
    /// its own goroutine profile groups them, read from outside (no eBPF).
    #[command(long_about = cmd::goroutines::LONG_ABOUT)]
    Goroutines(cmd::goroutines::GoroutinesArgs),
    /// Started by `leak trace` itself: puts back a target's sampling rate if
    /// leak is killed before it can.
    #[command(name = "__rate-guard", hide = true)]
    RateGuard,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if cli.debug {
        // `leak` is the kernel side's target (its crate's binary name).
        logger.filter_module("leak", log::LevelFilter::Debug);
        logger.filter_module("leak_user", log::LevelFilter::Debug);
    }
    logger.init();
    let result = match cli.command {
        Command::Trace(args) => cmd::trace::run(args),
        Command::Top(args) => cmd::top::run(args),
        Command::Heap(args) => cmd::heap::run(args),
        Command::Goroutines(args) => cmd::goroutines::run(args),
        Command::RateGuard => cmd::rate_guard::run(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("leak: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// One line: the outermost context, then each cause that it does not
/// already say (an error that quotes its source is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_guard_is_a_hidden_subcommand() {
        use clap::CommandFactory;
        let name = leak_user::cmd::rate_guard::GUARD_COMMAND;
        let cli = Cli::try_parse_from(["leak", name]).unwrap();
        assert!(matches!(cli.command, Command::RateGuard));
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains(name), "{help}");
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::other("Is a directory (os error 21)");
        let e = anyhow::Error::new(io).context("cannot read /tmp: Is a directory (os error 21)");
        assert_eq!(
            one_line(&e),
            "cannot read /tmp: Is a directory (os error 21)"
        );
        let e = anyhow::anyhow!("no such file").context("cannot open /x");
        assert_eq!(one_line(&e), "cannot open /x: no such file");
    }
}
