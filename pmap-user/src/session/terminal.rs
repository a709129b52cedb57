//! Dumps on a key press: when stdin is a terminal, Enter or `d` asks for a dump without
//! waiting for a line, and typed keys are not echoed over the output.

use std::{io::Read, mem::MaybeUninit};

use tokio::sync::mpsc;

pub struct KeyReader {
    requests: mpsc::UnboundedReceiver<()>,
    saved: libc::termios,
}

impl KeyReader {
    /// Switches the terminal on stdin to unbuffered input and starts reading it; `None` when
    /// stdin is not a terminal.
    pub fn start() -> Option<KeyReader> {
        let mut saved = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: valid out-pointer; fails cleanly when fd 0 is not a terminal.
        if unsafe { libc::tcgetattr(0, saved.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let saved = unsafe { saved.assume_init() };
        let mut raw = saved;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: a valid termios derived from the current one.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) };
        let (sender, requests) = mpsc::unbounded_channel();
        // A plain thread: a blocking read on the terminal must not hold a runtime worker, and
        // the thread ends with the process.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdin.read(&mut byte) {
                if matches!(byte[0], b'\n' | b'\r' | b'd' | b'D') && sender.send(()).is_err() {
                    break;
                }
            }
        });
        Some(KeyReader { requests, saved })
    }

    pub async fn next_dump_request(&mut self) -> Option<()> {
        self.requests.recv().await
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        // SAFETY: restores the settings read at start.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}
