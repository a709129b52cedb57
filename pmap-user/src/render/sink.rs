//! The output sink: standard output or the `-o` file, with a closed reader (`| head -1`)
//! reported as such so the session can end quietly; and standard error, for the lines that
//! are about the trace rather than its output (`attached to …`).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SinkError {
    /// The reader went away (EPIPE); not an error worth a message.
    #[error("output closed by its reader")]
    Closed,
    #[error("cannot write output: {0}")]
    Io(io::Error),
}

impl From<io::Error> for SinkError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            SinkError::Closed
        } else {
            SinkError::Io(err)
        }
    }
}

pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
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
        Ok(Sink {
            out: BufWriter::with_capacity(1 << 16, out),
            diagnostics: Box::new(io::stderr()),
        })
    }

    /// Output and diagnostics kept in memory, for tests.
    #[cfg(test)]
    pub fn in_memory() -> (Sink, memory::Written) {
        let written = memory::Written::default();
        let sink = Sink {
            out: BufWriter::new(Box::new(written.out.clone())),
            diagnostics: Box::new(written.err.clone()),
        };
        (sink, written)
    }

    pub fn line(&mut self, text: &str) -> Result<(), SinkError> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Raw access for renderers that write several lines.
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.out
    }

    /// Pushes buffered output out; called after every batch so a reader sees events live.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
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
