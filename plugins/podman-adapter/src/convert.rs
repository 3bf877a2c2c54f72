//! Podman's words to the runtime interface's and back: object names, labels, times, image
//! references and the multiplexed output of logs and execs. Pure, so tested natively.

use std::collections::BTreeMap;

/// The label prefix that carries an annotation, as the Docker runtime stores them: Podman pods
/// have labels only.
pub const ANNOTATION_PREFIX: &str = "annotation.";

/// Labels with the annotations folded in as `annotation.<key>` labels.
pub fn labels_with_annotations(labels: &[(String, String)], annotations: &[(String, String)]) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = labels.iter().cloned().collect();
    all.extend(annotations.iter().map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), v.clone())));
    all
}

/// Key and value pairs, as the runtime interface carries labels and annotations.
pub type Pairs = Vec<(String, String)>;

/// Podman's labels split back into labels and annotations.
pub fn split_labels(all: BTreeMap<String, String>) -> (Pairs, Pairs) {
    let (annotations, labels): (Vec<_>, Vec<_>) = all.into_iter().partition(|(k, _)| k.starts_with(ANNOTATION_PREFIX));
    let annotations = annotations.into_iter().map(|(k, v)| (k[ANNOTATION_PREFIX.len()..].to_owned(), v)).collect();
    (labels, annotations)
}

/// The kubelet's sandbox name: `k8s_POD_<pod>_<namespace>_<uid>_<attempt>`.
pub fn sandbox_name(name: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    format!("k8s_POD_{name}_{namespace}_{uid}_{attempt}")
}

/// The kubelet's container name: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub fn container_name(container: &str, pod: &str, namespace: &str, uid: &str, attempt: u32) -> String {
    format!("k8s_{container}_{pod}_{namespace}_{uid}_{attempt}")
}

/// The parts of a kubelet-style name after `k8s_`: (first, pod, namespace, uid, attempt), where
/// `first` is `POD` for a sandbox and the container's name otherwise. None of the parts may
/// hold an underscore in Kubernetes, so splitting on it is exact.
pub fn parse_name(name: &str) -> Option<(&str, &str, &str, &str, u32)> {
    let parts: Vec<&str> = name.trim_start_matches('/').strip_prefix("k8s_")?.split('_').collect();
    let [first, pod, namespace, uid, attempt] = parts[..] else { return None };
    Some((first, pod, namespace, uid, attempt.parse().ok()?))
}

/// `filters={"label":["k=v",...]}`, URL-encoded, for Podman's list calls.
pub fn label_filter(filter: &[(String, String)]) -> String {
    let labels: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let json = serde_json::json!({ "label": labels }).to_string();
    percent_encode(&json)
}

/// Encodes everything but unreserved characters, for a query value.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A fully qualified reference, as Docker would resolve it: Podman's short-name resolution
/// would otherwise ask which registry to use, and nobody can answer on a node.
pub fn qualify(image: &str) -> String {
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (image, None),
    };
    let registry_given = rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut reference = match (registry_given, rest) {
        (true, _) => image.to_owned(),
        (false, Some(_)) => format!("docker.io/{image}"),
        (false, None) => format!("docker.io/library/{image}"),
    };
    let last = reference.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        reference.push_str(":latest");
    }
    reference
}

/// Nanoseconds since the epoch of an RFC 3339 time (`2026-11-23T13:20:06.123456789+01:00`);
/// `None` for Go's zero time, which Podman writes for "never".
pub fn parse_time(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    if year <= 1 {
        return None;
    }
    let (clock, offset_seconds) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => {
            let zone = &time[i..];
            let offset = if zone.eq_ignore_ascii_case("z") {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (h, m) = zone[1..].split_once(':')?;
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
            };
            (&time[..i], offset)
        }
        None => (time, 0),
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = whole.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let nanos: i64 = format!("{:0<9}", &fraction[..fraction.len().min(9)]).parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset_seconds;
    Some(seconds * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Output in Docker's multiplexed framing (an 8-byte header per frame: the stream, then the
/// length big-endian), as Podman sends logs and exec output: (everything in order, stdout,
/// stderr). Bytes that do not frame are kept as they are.
pub fn demux(mut data: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut all, mut stdout, mut stderr) = (Vec::new(), Vec::new(), Vec::new());
    while data.len() >= 8 && data[0] <= 2 && data[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let payload = &data[8..(8 + len).min(data.len())];
        all.extend_from_slice(payload);
        if data[0] == 2 {
            stderr.extend_from_slice(payload)
        } else {
            stdout.extend_from_slice(payload)
        }
        data = &data[(8 + len).min(data.len())..];
    }
    all.extend_from_slice(data);
    stdout.extend_from_slice(data);
    (all, stdout, stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&sandbox_name("web-n1", "default", "u1", 2)), Some(("POD", "web-n1", "default", "u1", 2)));
        assert_eq!(parse_name(&container_name("app", "web-n1", "kube-system", "u1", 0)), Some(("app", "web-n1", "kube-system", "u1", 0)));
        assert_eq!(parse_name("/k8s_app_web_default_u1_x"), None);
        assert_eq!(parse_name("nginx"), None);
    }

    #[test]
    fn annotations_travel_as_labels() {
        let all = labels_with_annotations(&[("a".into(), "1".into())], &[("kubernetes.io/config.hash".into(), "h".into())]);
        assert_eq!(all.get("annotation.kubernetes.io/config.hash").map(String::as_str), Some("h"));
        let (labels, annotations) = split_labels(all);
        assert_eq!(labels, [("a".to_owned(), "1".to_owned())]);
        assert_eq!(annotations, [("kubernetes.io/config.hash".to_owned(), "h".to_owned())]);
    }

    #[test]
    fn filters_are_encoded_json() {
        assert_eq!(label_filter(&[("io.staticlet.node".into(), "n1".into())]), "%7B%22label%22%3A%5B%22io.staticlet.node%3Dn1%22%5D%7D");
    }

    #[test]
    fn images_are_qualified_as_docker_would() {
        assert_eq!(qualify("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(qualify("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(qualify("grafana/agent:v1"), "docker.io/grafana/agent:v1");
        assert_eq!(qualify("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(qualify("staticlet.test/busybox:1"), "staticlet.test/busybox:1");
        assert_eq!(qualify("localhost/app@sha256:ab"), "localhost/app@sha256:ab");
    }

    #[test]
    fn times_parse_with_fractions_and_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time("2026-11-23T13:20:06.5+01:00"), parse_time("2026-11-23T12:20:06.500Z"));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800_000_000_000));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
    }

    #[test]
    fn multiplexed_output_is_split_by_stream() {
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
        data.extend_from_slice(b"err");
        assert_eq!(demux(&data), (b"outerr".to_vec(), b"out".to_vec(), b"err".to_vec()));
        assert_eq!(demux(b"plain text").0, b"plain text");
    }
}
