//! `staticlet describe pod NAME`: the pod's spec in brief, its containers' states, and its
//! recent events, laid out as `kubectl describe pod` lays them out.

use std::fmt::Write as _;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Event, Pod, PodSpec, PodStatus, Probe, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use staticlet_model::identity::CONFIG_SOURCE;

use super::client::{Client, JSON, block_on, encode, pod_path};
use super::get::PodArgs;
use crate::api::table::{human_duration, system_time};

pub fn run(args: PodArgs) -> anyhow::Result<()> {
    args.check()?;
    let client = Client::new(&args.socket);
    let (pod, events) = block_on(async {
        let pod = client.get_json(&pod_path(&args.namespace, &args.name), JSON).await?;
        let selector = format!("involvedObject.name={},involvedObject.namespace={}", args.name, args.namespace);
        let events = client
            .get_json(&format!("/api/v1/namespaces/{}/events?fieldSelector={}", encode(&args.namespace), encode(&selector)), JSON)
            .await?;
        anyhow::Ok((pod, events))
    })?;
    let pod: Pod = serde_json::from_value(pod)?;
    let events: Vec<Event> = serde_json::from_value(events["items"].clone()).unwrap_or_default();
    print!("{}", describe(&pod, &events, SystemTime::now()));
    Ok(())
}

fn field(out: &mut String, indent: usize, name: &str, value: impl std::fmt::Display) {
    let label = format!("{name}:");
    let _ = writeln!(out, "{:indent$}{label:<width$}{value}", "", width = 18usize.saturating_sub(indent).max(label.len() + 1));
}

fn map_lines(out: &mut String, name: &str, map: Option<&std::collections::BTreeMap<String, String>>) {
    let pairs: Vec<String> = map.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        field(out, 0, name, "<none>");
        return;
    }
    for (i, pair) in pairs.iter().enumerate() {
        if i == 0 {
            field(out, 0, name, pair);
        } else {
            let _ = writeln!(out, "{:18}{pair}", "");
        }
    }
}

/// The text `describe` prints.
pub fn describe(pod: &Pod, events: &[Event], now: SystemTime) -> String {
    let mut out = String::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    pod_fields(&mut out, &pod.metadata, &spec, &status);
    containers_section(&mut out, &spec, &status);
    conditions_section(&mut out, &status);
    volumes_section(&mut out, &spec);
    field(&mut out, 0, "QoS Class", status.qos_class.as_deref().unwrap_or_default());
    events_section(&mut out, events, now);
    out
}

/// The pod's own fields, from `Name` to `Controlled By`.
fn pod_fields(out: &mut String, meta: &ObjectMeta, spec: &PodSpec, status: &PodStatus) {
    field(out, 0, "Name", meta.name.as_deref().unwrap_or_default());
    field(out, 0, "Namespace", meta.namespace.as_deref().unwrap_or("default"));
    field(out, 0, "Priority", spec.priority.unwrap_or(0));
    let node = spec.node_name.clone().unwrap_or_default();
    field(out, 0, "Node", status.host_ip.as_ref().map_or(node.clone(), |ip| format!("{node}/{ip}")));
    if let Some(start) = &status.start_time {
        field(out, 0, "Start Time", start.0);
    }
    map_lines(out, "Labels", meta.labels.as_ref());
    map_lines(out, "Annotations", meta.annotations.as_ref());
    field(out, 0, "Status", status.phase.as_deref().unwrap_or("Pending"));
    if let Some(reason) = &status.reason {
        field(out, 0, "Reason", reason);
    }
    if let Some(message) = &status.message {
        field(out, 0, "Message", message);
    }
    field(out, 0, "IP", status.pod_ip.as_deref().unwrap_or_default());
    let source = meta.annotations.as_ref().and_then(|a| a.get(CONFIG_SOURCE)).cloned().unwrap_or_default();
    field(out, 0, "Controlled By", format!("its manifest (a static pod from source {source})"));
}

/// `Init Containers:` (only when the pod has some) and `Containers:`, each container with its
/// status.
fn containers_section(out: &mut String, spec: &PodSpec, status: &PodStatus) {
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    let statuses = status.container_statuses.clone().unwrap_or_default();
    if let Some(init) = spec.init_containers.as_ref().filter(|c| !c.is_empty()) {
        out.push_str("Init Containers:\n");
        for container in init {
            describe_container(out, container, init_statuses.iter().find(|s| s.name == container.name));
        }
    }
    out.push_str("Containers:\n");
    for container in &spec.containers {
        describe_container(out, container, statuses.iter().find(|s| s.name == container.name));
    }
}

/// `Conditions:`, only when the pod has some.
fn conditions_section(out: &mut String, status: &PodStatus) {
    if let Some(conditions) = status.conditions.as_ref().filter(|c| !c.is_empty()) {
        out.push_str("Conditions:\n  Type                        Status\n");
        for c in conditions {
            let _ = writeln!(out, "  {:<28}{}", c.type_, c.status);
        }
    }
}

/// `Volumes:`, each with its type.
fn volumes_section(out: &mut String, spec: &PodSpec) {
    out.push_str("Volumes:");
    let Some(volumes) = spec.volumes.as_ref().filter(|v| !v.is_empty()) else {
        out.push_str("  <none>\n");
        return;
    };
    out.push('\n');
    for v in volumes {
        let _ = writeln!(out, "  {}:", v.name);
        let _ = writeln!(out, "    Type:  {}", volume_type(v));
    }
}

/// A volume's `Type:` line, with the path of a `hostPath` on a line of its own.
fn volume_type(v: &Volume) -> String {
    if let Some(h) = &v.host_path {
        format!("HostPath (bare host directory volume)\n    Path:  {}", h.path)
    } else if v.empty_dir.is_some() {
        "EmptyDir (a temporary directory that shares a pod's lifetime)".to_owned()
    } else if v.downward_api.is_some() {
        "DownwardAPI (a volume populated by information about the pod)".to_owned()
    } else {
        "other".to_owned()
    }
}

/// `Events:`, as a table whose columns (all but the last) are as wide as their widest cell.
fn events_section(out: &mut String, events: &[Event], now: SystemTime) {
    out.push_str("Events:");
    if events.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    out.push('\n');
    let rows: Vec<[String; 5]> = events.iter().map(|e| event_row(e, now)).collect();
    let header = ["Type", "Reason", "Age", "From", "Message"];
    let widths: Vec<usize> = (0..4).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: [&str; 5]| {
        format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    out.push_str(&line(header));
    out.push_str(&line(["----", "------", "----", "----", "-------"]));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
}

/// An event's cells: type, reason, age, from, message.
fn event_row(e: &Event, now: SystemTime) -> [String; 5] {
    let from = e.source.as_ref().and_then(|s| s.component.clone()).unwrap_or_default();
    [
        e.type_.clone().unwrap_or_default(),
        e.reason.clone().unwrap_or_default(),
        event_age(e, now),
        from,
        e.message.clone().unwrap_or_default(),
    ]
}

/// How long ago an event last happened, and for a repeated one how many times since its first:
/// `5s (x3 over 2m10s)`.
fn event_age(e: &Event, now: SystemTime) -> String {
    e.last_timestamp.as_ref().map_or_else(String::new, |t| {
        let last = human_duration(now.duration_since(system_time(t.0)).unwrap_or_default());
        match (e.count, &e.first_timestamp) {
            (Some(n), Some(first)) if n > 1 => {
                format!("{last} (x{n} over {})", human_duration(now.duration_since(system_time(first.0)).unwrap_or_default()))
            }
            _ => last,
        }
    })
}

/// One container under `Containers:`: its spec in brief beside its status.
fn describe_container(out: &mut String, container: &Container, status: Option<&ContainerStatus>) {
    let _ = writeln!(out, "  {}:", container.name);
    container_fields(out, container, status);
    container_status(out, status);
    container_resources(out, container);
    container_probes(out, container);
    let env: Vec<String> =
        container.env.iter().flatten().map(|e| format!("{}:  {}", e.name, e.value.as_deref().unwrap_or("(from field)"))).collect();
    container_list(out, "Environment", &env);
    let mounts: Vec<String> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| format!("{} from {} ({})", m.mount_path, m.name, if m.read_only == Some(true) { "ro" } else { "rw" }))
        .collect();
    container_list(out, "Mounts", &mounts);
}

/// From `Container ID` to `Args`: what runs, with the IDs the runtime gave it.
fn container_fields(out: &mut String, container: &Container, status: Option<&ContainerStatus>) {
    if let Some(s) = status {
        field(out, 4, "Container ID", s.container_id.as_deref().unwrap_or_default());
    }
    field(out, 4, "Image", container.image.as_deref().unwrap_or_default());
    if let Some(s) = status {
        field(out, 4, "Image ID", &s.image_id);
    }
    for port in container.ports.iter().flatten() {
        field(out, 4, "Port", format!("{}/{}", port.container_port, port.protocol.as_deref().unwrap_or("TCP")));
    }
    if let Some(command) = &container.command {
        field(out, 4, "Command", command.join(" "));
    }
    if let Some(args) = &container.args {
        field(out, 4, "Args", args.join(" "));
    }
}

/// `State`, `Last State` (when there was one), `Ready` and `Restart Count`; a container with
/// no status yet is only `Waiting`.
fn container_status(out: &mut String, status: Option<&ContainerStatus>) {
    let Some(s) = status else {
        field(out, 4, "State", "Waiting");
        return;
    };
    describe_state(out, "State", s.state.as_ref());
    if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some() || l.running.is_some() || l.waiting.is_some()) {
        describe_state(out, "Last State", s.last_state.as_ref());
    }
    field(out, 4, "Ready", if s.ready { "True" } else { "False" });
    field(out, 4, "Restart Count", s.restart_count);
}

/// `Limits:` and `Requests:`, each only when the container sets some.
fn container_resources(out: &mut String, container: &Container) {
    let Some(resources) = &container.resources else { return };
    for (name, values) in [("Limits", &resources.limits), ("Requests", &resources.requests)] {
        if let Some(values) = values.as_ref().filter(|v| !v.is_empty()) {
            let _ = writeln!(out, "    {name}:");
            for (k, v) in values {
                let _ = writeln!(out, "      {k}:  {}", v.0);
            }
        }
    }
}

/// `Liveness`, `Readiness` and `Startup`, each only when the container has that probe.
fn container_probes(out: &mut String, container: &Container) {
    for (name, probe) in
        [("Liveness", &container.liveness_probe), ("Readiness", &container.readiness_probe), ("Startup", &container.startup_probe)]
    {
        if let Some(p) = probe {
            field(out, 4, name, probe_text(p));
        }
    }
}

/// A probe as kubectl prints it: its action, then its timings with the API's defaults filled
/// in.
fn probe_text(p: &Probe) -> String {
    let action = if let Some(h) = &p.http_get {
        format!("http-get {}:{}{}", h.host.as_deref().unwrap_or(""), port_text(&h.port), h.path.as_deref().unwrap_or("/"))
    } else if let Some(t) = &p.tcp_socket {
        format!("tcp-socket :{}", port_text(&t.port))
    } else if let Some(e) = &p.exec {
        format!("exec [{}]", e.command.clone().unwrap_or_default().join(" "))
    } else {
        "grpc".to_owned()
    };
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        p.initial_delay_seconds.unwrap_or(0),
        p.timeout_seconds.unwrap_or(1),
        p.period_seconds.unwrap_or(10),
        p.success_threshold.unwrap_or(1),
        p.failure_threshold.unwrap_or(3)
    )
}

/// A container's list field: `<none>`, or one line per item below its name.
fn container_list(out: &mut String, name: &str, lines: &[String]) {
    if lines.is_empty() {
        field(out, 4, name, "<none>");
        return;
    }
    let _ = writeln!(out, "    {name}:");
    for line in lines {
        let _ = writeln!(out, "      {line}");
    }
}

fn port_text(port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

fn describe_state(out: &mut String, label: &str, state: Option<&ContainerState>) {
    let Some(state) = state else {
        field(out, 4, label, "Waiting");
        return;
    };
    if let Some(running) = &state.running {
        field(out, 4, label, "Running");
        if let Some(at) = &running.started_at {
            field(out, 6, "Started", at.0);
        }
    } else if let Some(t) = &state.terminated {
        field(out, 4, label, "Terminated");
        field(out, 6, "Reason", t.reason.as_deref().unwrap_or_default());
        if let Some(message) = &t.message {
            field(out, 6, "Message", message);
        }
        field(out, 6, "Exit Code", t.exit_code);
        if let Some(at) = &t.started_at {
            field(out, 6, "Started", at.0);
        }
        if let Some(at) = &t.finished_at {
            field(out, 6, "Finished", at.0);
        }
    } else if let Some(w) = &state.waiting {
        field(out, 4, label, "Waiting");
        if let Some(reason) = &w.reason {
            field(out, 6, "Reason", reason);
        }
        if let Some(message) = &w.message {
            field(out, 6, "Message", message);
        }
    } else {
        field(out, 4, label, "Waiting");
    }
}
