//! The two text formats `/metrics` speaks, and which one a scraper gets.
//!
//! `prometheus-client` writes OpenMetrics 1.0 only. Prometheus's own text format (0.0.4) is
//! what `promtool check metrics`, `curl` users and older scrapers read, and what client
//! libraries answer unless the `Accept` header asks for OpenMetrics (client_golang's
//! `expfmt.Negotiate`), so it is made from the OpenMetrics text here, family by family.

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4: the default.
    Prometheus,
    /// OpenMetrics 1.0, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: the acceptable media range with the highest
    /// quality, earlier ranges winning ties; Prometheus text when nothing acceptable is named.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut ranges: Vec<(f32, Format)> = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let format = match parts.next()?.to_ascii_lowercase().as_str() {
                    "application/openmetrics-text" => Format::OpenMetrics,
                    "text/plain" | "text/*" | "*/*" => Format::Prometheus,
                    _ => return None,
                };
                let quality = parts
                    .filter_map(|p| p.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                    .map_or(1.0, |(_, q)| q.trim().parse().unwrap_or(0.0));
                (quality > 0.0).then_some((quality, format))
            })
            .collect();
        // A stable sort keeps the header's order among equal qualities.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges.first().map_or(Format::Prometheus, |(_, format)| *format)
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metric type of a family, as OpenMetrics names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Info,
    /// Types whose samples keep their names: gauge, histogram, summary, unknown.
    Other,
}

/// Rewrites OpenMetrics text as the Prometheus text format: a counter's family is named with
/// its `_total` suffix, an info family with `_info` and typed `gauge`, `unknown` becomes
/// `untyped`; `_created` samples, `# UNIT`, exemplars and `# EOF` have no place there and go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, and its name depends on the type.
    let mut help: Option<(&str, String)> = None;
    let mut family: Option<(&str, Kind)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes quotes in help text; Prometheus text does not.
            help = Some((name, text.replace("\\\"", "\"")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, om_type) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (kind, exposed, prom_type) = match om_type {
                "counter" => (Kind::Counter, format!("{name}_total"), "counter"),
                "info" => (Kind::Info, format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (Kind::Other, name.to_owned(), om_type),
                _ => (Kind::Other, name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take().filter(|(help_name, _)| *help_name == name) {
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {prom_type}\n"));
            family = Some((name, kind));
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF`.
        } else if !line.is_empty() {
            let sample = without_exemplar(line);
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let created = family
                .is_some_and(|(family, kind)| kind != Kind::Info && name.strip_prefix(family).is_some_and(|suffix| suffix == "_created"));
            if !created {
                out.push_str(sample);
                out.push('\n');
            }
        }
    }
    out
}

/// A sample line without its exemplar (` # {labels} value [timestamp]` after the value). A
/// `#` inside a quoted label value is not one.
fn without_exemplar(line: &str) -> &str {
    let labels_end = match line.find(['{', ' ']) {
        Some(open) if line[open..].starts_with('{') => closing_brace(line, open).map_or(line.len(), |close| close + 1),
        Some(space) => space,
        None => return line,
    };
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

/// The index of the `}` closing the label set opened at `open`, skipping quoted values.
fn closing_brace(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_is_the_default_and_openmetrics_is_served_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text")), Format::OpenMetrics);
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        // Protobuf first (Prometheus 3 with native histograms): not spoken here, so the next.
        let protobuf_first = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3";
        assert_eq!(Format::negotiate(Some(protobuf_first)), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Prometheus);
    }

    #[test]
    fn openmetrics_families_become_prometheus_text_families() {
        let openmetrics = concat!(
            "# HELP staticlet_plugin_call_failures Failed plugin calls, by \\\"plugin\\\".\n",
            "# TYPE staticlet_plugin_call_failures counter\n",
            "staticlet_plugin_call_failures_total{plugin=\"a # b\",call=\"validate\"} 2 # {trace_id=\"x\"} 1.0\n",
            "staticlet_plugin_call_failures_created{plugin=\"a # b\",call=\"validate\"} 1700000000.0\n",
            "# HELP staticlet_source_last_success_timestamp_seconds When a source was last polled.\n",
            "# TYPE staticlet_source_last_success_timestamp_seconds gauge\n",
            "# UNIT staticlet_source_last_success_timestamp_seconds seconds\n",
            "staticlet_source_last_success_timestamp_seconds{source=\"file\"} 1700000000\n",
            "# HELP staticlet_build The build.\n",
            "# TYPE staticlet_build info\n",
            "staticlet_build_info{version=\"0.1.0\"} 1\n",
            "# HELP staticlet_pod_sync_duration_seconds How long a pod sync took.\n",
            "# TYPE staticlet_pod_sync_duration_seconds histogram\n",
            "staticlet_pod_sync_duration_seconds_sum 0.5\n",
            "staticlet_pod_sync_duration_seconds_count 1\n",
            "staticlet_pod_sync_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "# TYPE staticlet_mystery unknown\n",
            "staticlet_mystery 3\n",
            "# EOF\n",
        );
        let expected = concat!(
            "# HELP staticlet_plugin_call_failures_total Failed plugin calls, by \"plugin\".\n",
            "# TYPE staticlet_plugin_call_failures_total counter\n",
            "staticlet_plugin_call_failures_total{plugin=\"a # b\",call=\"validate\"} 2\n",
            "# HELP staticlet_source_last_success_timestamp_seconds When a source was last polled.\n",
            "# TYPE staticlet_source_last_success_timestamp_seconds gauge\n",
            "staticlet_source_last_success_timestamp_seconds{source=\"file\"} 1700000000\n",
            "# HELP staticlet_build_info The build.\n",
            "# TYPE staticlet_build_info gauge\n",
            "staticlet_build_info{version=\"0.1.0\"} 1\n",
            "# HELP staticlet_pod_sync_duration_seconds How long a pod sync took.\n",
            "# TYPE staticlet_pod_sync_duration_seconds histogram\n",
            "staticlet_pod_sync_duration_seconds_sum 0.5\n",
            "staticlet_pod_sync_duration_seconds_count 1\n",
            "staticlet_pod_sync_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "# TYPE staticlet_mystery untyped\n",
            "staticlet_mystery 3\n",
        );
        assert_eq!(to_prometheus_text(openmetrics), expected);
    }
}
