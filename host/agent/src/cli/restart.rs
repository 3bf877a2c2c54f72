//! `staticlet restart pod NAME`: stops every container of a static pod and starts the pod
//! afresh, without touching its manifest.

use hyper::Method;

use super::client::{Client, JSON, block_on, encode};
use super::get::PodArgs;

pub fn run(args: PodArgs) -> anyhow::Result<()> {
    args.check()?;
    let path = format!("/staticlet/v1/namespaces/{}/pods/{}/restart", encode(&args.namespace), encode(&args.name));
    block_on(Client::new(&args.socket).send(Method::POST, &path, JSON))?;
    println!("pod/{} restarted", args.name);
    Ok(())
}
