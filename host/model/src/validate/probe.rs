//! Probes and lifecycle handlers: `validateLivenessProbe`, `validateReadinessProbe`,
//! `validateStartupProbe`, `validateProbe`, `validateLifecycle` and `validateHandler`.

use k8s_openapi::api::core::v1::{Container, ExecAction, GRPCAction, HTTPGetAction, Probe, SleepAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{self, inclusive_range, push_invalid};
use crate::field::FieldError;

/// Lifecycle handlers and the three probes of an app container or a sidecar.
pub(super) fn validate_lifecycle_and_probes(c: &Container, path: &str, grace: Option<i64>, errors: &mut Vec<FieldError>) {
    if let Some(lifecycle) = &c.lifecycle {
        for (field, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
            if let Some(h) = handler {
                let handler = Handler {
                    exec: h.exec.as_ref(),
                    http_get: h.http_get.as_ref(),
                    tcp_socket: h.tcp_socket.as_ref(),
                    grpc: None,
                    sleep: h.sleep.as_ref(),
                };
                validate_handler(&handler, &format!("{path}.lifecycle.{field}"), grace, errors);
            }
        }
    }
    for (field, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)]
    {
        let Some(probe) = probe else { continue };
        let probe_path = format!("{path}.{field}");
        validate_probe(probe, &probe_path, grace, errors);
        if field == "readinessProbe" {
            if let Some(seconds) = probe.termination_grace_period_seconds {
                errors.push(FieldError::invalid_unquoted(
                    format!("{probe_path}.terminationGracePeriodSeconds"),
                    seconds,
                    "must not be set for readinessProbes",
                ));
            }
        } else if probe.success_threshold.unwrap_or(0) != 1 {
            errors.push(FieldError::invalid_unquoted(
                format!("{probe_path}.successThreshold"),
                probe.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
}

/// The handler types a probe or a lifecycle hook may set.
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    sleep: Option<&'a SleepAction>,
}

/// `validateProbe`.
fn validate_probe(probe: &Probe, path: &str, grace: Option<i64>, errors: &mut Vec<FieldError>) {
    let handler = Handler {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref(),
        grpc: probe.grpc.as_ref(),
        sleep: None,
    };
    validate_handler(&handler, path, grace, errors);
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value
            && value < 0
        {
            errors.push(FieldError::invalid_unquoted(format!("{path}.{field}"), value, "must be greater than or equal to 0"));
        }
    }
    if let Some(seconds) = probe.termination_grace_period_seconds
        && seconds <= 0
    {
        errors.push(FieldError::invalid_unquoted(format!("{path}.terminationGracePeriodSeconds"), seconds, "must be greater than 0"));
    }
}

/// `validateHandler`: exactly one handler type; a second one is reported on its own path.
fn validate_handler(handler: &Handler<'_>, path: &str, grace: Option<i64>, errors: &mut Vec<FieldError>) {
    let mut count = 0;
    let mut one = |field: &str, set: bool, errors: &mut Vec<FieldError>| {
        if !set {
            return false;
        }
        count += 1;
        if count > 1 {
            errors.push(FieldError::forbidden(format!("{path}.{field}"), "may not specify more than 1 handler type"));
            return false;
        }
        true
    };
    if one("exec", handler.exec.is_some(), errors) && handler.exec.is_some_and(|e| e.command.as_ref().is_none_or(Vec::is_empty)) {
        errors.push(FieldError::required(format!("{path}.exec.command")));
    }
    if one("httpGet", handler.http_get.is_some(), errors)
        && let Some(http) = handler.http_get
    {
        validate_http_get(http, &format!("{path}.httpGet"), errors);
    }
    if one("tcpSocket", handler.tcp_socket.is_some(), errors)
        && let Some(tcp) = handler.tcp_socket
    {
        validate_port_ref(&tcp.port, &format!("{path}.tcpSocket.port"), errors);
    }
    if one("grpc", handler.grpc.is_some(), errors)
        && let Some(grpc) = handler.grpc
    {
        validate_port_ref(&IntOrString::Int(grpc.port), &format!("{path}.grpc.port"), errors);
    }
    if one("sleep", handler.sleep.is_some(), errors)
        && let (Some(sleep), Some(grace)) = (handler.sleep, grace)
        && (sleep.seconds < 0 || sleep.seconds > grace)
    {
        // PodLifecycleSleepActionAllowZero is on by default since 1.33: zero is allowed.
        errors.push(FieldError::invalid_unquoted(
            format!("{path}.sleep"),
            sleep.seconds,
            format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    if count == 0 {
        errors.push(FieldError::required_because(path, "must specify a handler type"));
    }
}

/// `validateHTTPGetAction`. The API server defaults an empty path to `/` and an empty scheme to
/// `HTTP` first, so only a scheme that is set can be wrong.
fn validate_http_get(http: &HTTPGetAction, path: &str, errors: &mut Vec<FieldError>) {
    validate_port_ref(&http.port, &format!("{path}.port"), errors);
    if let Some(scheme) = http.scheme.as_deref().filter(|s| !s.is_empty())
        && !matches!(scheme, "HTTP" | "HTTPS")
    {
        errors.push(FieldError::not_supported(format!("{path}.scheme"), scheme, &["HTTP", "HTTPS"]));
    }
    for header in http.http_headers.iter().flatten() {
        push_invalid(errors, &format!("{path}.httpHeaders"), &header.name, names::http_header_name(&header.name));
    }
}

/// `ValidatePortNumOrName`.
fn validate_port_ref(port: &IntOrString, path: &str, errors: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => errors.push(FieldError::invalid_unquoted(path, n, inclusive_range(1, 65535))),
        IntOrString::Int(_) => {}
        IntOrString::String(name) => push_invalid(errors, path, name, names::port_name(name)),
    }
}
