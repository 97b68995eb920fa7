//! What both command lines share: parsing arguments with argh, and the exit code convention
//! (`--help` → 0 on stdout; bad arguments → 2 with the reason on stderr).

use std::io::Write as _;
use std::process::ExitCode;

/// Parses the process's arguments, or says why not and returns the exit code to use.
pub fn parse<T: argh::FromArgs>(program: &str) -> Result<T, ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    T::from_args(&[program], &argv).map_err(|early| {
        if early.status.is_ok() {
            // `wifipos --help | head` must not panic on the closed pipe.
            let _ = writeln!(std::io::stdout(), "{}", early.output);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", early.output.trim_end());
            eprintln!("Run `{program} --help` for usage.");
            ExitCode::from(2)
        }
    })
}
