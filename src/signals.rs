//! Process signals as futures, for every long-running command (the daemon, `serve`).
//!
//! SIGINT and SIGTERM stop; SIGHUP asks the daemon to re-read its config (systemd's
//! `ExecReload=kill -HUP $MAINPID`). Without a handler SIGHUP would end the process with no
//! log line and exit status 129, which `Restart=on-failure` treats as clean.
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

/// Why a long-running command was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM: stop.
    Terminate,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// The three signals, installed once (installing replaces the default action for the rest of
/// the process, so do it only when ready to act on them).
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Must be called inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())?, hup: signal(SignalKind::hangup())? })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => { info!("SIGINT: stopping"); Stop::Terminate }
            _ = self.term.recv() => { info!("SIGTERM: stopping"); Stop::Terminate }
            _ = self.hup.recv() => { info!("SIGHUP: reloading the configuration"); Stop::Reload }
        }
    }

    /// Resolves on SIGINT or SIGTERM; SIGHUP is logged and ignored (for commands without a
    /// configuration to reload, such as `serve`).
    pub async fn terminate(&mut self) {
        loop {
            match self.next().await {
                Stop::Terminate => return,
                Stop::Reload => info!("nothing to reload in this command: SIGHUP ignored"),
            }
        }
    }
}
