//! The resize stream: client-go's json.Encoder writes one `{"Width":W,"Height":H}` per resize,
//! and a message or frame boundary need not fall between two of them.

use bytes::Bytes;
use staticlet_runtime::TerminalSize;
use tokio::sync::mpsc;

/// A size as the client writes it; the runtime gets it as its own [`TerminalSize`].
#[derive(serde::Deserialize)]
struct WireSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Sizes that can wait for the consumer; beyond that only the newest is kept.
const QUEUE: usize = 4;

/// Parses the resize stream's bytes into sizes for the agent.
///
/// Reading never waits for the agent: a consumer that lags behind a full queue gets the newest
/// size next rather than stalling the connection's reader.
pub fn spawn(inbound: mpsc::Receiver<Bytes>) -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(relay(inbound, tx));
    rx
}

async fn relay(mut inbound: mpsc::Receiver<Bytes>, tx: mpsc::Sender<TerminalSize>) {
    let mut buffer = Vec::new();
    let mut latest: Option<TerminalSize> = None;
    let mut open = true;
    while open || latest.is_some() {
        tokio::select! {
            bytes = inbound.recv(), if open => match bytes {
                Some(bytes) => {
                    buffer.extend_from_slice(&bytes);
                    match drain(&mut buffer) {
                        // In order while the queue has room; once it is full, only the newest waits.
                        Ok(sizes) => {
                            for size in sizes {
                                if latest.is_some() {
                                    latest = Some(size);
                                    continue;
                                }
                                match tx.try_send(size) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(size)) => latest = Some(size),
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                        }
                        // The kubelet stops reading resizes at the first undecodable one too.
                        Err(error) => {
                            tracing::debug!(%error, "undecodable terminal resize; ignoring further resizes");
                            open = false;
                        }
                    }
                }
                None => open = false,
            },
            permit = tx.reserve(), if latest.is_some() => match (permit, latest.take()) {
                (Ok(permit), Some(size)) => permit.send(size),
                _ => return,
            },
        }
    }
}

/// Takes every complete size off the front of `buffer`, leaving a partial one in place.
fn drain(buffer: &mut Vec<u8>) -> Result<Vec<TerminalSize>, serde_json::Error> {
    let mut sizes = Vec::new();
    let mut values = serde_json::Deserializer::from_slice(buffer).into_iter::<WireSize>();
    loop {
        match values.next() {
            Some(Ok(WireSize { width, height })) => sizes.push(TerminalSize { width, height }),
            Some(Err(error)) if error.is_eof() => break,
            Some(Err(error)) => return Err(error),
            None => break,
        }
    }
    let used = values.byte_offset();
    buffer.drain(..used);
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_split_anywhere() {
        let mut buffer = br#"{"Width":80,"Height":24}
{"Width":100,"He"#
            .to_vec();
        assert_eq!(drain(&mut buffer).unwrap(), vec![TerminalSize { width: 80, height: 24 }]);
        buffer.extend_from_slice(b"ight\":50}\n");
        assert_eq!(drain(&mut buffer).unwrap(), vec![TerminalSize { width: 100, height: 50 }]);
        assert!(buffer.iter().all(u8::is_ascii_whitespace));
        assert!(drain(&mut b"[1]".to_vec()).is_err());
    }

    #[tokio::test]
    async fn lagging_consumer_gets_the_newest_size() {
        let (tx, inbound) = mpsc::channel(16);
        let mut sizes = spawn(inbound);
        for width in 1..=20u16 {
            tx.send(Bytes::from(format!("{{\"Width\":{width},\"Height\":1}}\n"))).await.unwrap();
        }
        drop(tx);
        let mut last = None;
        while let Some(size) = sizes.recv().await {
            last = Some(size);
        }
        assert_eq!(last, Some(TerminalSize { width: 20, height: 1 }));
    }
}
