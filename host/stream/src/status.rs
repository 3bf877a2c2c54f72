//! What goes on the error stream when a command ends.
//!
//! Protocol v4 and v5 write a JSON metav1.Status, which carries the exit code (client-go's
//! errorDecoderV4 turns a NonZeroExitCode failure into an exit error with that code, so kubectl
//! exits with it); the older protocols write nothing on success and the message text otherwise.

use serde::Serialize;

use crate::Outcome;

/// metav1.Status, with the fields the kubelet fills in, in its field order.
#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: &'a str,
}

/// The message of a non-zero exit; client-go ignores it and reports the code itself.
fn exit_message(code: i32) -> String {
    format!("command terminated with non-zero exit code: exit code {code}")
}

/// The v4/v5 error-stream payload.
pub fn json(outcome: &Outcome) -> Vec<u8> {
    let code_text;
    let message;
    let status = match outcome {
        Outcome::Exited(0) => Status { metadata: Empty {}, status: "Success", message: None, reason: None, details: None, code: None },
        Outcome::Exited(code) => {
            code_text = code.to_string();
            message = exit_message(*code);
            Status {
                metadata: Empty {},
                status: "Failure",
                message: Some(&message),
                reason: Some("NonZeroExitCode"),
                details: Some(Details { causes: vec![Cause { reason: Some("ExitCode"), message: &code_text }] }),
                code: None,
            }
        }
        // apierrors.NewInternalError's shape, with the caller's message as is.
        Outcome::Failed(text) => Status {
            metadata: Empty {},
            status: "Failure",
            message: Some(text),
            reason: Some("InternalError"),
            details: Some(Details { causes: vec![Cause { reason: None, message: text }] }),
            code: Some(500),
        },
    };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_vec(&status).unwrap_or_default()
}

/// The v1–v3 error-stream payload: nothing for success, else the message.
pub fn text(outcome: &Outcome) -> Option<Vec<u8>> {
    match outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(exit_message(*code).into_bytes()),
        Outcome::Failed(text) => Some(text.clone().into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_kubelet() {
        assert_eq!(String::from_utf8(json(&Outcome::Exited(0))).unwrap(), r#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(
            String::from_utf8(json(&Outcome::Exited(3))).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        assert_eq!(
            String::from_utf8(json(&Outcome::Failed("no such container".into()))).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"no such container","reason":"InternalError","details":{"causes":[{"message":"no such container"}]},"code":500}"#
        );
        assert_eq!(text(&Outcome::Exited(0)), None);
        assert_eq!(text(&Outcome::Failed("boom".into())).unwrap(), b"boom");
    }
}
