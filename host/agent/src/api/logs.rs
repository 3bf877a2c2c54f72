//! `pods/{name}/log`: a container's output, read from the runtime, as the kubelet serves it.
//! Parameters: `container`, `follow`, `tailLines`, `previous`, `timestamps`, `sinceSeconds`,
//! `sinceTime` and `limitBytes`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use staticlet_runtime::{LabelFilter, LogOptions};

use super::{Api, Body, Query, bad_request, pick_container, pod_and_runtime, unavailable};
use staticlet_runtime::labels::{CONTAINER_NAME, POD_UID};

pub(super) async fn serve(api: &Api, namespace: &str, name: &str, query: &Query) -> Result<Response<Body>, Box<Response<Body>>> {
    let (stored, runtime) = pod_and_runtime(api, namespace, name)?;
    let pod = &stored.view.pod;
    let container = pick_container(pod, query.get("container"))?;
    let filter = LabelFilter::new(POD_UID, pod.uid.clone()).and(CONTAINER_NAME, container.clone());
    let mut instances = runtime.list_containers(&filter).await.map_err(|e| Box::new(unavailable(&e.to_string())))?;
    instances.sort_by_key(|c| std::cmp::Reverse((c.metadata.attempt, c.created_at)));
    let previous = query.flag("previous");
    let instance = if previous { instances.get(1) } else { instances.first() };
    let Some(instance) = instance else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating")
        };
        return Err(Box::new(bad_request(&message)));
    };

    let since = match (query.number("sinceSeconds")?, query.get("sinceTime")) {
        (Some(seconds), _) => Some(SystemTime::now() - Duration::from_secs(seconds)),
        (None, Some(time)) => Some(super::table::system_time(time.parse().map_err(|e| Box::new(bad_request(&format!("sinceTime: {e}"))))?)),
        (None, None) => None,
    };
    let options = LogOptions {
        tail_lines: query.number("tailLines")?,
        follow: query.flag("follow") && !previous,
        timestamps: query.flag("timestamps"),
        since,
    };
    let output = runtime.logs(&instance.id, &options).await.map_err(|e| Box::new(unavailable(&e.to_string())))?;
    let limit = query.number("limitBytes")?.unwrap_or(u64::MAX);
    let shutdown = api.shutdown.clone();
    let chunks = output.take_until(async move { shutdown.cancelled().await }).scan(limit, |left, chunk| {
        let chunk = match chunk {
            Ok(_) if *left == 0 => return futures::future::ready(None),
            Ok(mut bytes) => {
                bytes.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= bytes.len() as u64;
                Ok(Frame::data(Bytes::from(bytes)))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        futures::future::ready(Some(chunk))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(chunks.boxed())));
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    Ok(response)
}
