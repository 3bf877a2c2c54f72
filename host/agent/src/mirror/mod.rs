//! Mirror pods (spec §9): the read-only copies of static pods an agent with `--kubeconfig`
//! keeps on the cluster's API server, so `kubectl get pods` shows them as it shows a kubelet's.
//!
//! The stage is built as the reconcile stage is: [`plan`] is a pure function from the static
//! pods the agent runs and the mirror pods the API server holds for this node to the calls that
//! bring the second in line with the first. The client that lists, watches and applies those
//! calls (kube-rs, with back-off, never in the way of the pods themselves) is the part of the
//! mirror-pod issue still to come.

pub mod plan;
