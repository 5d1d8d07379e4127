//! A directory of `.eml` files, one per message, each written whole or not at all: where the
//! capture server and [`crate::delivery::FileSender`] put what they take.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes messages into a directory: a hidden temporary file first, then a rename, so a
/// reader never sees half a message.
#[derive(Debug)]
pub struct MessageStore {
    dir: PathBuf,
    counter: AtomicU64,
}

impl MessageStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: &Path) -> std::io::Result<MessageStore> {
        std::fs::create_dir_all(dir)?;
        Ok(MessageStore {
            dir: dir.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new queue id: time, process, counter.
    pub fn next_id(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{secs:x}{:04x}{n:06}", std::process::id() & 0xffff).to_ascii_uppercase()
    }

    /// Writes `trace` then `message` as `<id>.eml`.
    pub fn write(&self, id: &str, trace: &str, message: &[u8]) -> std::io::Result<PathBuf> {
        let final_path = self.dir.join(format!("{id}.eml"));
        let temp_path = self.dir.join(format!(".{id}.tmp"));
        let result = (|| {
            let mut f = std::fs::File::create(&temp_path)?;
            f.write_all(trace.as_bytes())?;
            f.write_all(message)?;
            f.sync_all()?;
            std::fs::rename(&temp_path, &final_path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp_path);
        }
        result.map(|()| final_path)
    }
}
