//! Manifest sources (issue 5): the manifest URL against a real HTTP server run by the test,
//! whose answers the test changes: a PodList, required headers, conditional requests, a 500,
//! a hang past the timeout, a 20 MiB body, one invalid pod, the server going away, and an agent
//! restarted while it is away.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::images::BUSYBOX;
use crate::support::{Agent, free_port, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

/// What the test server answers.
#[derive(Debug, Clone)]
enum Answer {
    Body(String),
    Status(u16),
    Hang,
    Huge,
}

#[derive(Default)]
struct Seen {
    requests: Vec<BTreeMap<String, String>>,
    not_modified: usize,
}

/// A real HTTP/1.1 server on loopback, one thread per connection.
struct ManifestServer {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ManifestServer {
    fn start(port: u16, answer: Answer) -> ManifestServer {
        let mut server =
            ManifestServer { port, answer: Arc::new(Mutex::new(answer)), seen: Arc::default(), stop: Arc::default(), thread: None };
        server.listen();
        server
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (answer, seen, stop) = (self.answer.clone(), self.seen.clone(), self.stop.clone());
        self.thread = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (answer, seen) = (answer.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &answer, &seen));
            }
        }));
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Closes the listening socket: connections are refused from now on.
    fn go_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/pods", self.port)
    }
}

impl Drop for ManifestServer {
    fn drop(&mut self) {
        self.go_down();
    }
}

fn serve(stream: TcpStream, answer: &Mutex<Answer>, seen: &Mutex<Seen>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim().split_once(':') {
            headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
        }
    }
    let answer = answer.lock().unwrap().clone();
    let mut stream = stream;
    let if_none_match = headers.get("if-none-match").cloned();
    seen.lock().unwrap().requests.push(headers);
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len());
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    };
    match answer {
        Answer::Body(body) => {
            let etag = format!("\"{:x}\"", body.len() * 31 + body.bytes().map(usize::from).sum::<usize>());
            if if_none_match.as_deref() == Some(etag.as_str()) {
                seen.lock().unwrap().not_modified += 1;
                respond(&mut stream, "304 Not Modified", &format!("ETag: {etag}\r\n"), b"");
            } else {
                respond(&mut stream, "200 OK", &format!("ETag: {etag}\r\nContent-Type: application/yaml\r\n"), body.as_bytes());
            }
        }
        Answer::Status(code) => respond(&mut stream, &format!("{code} Trouble"), "", b"server trouble"),
        Answer::Hang => {
            std::thread::sleep(Duration::from_secs(15));
            respond(&mut stream, "200 OK", "", b"too late");
        }
        Answer::Huge => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 20 * 1024 * 1024);
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'#'; 1024 * 1024];
            for _ in 0..20 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

fn pod_list(names: &[&str]) -> String {
    let items: String = names
        .iter()
        .map(|name| {
            yaml!(
                r#"
                - metadata: {name: {name}}
                  spec:
                    containers:
                    - {name: app, image: {BUSYBOX}, command: [sleep, '3600']}
                "#,
                name,
                BUSYBOX,
            )
        })
        .collect();
    yaml!(
        r#"
        apiVersion: v1
        kind: PodList
        items:
        {items}
        "#,
        items,
    )
}

async fn app_ids(agent: &Agent, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        let found = agent.app_containers(name).await;
        assert_eq!(found.len(), 1, "pod {name} runs one app container");
        ids.push(found[0].id.clone().unwrap());
    }
    ids
}

async fn wait_running(agent: &Agent, names: &[&str]) {
    for name in names {
        wait_for(START, &format!("pod {name} to run"), || async { (agent.app_containers(name).await.len() == 1).then_some(()) }).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_url_runs_its_pods_and_keeps_them_through_every_failure() {
    let mut server = ManifestServer::start(free_port(), Answer::Body(pod_list(&["a", "b"])));
    let mut agent = Agent::new("url");
    let url = server.url();
    let flags = ["--manifest-url", &url, "--manifest-url-header", "X-Node:edge-1,X-Token:s3cret", "--http-check-frequency", "1s"];
    agent.start_with(&flags);
    wait_running(&agent, &["a", "b"]).await;
    let pod = agent.pod_status("a").await.unwrap();
    assert_eq!(pod["metadata"]["annotations"]["kubernetes.io/config.source"], "http");
    {
        let seen = server.seen.lock().unwrap();
        let first = &seen.requests[0];
        assert_eq!((first.get("x-node").map(String::as_str), first.get("x-token").map(String::as_str)), (Some("edge-1"), Some("s3cret")));
    }
    wait_for(START, "a conditional request answered 304", || async { (server.seen.lock().unwrap().not_modified > 0).then_some(()) }).await;
    let ids = app_ids(&agent, &["a", "b"]).await;

    for (answer, reported) in [
        (Answer::Status(500), "the server answered 500"),
        (Answer::Hang, "no complete answer within 10s"),
        (Answer::Huge, "larger than the 10485760-byte limit"),
        (Answer::Body(pod_list(&["a", "Bad_Name"])), "items[1] (Bad_Name)"),
    ] {
        server.answer(answer);
        agent.wait_log(reported).await;
        assert_eq!(app_ids(&agent, &["a", "b"]).await, ids, "after {reported:?} the last good pods keep running");
    }

    server.answer(Answer::Body(pod_list(&["a", "c"])));
    wait_running(&agent, &["c"]).await;
    wait_for(START, "pod b to go", || async { agent.app_containers("b").await.is_empty().then_some(()) }).await;
    let ids = app_ids(&agent, &["a", "c"]).await;

    server.go_down();
    agent.wait_log("Connection refused").await;
    assert_eq!(app_ids(&agent, &["a", "c"]).await, ids, "the server going down stops nothing");

    // Restarted while the server is down: the checkpoint brings the same pods back, adopted.
    agent.kill9();
    agent.start_with(&flags);
    agent.wait_log("restored the manifest URL's last good pods from the checkpoint").await;
    agent.wait_reported_running(&["a", "c"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app_ids(&agent, &["a", "c"]).await, ids, "adopted, not restarted");
    assert!(agent.pod_status("b").await.is_none());

    server.answer(Answer::Body(pod_list(&["c"])));
    server.listen();
    wait_for(START, "pod a to go once the server is back", || async { agent.app_containers("a").await.is_empty().then_some(()) }).await;
    assert_eq!(app_ids(&agent, &["c"]).await, ids[1..]);
}
