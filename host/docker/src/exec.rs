//! `exec_sync` over Docker's exec API: create an exec instance, collect its output, then read
//! its exit code.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use staticlet_runtime::{EXEC_OUTPUT_LIMIT, ExecResult, RuntimeError};

use crate::map_error;

/// Runs `cmd` in the container and waits for it to exit. The caller bounds the time.
pub(crate) async fn run(docker: &Docker, container_id: &str, cmd: &[String]) -> Result<ExecResult, RuntimeError> {
    if cmd.is_empty() {
        return Err(RuntimeError::Call { call: "exec_sync", message: "the command is empty".into() });
    }
    let options =
        CreateExecOptions { cmd: Some(cmd.to_vec()), attach_stdout: Some(true), attach_stderr: Some(true), ..CreateExecOptions::default() };
    let exec = docker.create_exec(container_id, options).await.map_err(|e| map_error("exec_sync", container_id, e))?;
    let mut result = ExecResult::default();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.map_err(|e| map_error("exec_sync", container_id, e))?
    {
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|e| map_error("exec_sync", container_id, e))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => append_capped(&mut result.stdout, &message),
                LogOutput::StdErr { message } => append_capped(&mut result.stderr, &message),
                LogOutput::StdIn { .. } => {}
            }
        }
    }
    let inspect = docker.inspect_exec(&exec.id).await.map_err(|e| map_error("exec_sync", container_id, e))?;
    result.exit_code = inspect.exit_code.unwrap_or(-1) as i32;
    Ok(result)
}

fn append_capped(buffer: &mut Vec<u8>, bytes: &[u8]) {
    let room = EXEC_OUTPUT_LIMIT.saturating_sub(buffer.len());
    buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
}
