//! The manual page and the shell completion scripts, made from the same
//! clap definitions as `--help` (clap_mangen, clap_complete), so they never
//! drift from it. Pure: each returns bytes for the caller to print.

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// The manual page (roff): the top-level page, then a section per command
/// with its synopsis, description and options, then exit status,
/// environment and files.
pub fn page() -> Vec<u8> {
    let mut cmd = Cli::command();
    // Sets every subcommand's bin name ("maildir-events scan") for the
    // synopses.
    cmd.build();
    let mut out: Vec<u8> = Vec::new();
    // Rendering into a Vec cannot fail. Not `render`: its SUBCOMMANDS
    // section points to a page per command (maildir-events-scan(1)), and
    // this one page holds them all.
    let top = clap_mangen::Man::new(cmd.clone());
    let _ = top.render_title(&mut out);
    let _ = top.render_name_section(&mut out);
    let _ = top.render_synopsis_section(&mut out);
    let _ = top.render_description_section(&mut out);
    let _ = top.render_options_section(&mut out);
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.extend_from_slice(
            format!(
                ".TP\n.B {}\n{}\n",
                sub.get_name().replace('-', "\\-"),
                about.replace('\\', "\\\\").replace('-', "\\-")
            )
            .as_bytes(),
        );
    }
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        let man = clap_mangen::Man::new(sub.clone());
        let mut part: Vec<u8> = Vec::new();
        let _ = man.render_synopsis_section(&mut part);
        let _ = man.render_description_section(&mut part);
        let _ = man.render_options_section(&mut part);
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS\n", "")
            .replace(".SH DESCRIPTION\n", "")
            .replace(".SH OPTIONS", &format!(".SS \"Options of {name}\""));
        out.extend_from_slice(format!(".SH \"COMMAND: {}\"\n", name.to_uppercase()).as_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(EXTRA.as_bytes());
    out
}

/// What the generated page cannot know: exit status, environment, files.
const EXTRA: &str = r#".SH "EXIT STATUS"
0 success; 2 usage (a bad option or value); 65 the state database is damaged or foreign; 66 a MAILDIR named does not exist or is not a Maildir; 73 the state cannot be created; 74 output failed (events stay in the outbox for the next run); 75 the state is in use by another process; 78 bad configuration.
.SH ENVIRONMENT
.TP
.B MAILDIR_EVENTS_LOG
Log filter (error, warn, info, debug, or per module); \-q and \-v win over it.
.TP
.B STATE_DIRECTORY
The state directory when \-\-state is not given (set by systemd's StateDirectory=).
.SH FILES
.TP
.I /etc/maildir-events/config.toml
The configuration file, read when it exists and no \-\-config is given.
.TP
.I /var/lib/maildir-events
The state database of the systemd service.
"#;

/// A completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    use clap_complete::Shell as S;
    let shell = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
    };
    let mut out: Vec<u8> = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "maildir-events", &mut out);
    out
}
