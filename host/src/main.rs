//! The `host` binary: parse flags, start logging, run the daemon or a
//! subcommand, and print the whole error chain on failure.

use std::process::ExitCode;

use clap::Parser;
use host::config::{Cli, Command, PolicyCommand};
use host::{daemon, policy, policy_cmd, replay, scaffold, status, telemetry};

fn main() -> ExitCode {
    // The daemon re-executes itself to compile a policy in a bounded child.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == policy::compile::SUBCOMMAND) {
        return policy::compile::child_main();
    }
    let cli = Cli::parse();
    telemetry::init(cli.log.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `host status` only asks the running daemon: no policy runtime needed.
    if let Some(Command::Status { service, addr, json, watch, every }) = &cli.command {
        if *watch {
            status::watch(addr, service.as_deref(), *every)?;
            return Ok(ExitCode::SUCCESS);
        }
        let ok = status::print(addr, service.as_deref(), *json)?;
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let runtime = policy::Runtime::new(cli.runtime.runtime_config())?;
    match cli.command {
        Some(Command::Policy(PolicyCommand::Check { file, json })) => {
            let ok = policy_cmd::check(&runtime, &file, json)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Some(Command::Policy(PolicyCommand::Run { file, event, state })) => {
            println!("{}", policy_cmd::run(&runtime, &file, &event, &state)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Policy(PolicyCommand::New { name, lang, parent })) => {
            let dir = scaffold::create(&parent, &name, lang)?;
            println!("{}", scaffold::next_steps(&dir, &name, lang));
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Replay(args)) => {
            let request = replay::report::ReplayRequest {
                trace: &args.trace,
                policies: &args.policies,
                labels: &args.labels,
                svg: args.svg.as_deref(),
                load: args.load,
                quiet: args.quiet,
            };
            replay::report::run(&runtime, &request, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        // Answered above, before the runtime is built.
        Some(Command::Status { .. }) => Ok(ExitCode::SUCCESS),
        None => {
            let tokio = tokio::runtime::Runtime::new()?;
            tokio.block_on(daemon::run(cli.daemon, runtime, daemon::ctrl_c()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
