//! `smtpkit worker --metrics ADDR`: the worker's metrics in the Prometheus/OpenMetrics text
//! format on `GET /metrics`, served with hyper's HTTP/1.1 server.
//!
//! Two kinds of numbers:
//! - the queue, read from the database (`Outbox::stats`) when scraped, at most once a second
//!   (several scrapers at once share one read): messages per provider and state, and the age
//!   of the oldest message not yet final. Every worker on a shared database shows the same
//!   queue numbers;
//! - this worker's own deliveries, counted as they are recorded (`WorkerOptions::on_record`):
//!   deliveries per provider and result, their latency, and the time they waited for rate
//!   limits; and the OAuth 2.0 token fetches of the process (`TokenSource::process_fetches`).
//!   These start at zero when the worker starts, as Prometheus counters do.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use smtpkit::outbox::{Outbox, Recorded};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// How long queue numbers read from the database are reused.
const REFRESH: Duration = Duration::from_secs(1);

/// The content type of what [`encode`] writes (OpenMetrics text, which Prometheus scrapes).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    provider: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// A histogram with the delivery latency buckets: 10 ms to about 80 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// The worker's metrics and the outbox they read the queue from.
pub struct Metrics {
    outbox: Outbox,
    registry: Registry,
    messages: Family<QueueLabels, Gauge>,
    oldest_age: Gauge<f64, AtomicU64>,
    stats_errors: Counter,
    deliveries: Family<ResultLabels, Counter>,
    latency: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    rate_limit_wait: Family<ProviderLabels, Counter<f64, AtomicU64>>,
    token_fetches: Family<TokenLabels, Counter>,
    /// When the queue numbers were last read; held while they are read and encoded.
    refreshed: Mutex<Option<Instant>>,
}

impl Metrics {
    pub fn new(outbox: Outbox) -> Metrics {
        let mut registry = Registry::default();
        let messages = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "smtpkit_outbox_messages",
            "Messages in the outbox per provider and state (read from the database)",
            messages.clone(),
        );
        let oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "smtpkit_outbox_oldest_queued_age_seconds",
            "Age of the oldest message not yet final (queued, sending or deferred); 0 when none",
            oldest_age.clone(),
        );
        let stats_errors = Counter::default();
        registry.register(
            "smtpkit_outbox_stats_errors",
            "Scrapes whose read of the queue numbers failed (the previous numbers were shown)",
            stats_errors.clone(),
        );
        let deliveries = Family::<ResultLabels, Counter>::default();
        registry.register(
            "smtpkit_deliveries",
            "Deliveries recorded by this worker per provider and resulting state",
            deliveries.clone(),
        );
        let latency = Family::<ProviderLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "smtpkit_delivery_duration_seconds",
            "Time from the start of a delivery attempt to its outcome recorded, per provider",
            latency.clone(),
        );
        let rate_limit_wait = Family::<ProviderLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "smtpkit_rate_limit_wait_seconds",
            "Time this worker's deliveries waited for the provider's rate limit",
            rate_limit_wait.clone(),
        );
        let token_fetches = Family::<TokenLabels, Counter>::default();
        registry.register(
            "smtpkit_oauth_token_fetches",
            "OAuth 2.0 access tokens this worker fetched (result ok) or failed to fetch (error)",
            token_fetches.clone(),
        );
        Metrics {
            outbox,
            registry,
            messages,
            oldest_age,
            stats_errors,
            deliveries,
            latency,
            rate_limit_wait,
            token_fetches,
            refreshed: Mutex::new(None),
        }
    }

    /// Counts one recorded delivery.
    pub fn record(&self, r: &Recorded) {
        let provider = r.provider.clone();
        self.deliveries
            .get_or_create(&ResultLabels {
                provider: provider.clone(),
                result: r.state.as_str().to_owned(),
            })
            .inc();
        let labels = ProviderLabels { provider };
        self.latency
            .get_or_create(&labels)
            .observe(r.elapsed.as_secs_f64());
        if !r.rate_limit_wait.is_zero() {
            self.rate_limit_wait
                .get_or_create(&labels)
                .inc_by(r.rate_limit_wait.as_secs_f64());
        }
    }

    /// The text of a scrape: the queue numbers refreshed if older than [`REFRESH`].
    pub async fn scrape(&self) -> String {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
            match self.outbox.stats().await {
                Ok(stats) => {
                    self.messages.clear();
                    for (provider, states) in &stats.by_provider {
                        for (state, n) in states {
                            self.messages
                                .get_or_create(&QueueLabels {
                                    provider: provider.clone(),
                                    state: state.as_str().to_owned(),
                                })
                                .set(i64::try_from(*n).unwrap_or(i64::MAX));
                        }
                    }
                    self.oldest_age
                        .set(stats.oldest_queued_age.map_or(0.0, |age| age.as_secs_f64()));
                    *refreshed = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!("metrics: could not read the outbox's numbers: {e}");
                    self.stats_errors.inc();
                }
            }
        }
        let fetches = smtpkit::oauth::TokenSource::process_fetches();
        for (result, total) in [("ok", fetches.succeeded), ("error", fetches.failed)] {
            let counter = self.token_fetches.get_or_create(&TokenLabels {
                result: result.to_owned(),
            });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut text = String::new();
        // Writing to a String does not fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Binds `addr` (before the worker starts, so that a port in use is an error at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &request).await) }
            });
            // A client that sends nothing is dropped after a while rather than kept forever.
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let ended = tokio::time::timeout(Duration::from_secs(60), connection).await;
            if let Ok(Err(e)) = ended {
                tracing::debug!("metrics: connection ended: {e}");
            }
        });
    }
}

async fn answer(
    metrics: &Metrics,
    request: &hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<String> {
    let (status, content_type, body) = if request.uri().path() != "/metrics" {
        (
            hyper::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_owned(),
        )
    } else if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        (
            hyper::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        )
    } else {
        (hyper::StatusCode::OK, CONTENT_TYPE, metrics.scrape().await)
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
