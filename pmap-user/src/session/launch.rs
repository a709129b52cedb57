//! Starting a command held before its exec, so tracing is attached before the dynamic loader
//! runs. `std::process::Command::spawn` waits for the exec itself, so this forks by hand: the
//! child blocks on a pipe until the parent has added it to the kernel filter.

use std::{
    ffi::{CString, OsString},
    io,
    os::{fd::FromRawFd, unix::ffi::OsStrExt},
};

use std::os::fd::{AsRawFd, OwnedFd};

use thiserror::Error;

use crate::model::ExitStatus;

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("command contains a NUL byte: {0:?}")]
    NulInArgument(OsString),
    #[error("cannot start {command}: {source}")]
    Spawn { command: String, source: io::Error },
}

/// A forked child waiting for [`HeldChild::release`] before it execs.
pub struct HeldChild {
    pid: i32,
    command: String,
    go: OwnedFd,
    exec_error: OwnedFd,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid out-array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that will exec `argv` (looked up in `PATH`) once released.
pub fn spawn_held(argv: &[OsString]) -> Result<HeldChild, LaunchError> {
    let command = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spawn_error = |source| LaunchError::Spawn {
        command: command.clone(),
        source,
    };
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| LaunchError::NulInArgument(a.clone())))
        .collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());

    let (go_read, go_write) = pipe().map_err(spawn_error)?;
    let (err_read, err_write) = pipe().map_err(spawn_error)?;
    // SAFETY: the child only calls async-signal-safe functions (read, signal, execvp, write,
    // _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(spawn_error(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; this branch never returns.
        unsafe {
            let mut byte = 0u8;
            loop {
                let n = libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                if n == 1 {
                    break;
                }
                if n == 0 || *libc::__errno_location() != libc::EINTR {
                    libc::_exit(1);
                }
            }
            // Rust ignores SIGPIPE in its own process; the command should get the default,
            // and the signals pmap-trace blocks to read them itself unblocked.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            super::signals::restore_original_mask_in_child();
            libc::execvp(arg_ptrs[0], arg_ptrs.as_ptr());
            let errno = *libc::__errno_location();
            libc::write(err_write.as_raw_fd(), (&raw const errno).cast(), 4);
            libc::_exit(127);
        }
    }
    drop(go_read);
    drop(err_write);
    Ok(HeldChild {
        pid,
        command,
        go: go_write,
        exec_error: err_read,
    })
}

impl HeldChild {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The program's file name, as the process will be called once it has exec'd.
    pub fn program_name(&self) -> &str {
        self.command.rsplit('/').next().unwrap_or(&self.command)
    }

    /// Lets the child exec, and reports whether the exec succeeded.
    pub fn release(self) -> Result<i32, LaunchError> {
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(self.go.as_raw_fd(), (&raw const byte).cast(), 1) };
        let mut errno = 0i32;
        let n = loop {
            // SAFETY: reading up to 4 bytes into a valid i32.
            let n = unsafe { libc::read(self.exec_error.as_raw_fd(), (&raw mut errno).cast(), 4) };
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n == 4 {
            wait_exit_code(self.pid);
            return Err(LaunchError::Spawn {
                command: self.command,
                source: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(self.pid)
    }
}

/// Reaps `pid` and returns how it ended.
pub fn wait_exit(pid: i32) -> ExitStatus {
    let mut status = 0;
    loop {
        // SAFETY: valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return ExitStatus::Unknown;
        }
    }
    if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Killed {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        ExitStatus::Unknown
    }
}

/// Reaps `pid` and returns its exit code as a shell reports it (128 + signal when killed).
pub fn wait_exit_code(pid: i32) -> i32 {
    wait_exit(pid).shell_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_child_does_not_run_until_released() {
        let dir = std::env::temp_dir().join(format!("pmap-trace-held-{}", std::process::id()));
        let marker = dir.with_extension("marker");
        let script = format!("touch {}; exit 7", marker.display());
        let child = spawn_held(&["sh".into(), "-c".into(), script.into()]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!marker.exists(), "the child ran before release");
        let pid = child.release().unwrap();
        assert_eq!(wait_exit_code(pid), 7);
        assert!(marker.exists());
        std::fs::remove_file(marker).unwrap();
    }

    #[test]
    fn tells_an_exit_from_a_death_by_signal() {
        let child = spawn_held(&["sh".into(), "-c".into(), "kill -INT $$".into()]).unwrap();
        let pid = child.release().unwrap();
        let status = wait_exit(pid);
        assert_eq!(
            status,
            ExitStatus::Killed {
                signal: libc::SIGINT,
                core_dumped: false
            }
        );
        assert_eq!(status.shell_code(), 130);
    }

    #[test]
    fn reports_a_missing_program() {
        let child = spawn_held(&["/nonexistent/program".into()]).unwrap();
        let err = child.release().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot start /nonexistent/program: No such file or directory (os error 2)"
        );
    }
}
