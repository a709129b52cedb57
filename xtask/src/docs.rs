//! `cargo xtask docs`: man pages and shell completions generated from pmap-trace's clap
//! definition, so they never drift from the real flags.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::process::workspace_root;

pub fn run(out: Option<PathBuf>) -> Result<ExitCode> {
    let out = match out {
        Some(dir) => std::path::absolute(dir)?,
        None => workspace_root().join("target/docs"),
    };
    generate_or_delegate(&out)
}

#[cfg(feature = "docs")]
fn generate_or_delegate(out: &std::path::Path) -> Result<ExitCode> {
    generate(out)?;
    println!(
        "docs: man pages and completions written to {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Without the `docs` feature this xtask cannot see pmap-trace's CLI (see xtask/Cargo.toml), so it
/// makes sure pmap-user can build and hands over to an xtask built with the feature.
#[cfg(not(feature = "docs"))]
fn generate_or_delegate(out: &std::path::Path) -> Result<ExitCode> {
    use crate::process::{cargo, exit_code, run_cmd};

    crate::setup::run()?;
    let status = run_cmd(
        cargo()
            .args([
                "run",
                "--package",
                "xtask",
                "--features",
                "docs",
                "--",
                "docs",
                "--out",
            ])
            .arg(out),
    )?;
    Ok(exit_code(status))
}

#[cfg(feature = "docs")]
fn generate(out: &std::path::Path) -> Result<()> {
    use anyhow::Context as _;
    use clap_complete::Shell;

    let mut cli = <pmap_trace::cli::Cli as clap::CommandFactory>::command();
    let name = cli.get_name().to_owned();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    clap_mangen::generate_to(cli.clone(), out)
        .with_context(|| format!("writing man pages to {}", out.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli, &name, out)
            .with_context(|| format!("writing {shell} completion to {}", out.display()))?;
    }
    Ok(())
}

#[cfg(all(test, feature = "docs"))]
mod tests {
    use std::fs;

    #[test]
    fn man_page_and_bash_completion_list_the_flags() {
        let dir = std::env::temp_dir().join(format!("xtask-docs-test-{}", std::process::id()));
        super::generate(&dir).unwrap();

        let man = fs::read_to_string(dir.join("pmap-trace.1")).unwrap();
        // roff escapes every hyphen.
        assert!(
            man.contains(r"\-\-follow"),
            "man page lacks --follow:\n{man}"
        );
        let bash = fs::read_to_string(dir.join("pmap-trace.bash")).unwrap();
        assert!(
            bash.contains("--pid"),
            "bash completion lacks --pid:\n{bash}"
        );

        // Removed only on success: after a failure the files are kept for a look.
        fs::remove_dir_all(&dir).unwrap();
    }
}
