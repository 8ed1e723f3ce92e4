//! torua-telemetry: logs and traces for every Torua binary (SPEC §7). Plain logs on
//! stderr always; OTLP/HTTP trace export only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Everything else comes from the standard
//! `OTEL_*` variables, read by the SDK itself: `OTEL_SERVICE_NAME` (default: the name
//! the binary passes to [`init`]), `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`. Unset, no
//! exporter, no OpenTelemetry layer and no thread exist.
//!
//! W3C `traceparent` propagation over HTTP headers: [`inject`] on the sending side,
//! [`set_parent_from`] on the receiving side.

#![forbid(unsafe_code)]

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The variables that turn trace export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Longest wait for the last export at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported; callers skip propagation work when not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Holds the tracer provider (if any) until [`Telemetry::shutdown`].
#[must_use = "call shutdown() at exit so the last spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: stderr logs filtered by `RUST_LOG` (default
/// `info`), plus the OpenTelemetry layer when an OTLP endpoint is configured.
pub fn init(service_default: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let endpoint_set = ENDPOINT_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !endpoint_set {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .init();
        return Telemetry { provider: None };
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(filter);
    let (provider, error) = match build_provider(service_default) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(env!("CARGO_PKG_NAME")))
            .with_filter(tracing_subscriber::filter::filter_fn(exported))
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    match error {
        Some(e) => tracing::warn!("trace export disabled: {e}"),
        None => {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            ENABLED.store(true, Ordering::Relaxed);
            tracing::info!("exporting traces over OTLP/HTTP");
        }
    }
    Telemetry { provider }
}

/// Our own spans at any level, and our events at `info` and above as span events;
/// nothing from the exporter's own HTTP stack, so exporting never traces itself.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("torua") && (meta.is_span() || *meta.level() <= tracing::Level::INFO)
}

fn build_provider(service_default: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service_default.to_string());
    }
    // The sampler comes from OTEL_TRACES_SAMPLER[_ARG] via the SDK's default config.
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

impl Telemetry {
    /// Exports what is queued and stops the exporter, waiting at most a few seconds
    /// for an unreachable collector. Call outside any async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                eprintln!("trace export shutdown: {e}");
            }
        }
    }
}

/// Makes `span` a child of the W3C `traceparent` in `headers`, if there is one (a
/// no-op unless [`enabled`]), so an agent's `heartbeat.send` and our
/// `heartbeat.receive` share a trace.
pub fn set_parent_from(span: &tracing::Span, headers: &hyper::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    struct Headers<'a>(&'a hyper::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(cx);
}

/// Writes `span`'s W3C `traceparent` into `headers` (a no-op unless [`enabled`]).
pub fn inject(span: &tracing::Span, headers: &mut hyper::HeaderMap) {
    if !enabled() {
        return;
    }
    struct Headers<'a>(&'a mut hyper::HeaderMap);
    impl Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(key.as_bytes()),
                hyper::header::HeaderValue::from_str(&value),
            ) {
                self.0.insert(k, v);
            }
        }
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Headers(headers))
    });
}
