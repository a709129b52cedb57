//! The output sink: standard output or the `-o` file, and standard error for the lines that
//! are about the trace rather than its output (`attached to …`). A reader that goes away
//! (`| head -1`) is no error: the sink says it is closed, and drops what comes after.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot write output: {0}")]
pub struct SinkError(io::Error);

pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    /// The reader went away (EPIPE): nothing more is written.
    closed: bool,
    /// Unbuffered: a line here is out before anything a launched command prints next.
    diagnostics: Box<dyn Write + Send>,
}

impl Sink {
    /// Standard output when `path` is `None`, else the file, created or truncated.
    pub fn open(path: Option<&Path>) -> io::Result<Sink> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(File::create(path)?),
            None => Box::new(io::stdout()),
        };
        Ok(Sink::new(
            BufWriter::with_capacity(1 << 16, out),
            Box::new(io::stderr()),
        ))
    }

    fn new(out: BufWriter<Box<dyn Write + Send>>, diagnostics: Box<dyn Write + Send>) -> Sink {
        Sink {
            out,
            closed: false,
            diagnostics,
        }
    }

    /// Output and diagnostics kept in memory, for tests.
    #[cfg(test)]
    pub fn in_memory() -> (Sink, memory::Written) {
        let written = memory::Written::default();
        let out = BufWriter::new(Box::new(written.out.clone()) as Box<dyn Write + Send>);
        (Sink::new(out, Box::new(written.err.clone())), written)
    }

    /// As [`Sink::in_memory`], with an output whose reader has gone: every write fails with
    /// EPIPE.
    #[cfg(test)]
    pub fn reader_gone() -> (Sink, memory::Written) {
        let written = memory::Written::default();
        let out = BufWriter::new(Box::new(memory::Gone) as Box<dyn Write + Send>);
        (Sink::new(out, Box::new(written.err.clone())), written)
    }

    pub fn line(&mut self, text: &str) -> Result<(), SinkError> {
        self.write_with(|out| {
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")
        })
    }

    /// Writes `bytes` as they are: the event lines' path, without a closure or a trait object.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let written = self.out.write_all(bytes);
        self.settle(written)
    }

    /// Lets a renderer that writes several lines write them, unless the reader has gone.
    pub fn write_with(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let written = write(&mut self.out);
        self.settle(written)
    }

    /// Pushes buffered output out; called after every batch so a reader sees events live.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.settle(flushed)
    }

    /// Whether the reader has gone (EPIPE): nothing said from then on reaches anyone.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// A write's result: the reader's going away closes the sink, anything else is an error.
    fn settle(&mut self, written: io::Result<()>) -> Result<(), SinkError> {
        match written {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other.map_err(SinkError),
        }
    }

    /// One line on standard error, written at once. A standard error nobody reads any more
    /// does not end the trace: its output may still have a reader.
    pub fn diagnostic(&mut self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 1);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        let _ = self.diagnostics.write_all(&line);
    }
}

#[cfg(test)]
pub mod memory {
    use std::{
        io::{self, Write},
        sync::{Arc, Mutex},
    };

    /// What an in-memory sink was given, readable while the sink is still in use.
    #[derive(Clone, Default)]
    pub struct Written {
        pub(super) out: Shared,
        pub(super) err: Shared,
    }

    impl Written {
        /// Standard output so far (what was flushed to it).
        pub fn out(&self) -> String {
            self.out.text()
        }

        /// Standard error so far.
        pub fn err(&self) -> String {
            self.err.text()
        }
    }

    #[derive(Clone, Default)]
    pub(super) struct Shared(Arc<Mutex<Vec<u8>>>);

    /// An output whose reader has gone.
    pub(super) struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).expect("output is UTF-8")
        }
    }

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_goes_away_closes_the_sink_without_an_error() {
        let (mut sink, _) = Sink::reader_gone();
        assert!(!sink.closed());
        // Buffered: the reader's absence shows at the flush.
        sink.line("first").unwrap();
        sink.flush().unwrap();
        assert!(sink.closed());
        let mut called = false;
        sink.write_with(|_| {
            called = true;
            Ok(())
        })
        .unwrap();
        assert!(!called, "nothing is written once the reader is gone");
    }

    #[test]
    fn another_write_error_is_one() {
        let (mut sink, _) = Sink::in_memory();
        let full = sink.write_with(|_| Err(io::Error::from_raw_os_error(libc::ENOSPC)));
        assert_eq!(
            full.unwrap_err().to_string(),
            "cannot write output: No space left on device (os error 28)"
        );
        assert!(!sink.closed());
    }
}
