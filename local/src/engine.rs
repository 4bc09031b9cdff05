//! The embedded DynamoDB-compatible engine (dynoxide, SQLite underneath), served
//! over real HTTP so aws-sdk-dynamodb talks to it exactly as to AWS.

use std::net::SocketAddr;
use std::path::Path;

/// Starts dynoxide on `addr` (port 0 picks a free one) on the current runtime and
/// returns its endpoint URL. `data_file` keeps data across restarts; `None` is in
/// memory.
pub async fn start(addr: SocketAddr, data_file: Option<&Path>) -> Result<String, String> {
    let db = match data_file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            dynoxide::Database::new(&path.to_string_lossy())
        }
        None => dynoxide::Database::memory(),
    }
    .map_err(|e| format!("opening the embedded engine: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the embedded engine to {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(dynoxide::server::serve_on(listener, db));
    Ok(format!("http://{bound}"))
}
