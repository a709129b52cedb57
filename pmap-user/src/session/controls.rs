//! What the user asks of a running trace besides its records: a dump (`SIGUSR1`, a key press,
//! the `--interval` ticker) or a stop (a stop signal). They reach the session through one
//! seam, so its unit tests ask for a dump or a stop without sending signals.

use std::{io, time::Duration};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::{Instant, Interval, interval_at},
};

use super::{
    signals::{Received, StopSignals},
    terminal::KeyReader,
};
use crate::capture::Wait;

/// One request to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Dump every process now.
    Dump,
    /// A stop signal, with where it came from (see [`super::Session`]'s stop rules).
    Stop(Received),
}

/// Where requests come from. Held by the session as a trait object, as its record source is:
/// it is waited on once per batch.
pub trait Controls {
    /// The next request; pends for ever when none can come.
    fn next(&mut self) -> Wait<'_, io::Result<Control>>;
}

/// The requests of a real trace: `SIGUSR1`, the stop signals, key presses on the terminal
/// (`--key-dumps`) and the `--interval` ticker.
pub struct LiveControls {
    usr1: Signal,
    stops: StopSignals,
    key_dumps: bool,
    interval: Option<Duration>,
    /// Started at the first wait (see [`LiveControls::install`]).
    started: Option<Started>,
}

struct Started {
    keys: Option<KeyReader>,
    ticker: Option<Interval>,
}

impl LiveControls {
    /// Installs the signal handlers now, before any target is attached: a signal that arrives
    /// once the `attached` line is out must find them in place. The key reader and the ticker
    /// start at the first wait, when the loop runs: the terminal is switched to unbuffered
    /// input only while tracing, and the first interval counts from then.
    pub fn install(key_dumps: bool, interval: Option<Duration>) -> io::Result<LiveControls> {
        Ok(LiveControls {
            usr1: signal(SignalKind::user_defined1())?,
            stops: StopSignals::install()?,
            key_dumps,
            interval,
            started: None,
        })
    }
}

impl Controls for LiveControls {
    fn next(&mut self) -> Wait<'_, io::Result<Control>> {
        let (key_dumps, interval) = (self.key_dumps, self.interval);
        let Started { keys, ticker } = self.started.get_or_insert_with(|| Started {
            keys: key_dumps.then(KeyReader::start).flatten(),
            ticker: interval.map(|period| interval_at(Instant::now() + period, period)),
        });
        let (usr1, stops) = (&mut self.usr1, &mut self.stops);
        Box::pin(async move {
            tokio::select! {
                _ = usr1.recv() => Ok(Control::Dump),
                Some(()) = next_key(keys) => Ok(Control::Dump),
                _ = next_tick(ticker) => Ok(Control::Dump),
                received = stops.recv() => received.map(Control::Stop),
            }
        })
    }
}

async fn next_key(keys: &mut Option<KeyReader>) -> Option<()> {
    match keys {
        Some(reader) => reader.next_dump_request().await,
        None => std::future::pending().await,
    }
}

async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
