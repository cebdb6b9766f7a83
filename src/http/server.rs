//! The connection layer under the router: what a hostile or broken client can hold.
//!
//! * A request head must arrive within [`HEAD_TIMEOUT`] (slowloris: connections that never
//!   finish their head are closed; hyper's `header_read_timeout`, which also covers the wait
//!   for the next request on a keep-alive connection).
//! * At most [`max_connections`] connections at once, well under the descriptor limit; beyond
//!   that new connections are closed at once (counted, warned about once a minute), so
//!   descriptors stay free for cameras, MQTT and the state directory.
//! * A connection lives at most [`CONNECTION_MAX`]; request bodies are read under the
//!   handlers' own body timeout.
//! * Accept failures for lack of descriptors (EMFILE/ENFILE) are logged as errors, once a
//!   minute, not at debug.
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, error, warn};

/// Time for a client to send a complete request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (a slow upload of the largest allowed body fits easily).
pub const CONNECTION_MAX: Duration = Duration::from_secs(300);

/// Refused connections, for `/metrics`.
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The connection layer's metrics, for the `/metrics` registry.
#[derive(Debug)]
pub struct ServerMetrics;

impl prometheus_client::collector::Collector for ServerMetrics {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let m = e.encode_descriptor(
            "siglipd_http_connections_refused",
            "Connections closed at once because the connection cap was reached",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        prometheus_client::metrics::counter::ConstCounter::new(REFUSED.load(Ordering::Relaxed)).encode(m)
    }
}

/// The connection cap: a quarter of the soft descriptor limit, between 16 and 1024.
pub fn max_connections() -> usize {
    (crate::host::fd_limit() / 4).clamp(16, 1024) as usize
}

/// What one connection may hold, and how many may exist.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub head_timeout: Duration,
    pub connection_max: Duration,
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self { head_timeout: HEAD_TIMEOUT, connection_max: CONNECTION_MAX, max_connections: max_connections() }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve_connections(listener: TcpListener, app: Router, limits: ConnLimits, shutdown: impl Future<Output = ()>) {
    let cap = limits.max_connections;
    let permits = Arc::new(Semaphore::new(cap));
    let mut last_refusal_warning: Option<Instant> = None;
    let mut last_fd_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if is_out_of_descriptors(&e) {
                    if once_a_minute(&mut last_fd_error) {
                        error!("the web server cannot accept connections: {e} (out of file descriptors; raise LimitNOFILE= or find what holds them)");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    debug!("accept failed: {e}");
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            if once_a_minute(&mut last_refusal_warning) {
                warn!(%peer, cap, "too many HTTP connections: closing new ones until some finish (siglipd_http_connections_refused_total counts them)");
            }
            drop(stream);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            match tokio::time::timeout(limits.connection_max, conn).await {
                Ok(Err(e)) => debug!(%peer, "connection ended: {e}"),
                Err(_) => {
                    debug!(%peer, "connection closed after {} s", limits.connection_max.as_secs())
                }
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn once_a_minute(last: &mut Option<Instant>) -> bool {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        true
    } else {
        false
    }
}
