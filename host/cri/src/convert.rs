//! The runtime trait's types to and from the CRI's, field by field as the kubelet's
//! `kuberuntime` package fills them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use staticlet_runtime::{
    Container, ContainerConfig, ContainerMetadata, ContainerState, MountPropagation, PodSandbox, PodSandboxConfig, PodSandboxMetadata,
    Protocol, SandboxState,
};

/// The sandbox's namespaces as the kubelet asks for them: the node's when the pod shares the
/// host's, else the pod's own network and IPC and a PID namespace per container (no
/// `shareProcessNamespace` in static pods staticlet runs).
fn namespaces(sandbox: &PodSandboxConfig) -> cri::NamespaceOption {
    let node_or = |shared: bool, own: cri::NamespaceMode| if shared { cri::NamespaceMode::Node } else { own } as i32;
    cri::NamespaceOption {
        network: node_or(sandbox.host_network, cri::NamespaceMode::Pod),
        pid: node_or(sandbox.host_pid, cri::NamespaceMode::Container),
        ipc: node_or(sandbox.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// `RunPodSandbox`'s config.
pub fn sandbox_config(config: &PodSandboxConfig) -> cri::PodSandboxConfig {
    let meta = &config.metadata;
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            attempt: meta.attempt,
        }),
        // runc cannot set a hostname in the node's UTS namespace; the kubelet leaves it unset.
        hostname: if config.host_network { String::new() } else { config.hostname.clone() },
        log_directory: config.log_directory.to_string_lossy().into_owned(),
        dns_config: config.dns_config.as_ref().map(|dns| cri::DnsConfig {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        port_mappings: config
            .port_mappings
            .iter()
            .map(|port| cri::PortMapping {
                protocol: match port.protocol {
                    Protocol::Tcp => cri::Protocol::Tcp,
                    Protocol::Udp => cri::Protocol::Udp,
                    Protocol::Sctp => cri::Protocol::Sctp,
                } as i32,
                container_port: i32::from(port.container_port),
                host_port: i32::from(port.host_port),
                host_ip: port.host_ip.clone(),
            })
            .collect(),
        labels: hash(&config.labels),
        annotations: hash(&config.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces(config)), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where a container's log goes, relative to the sandbox's log directory: the kubelet's
/// `<container>/<attempt>.log`.
pub fn log_path(metadata: &ContainerMetadata) -> String {
    format!("{}/{}.log", metadata.name, metadata.attempt)
}

/// `CreateContainer`'s config.
pub fn container_config(config: &ContainerConfig, sandbox: &PodSandboxConfig) -> cri::ContainerConfig {
    let (limits, security) = (&config.resources, &config.security);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: config.metadata.name.clone(), attempt: config.metadata.attempt }),
        image: Some(cri::ImageSpec { image: config.image.clone(), ..Default::default() }),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone().unwrap_or_default(),
        envs: config.envs.iter().map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() }).collect(),
        mounts: config
            .mounts
            .iter()
            .map(|mount| cri::Mount {
                container_path: mount.container_path.clone(),
                host_path: mount.host_path.to_string_lossy().into_owned(),
                readonly: mount.readonly,
                propagation: match mount.propagation {
                    MountPropagation::Private => cri::MountPropagation::PropagationPrivate,
                    MountPropagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
                    MountPropagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
                } as i32,
                ..Default::default()
            })
            .collect(),
        labels: hash(&config.labels),
        annotations: hash(&config.annotations),
        log_path: log_path(&config.metadata),
        stdin: config.stdin,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: limits.cpu_period,
                cpu_quota: limits.cpu_quota,
                cpu_shares: limits.cpu_shares,
                memory_limit_in_bytes: limits.memory_limit_in_bytes,
                // No swap beyond the limit, as the kubelet's NoSwap behaviour sets it.
                memory_swap_limit_in_bytes: limits.memory_limit_in_bytes,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: security.add_capabilities.clone(),
                    drop_capabilities: security.drop_capabilities.clone(),
                    ..Default::default()
                }),
                privileged: security.privileged,
                namespace_options: Some(namespaces(sandbox)),
                run_as_user: security.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: security.supplemental_groups.clone(),
                readonly_rootfs: security.readonly_rootfs,
                no_new_privs: security.no_new_privs,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// A listed sandbox; `None` when it carries no metadata, which the runtime always sets.
pub fn sandbox(sandbox: cri::PodSandbox) -> Option<PodSandbox> {
    let meta = sandbox.metadata?;
    Some(PodSandbox {
        id: sandbox.id,
        metadata: PodSandboxMetadata { name: meta.name, namespace: meta.namespace, uid: meta.uid, attempt: meta.attempt },
        state: sandbox_state(sandbox.state),
        created_at: time(sandbox.created_at).unwrap_or(UNIX_EPOCH),
        labels: sorted(sandbox.labels),
        annotations: sorted(sandbox.annotations),
    })
}

/// A sandbox's status as a listed sandbox.
pub fn sandbox_of_status(status: cri::PodSandboxStatus) -> Option<PodSandbox> {
    sandbox(cri::PodSandbox {
        id: status.id,
        metadata: status.metadata,
        state: status.state,
        created_at: status.created_at,
        labels: status.labels,
        annotations: status.annotations,
        runtime_handler: status.runtime_handler,
    })
}

fn sandbox_state(state: i32) -> SandboxState {
    if state == cri::PodSandboxState::SandboxReady as i32 { SandboxState::Ready } else { SandboxState::NotReady }
}

/// A listed container; `None` when it carries no metadata.
pub fn container(container: cri::Container) -> Option<Container> {
    let meta = container.metadata?;
    Some(Container {
        id: container.id,
        pod_sandbox_id: container.pod_sandbox_id,
        metadata: ContainerMetadata { name: meta.name, attempt: meta.attempt },
        image: container.image.map(|i| i.image).unwrap_or_default(),
        state: container_state(container.state),
        created_at: time(container.created_at).unwrap_or(UNIX_EPOCH),
        labels: sorted(container.labels),
        annotations: sorted(container.annotations),
    })
}

/// A container's state in the trait's words.
pub fn container_state(state: i32) -> ContainerState {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

/// A CRI timestamp (nanoseconds since the epoch, 0 for never) as a time.
pub fn time(nanos: i64) -> Option<SystemTime> {
    u64::try_from(nanos).ok().filter(|n| *n > 0).map(|n| UNIX_EPOCH + Duration::from_nanos(n))
}

fn hash(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticlet_runtime::{LinuxContainerResources, LinuxContainerSecurity, Mount, PortMapping};

    #[test]
    fn a_host_network_pod_asks_for_the_nodes_namespaces_and_keeps_its_ports() {
        let sandbox = PodSandboxConfig {
            metadata: PodSandboxMetadata { name: "web-n".into(), namespace: "default".into(), uid: "u1".into(), attempt: 2 },
            host_network: true,
            port_mappings: vec![PortMapping { protocol: Protocol::Udp, container_port: 53, host_port: 5353, host_ip: String::new() }],
            log_directory: "/var/log/pods/default_web-n_u1".into(),
            hostname: "web-n".into(),
            ..Default::default()
        };
        let config = sandbox_config(&sandbox);
        let options = config.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(options.network, cri::NamespaceMode::Node as i32);
        assert_eq!(options.pid, cri::NamespaceMode::Container as i32);
        assert_eq!(options.ipc, cri::NamespaceMode::Pod as i32);
        assert_eq!(config.metadata.unwrap().attempt, 2);
        assert_eq!(config.hostname, "", "the node's hostname stays");
        assert_eq!(config.log_directory, "/var/log/pods/default_web-n_u1");
        assert_eq!(config.port_mappings[0].protocol, cri::Protocol::Udp as i32);
        assert_eq!(config.port_mappings[0].host_port, 5353);
    }

    #[test]
    fn a_container_config_carries_limits_security_mounts_and_the_kubelets_log_path() {
        let config = ContainerConfig {
            metadata: ContainerMetadata { name: "app".into(), attempt: 3 },
            image: "busybox".into(),
            working_dir: Some("/w".into()),
            envs: vec![("A".into(), "1".into())],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                readonly: true,
                propagation: MountPropagation::HostToContainer,
            }],
            resources: LinuxContainerResources { cpu_period: 100_000, cpu_quota: 50_000, cpu_shares: 512, memory_limit_in_bytes: 1 << 26 },
            security: LinuxContainerSecurity {
                run_as_user: Some(1000),
                drop_capabilities: vec!["ALL".into()],
                no_new_privs: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let cri = container_config(&config, &PodSandboxConfig { host_pid: true, ..Default::default() });
        assert_eq!(cri.log_path, "app/3.log");
        assert_eq!(cri.working_dir, "/w");
        assert_eq!(cri.envs[0].key, "A");
        assert_eq!(cri.mounts[0].propagation, cri::MountPropagation::PropagationHostToContainer as i32);
        assert!(cri.mounts[0].readonly);
        let linux = cri.linux.unwrap();
        let resources = linux.resources.unwrap();
        assert_eq!((resources.cpu_quota, resources.cpu_shares, resources.memory_swap_limit_in_bytes), (50_000, 512, 1 << 26));
        let security = linux.security_context.unwrap();
        assert_eq!(security.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(security.run_as_group, None);
        assert!(security.no_new_privs);
        assert_eq!(security.capabilities.unwrap().drop_capabilities, ["ALL"]);
        assert_eq!(security.namespace_options.unwrap().pid, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn timestamps_of_zero_are_never() {
        assert_eq!(time(0), None);
        assert_eq!(time(1_500_000_000), Some(UNIX_EPOCH + Duration::from_millis(1500)));
        assert_eq!(container_state(cri::ContainerState::ContainerExited as i32), ContainerState::Exited);
        assert_eq!(container_state(42), ContainerState::Unknown);
    }
}
