//! OpenTelemetry for the programs (feature `otel`): each answer's GenAI span and the client
//! metrics, exported by OTLP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`, the default, or `grpc`; `OTEL_SERVICE_NAME`),
//! and served in the Prometheus text format when a program asks (`pplx-mcp --http`'s
//! `/metrics`). With neither, nothing is installed: the provider's spans go unrecorded and
//! its metrics to the API's no-op meter, so nothing slows.
//!
//! The exporters are the opentelemetry-otlp and opentelemetry-prometheus crates; the spans
//! reach them through tracing-opentelemetry.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::Error;

/// The standard variable naming the OTLP endpoint (`http://collector:4318` for
/// `http/protobuf`, `http://collector:4317` for `grpc`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable choosing the OTLP protocol.
pub const OTLP_PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The standard variable naming the service.
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

/// What a program installed; [`Telemetry::shutdown`] flushes it before exit.
#[must_use = "shut it down before exit, or the last spans and metrics are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    registry: Option<prometheus::Registry>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Telemetry")
            .field("otlp", &self.tracer.is_some())
            .field("prometheus", &self.registry.is_some())
            .finish()
    }
}

/// The metrics as Prometheus scrapes them. Cheap to clone.
#[derive(Clone)]
pub struct PrometheusMetrics(prometheus::Registry);

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PrometheusMetrics")
    }
}

impl PrometheusMetrics {
    /// The content type of [`text`](PrometheusMetrics::text).
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Every metric now, in the text exposition format.
    pub fn text(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.0.gather())
            .unwrap_or_default()
    }
}

/// The OTLP protocols this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// The protocol `OTEL_EXPORTER_OTLP_PROTOCOL` names (unset: `http/protobuf`).
fn protocol() -> Result<Protocol, Error> {
    match std::env::var(OTLP_PROTOCOL_ENV) {
        Err(_) => Ok(Protocol::HttpProtobuf),
        Ok(name) => match name.trim() {
            "" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(Error::invalid(
                OTLP_PROTOCOL_ENV,
                format!("{other:?}: use http/protobuf (the default) or grpc"),
            )),
        },
    }
}

/// The endpoints must be plain `http://`: this build's exporters carry no TLS (a collector
/// beside the program, or in its cluster, forwards to a vendor over TLS).
fn plain_endpoint() -> Result<(), Error> {
    for name in [
        OTLP_ENDPOINT_ENV,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ] {
        if let Ok(endpoint) = std::env::var(name)
            && endpoint.trim().to_ascii_lowercase().starts_with("https://")
        {
            return Err(Error::invalid(
                name,
                format!(
                    "{endpoint:?}: this build exports OTLP over plain http:// only; send it to a collector beside the program (http://127.0.0.1:4318), which forwards over TLS"
                ),
            ));
        }
    }
    Ok(())
}

/// *ring*, as `provider-perplexity`'s client chooses it (see its `ring_provider`).
#[allow(
    deprecated,
    reason = "ring is chosen deliberately, as in provider-perplexity's client (deprecated since rustls 0.23.48)"
)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Whether OTLP export is asked for (`OTEL_EXPORTER_OTLP_ENDPOINT` set and not empty).
pub fn otlp_requested() -> bool {
    std::env::var_os(OTLP_ENDPOINT_ENV).is_some_and(|value| !value.is_empty())
}

/// The resource: `OTEL_SERVICE_NAME` (and `OTEL_RESOURCE_ATTRIBUTES`), else `service`.
fn resource(service: &str) -> Resource {
    let builder = Resource::builder();
    let named = std::env::var_os(SERVICE_NAME_ENV).is_some_and(|value| !value.is_empty());
    if named {
        builder.build()
    } else {
        builder.with_service_name(service.to_owned()).build()
    }
}

impl Telemetry {
    /// Installs what the environment asks for: OTLP export of traces and metrics when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and a Prometheus registry when `prometheus`.
    /// `service` names the program unless `OTEL_SERVICE_NAME` does. The meter provider
    /// becomes the global one the provider records into. Call it outside any runtime's
    /// context (the `http/protobuf` client blocks on a thread of its own); `runtime` is
    /// where `grpc`'s connections run.
    ///
    /// # Errors
    /// An unknown protocol, or an exporter that cannot be built.
    pub fn start(
        service: &str,
        prometheus: bool,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Telemetry, Error> {
        let otlp = otlp_requested();
        if !otlp && !prometheus {
            return Ok(Telemetry {
                tracer: None,
                meter: None,
                registry: None,
            });
        }
        let resource = resource(service);
        let failed =
            |error: &dyn std::fmt::Display| Error::invalid(OTLP_ENDPOINT_ENV, error.to_string());
        let mut meter = SdkMeterProvider::builder().with_resource(resource.clone());
        let mut tracer = None;
        if otlp {
            let protocol = protocol()?;
            plain_endpoint()?;
            // The exporter's HTTP client asks rustls for the process's provider when a
            // build unifies TLS into it: the same *ring* the provider's client uses.
            let _ = ring_provider().install_default();
            let spans = match protocol {
                Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .build(),
                Protocol::Grpc => {
                    let _entered = runtime.enter();
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .build()
                }
            }
            .map_err(|error| failed(&error))?;
            let metrics = match protocol {
                Protocol::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .build(),
                Protocol::Grpc => {
                    let _entered = runtime.enter();
                    opentelemetry_otlp::MetricExporter::builder()
                        .with_tonic()
                        .build()
                }
            }
            .map_err(|error| failed(&error))?;
            tracer = Some(
                SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(spans)
                    .build(),
            );
            meter = meter.with_periodic_exporter(metrics);
        }
        let mut registry = None;
        if prometheus {
            let scraped = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(scraped.clone())
                .build()
                .map_err(|error| Error::invalid("metrics", error.to_string()))?;
            meter = meter.with_reader(exporter);
            registry = Some(scraped);
        }
        let meter = meter.build();
        opentelemetry::global::set_meter_provider(meter.clone());
        Ok(Telemetry {
            tracer,
            meter: Some(meter),
            registry,
        })
    }

    /// The tracer answers' spans are exported with, for `tracing_opentelemetry::layer()`:
    /// `None` when nothing exports spans.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.tracer
            .as_ref()
            .map(|provider| provider.tracer(env!("CARGO_PKG_NAME")))
    }

    /// The metrics in the Prometheus text format, for a server to answer `/metrics` with:
    /// `None` unless asked at start.
    pub fn prometheus(&self) -> Option<PrometheusMetrics> {
        self.registry.clone().map(PrometheusMetrics)
    }

    /// Flushes and stops every exporter (the last spans and metrics are sent). Failures are
    /// returned as words: a collector that is down must not fail the program.
    pub fn shutdown(self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(tracer) = self.tracer
            && let Err(error) = tracer.shutdown()
        {
            problems.push(format!("exporting spans: {error}"));
        }
        if let Some(meter) = self.meter
            && let Err(error) = meter.shutdown()
        {
            problems.push(format!("exporting metrics: {error}"));
        }
        problems
    }
}
