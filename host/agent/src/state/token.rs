//! The bearer token the API's streaming verbs ask for: random hex on one line, in a file only
//! the agent's owner can read, as the kubelet keeps its credentials under its root dir.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::write_atomic;

/// Random bytes in a token: 256 bits, as a service-account token's signing key would give.
const TOKEN_BYTES: usize = 32;

/// The token kept at `path`, made the first time; the file is (made) 0600 either way, so a
/// token copied in with a looser mode is not left readable.
///
/// # Errors
///
/// The I/O error of reading, making or protecting the file.
pub fn load_or_create(path: &Path) -> io::Result<String> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().to_owned()).filter(|token| !token.is_empty()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match existing {
        Some(token) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok(token)
        }
        None => {
            let mut random = [0u8; TOKEN_BYTES];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
            let token = hex::encode(random);
            write_atomic(path, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
    }
}
