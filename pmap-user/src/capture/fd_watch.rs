//! Registering owned descriptors with the tokio reactor.

use std::{io, os::fd::AsRawFd};

use tokio::io::{Interest, unix::AsyncFd};

/// Wraps `inner` so the event loop can wait for it to become readable.
pub fn watch_readable<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: every caller passes an object that owns its descriptor for its whole lifetime
    // (aya maps, pidfds), and `as_raw_fd` always returns that same descriptor.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|err| err.into_parts().1)
}
