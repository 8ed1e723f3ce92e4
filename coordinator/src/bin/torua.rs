//! `torua`: the operator CLI (see `torua --help`).

fn main() -> std::process::ExitCode {
    torua_coordinator::cli::main()
}
