//! The token cache: refresh tokens that the identity provider rotated, or that
//! `smtpkit auth login` obtained, kept in a JSON file (mode 0600) so the next start uses them.
//!
//! Each entry remembers a digest of the configuration's `refresh_token` it replaced: when the
//! configuration later carries a different refresh token (the user pasted a new one), that one
//! wins over the cache. Writes are atomic (write, fsync, rename, fsync the directory) and
//! serialised between processes by a lock on a sidecar `.lock` file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::settings::OAuth2Settings;
use crate::proto::Secret;

/// One provider's refresh token in the cache.
#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    refresh_token: String,
    /// SHA-256 (hex) of the configuration's `refresh_token` this entry replaced, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaces: Option<String>,
    /// When the entry was written (seconds since the Unix epoch).
    updated: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct File1 {
    version: u32,
    tokens: BTreeMap<String, Entry>,
}

/// A token cache file and the key of one provider's entry in it.
#[derive(Debug, Clone)]
pub struct TokenCache {
    path: PathBuf,
    key: String,
}

/// The cache entry's key: the endpoint, the client and the mailbox.
pub(crate) fn cache_key(settings: &super::OAuth2Settings, user: &str) -> String {
    format!("{} {} {user}", settings.token_url, settings.client_id)
}

/// SHA-256 of a secret, hex: enough to recognise it again, not to recover it.
fn digest(secret: &Secret) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.expose().as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenCache {
    /// The entry `key` (token endpoint, client id and user) in the file at `path`.
    pub fn new(path: impl Into<PathBuf>, key: impl Into<String>) -> TokenCache {
        TokenCache {
            path: path.into(),
            key: key.into(),
        }
    }

    /// The entry of `user`'s account at `settings`' identity provider, in
    /// `settings.token_cache`: the one [`TokenSource`](super::TokenSource) reads, so a token
    /// stored here by `smtpkit auth login` is the one the sender starts with.
    ///
    /// ```no_run
    /// use smtpkit::oauth::{OAuth2Input, OAuth2Settings, TokenCache};
    /// use smtpkit::proto::Secret;
    ///
    /// let settings = OAuth2Settings::resolve(OAuth2Input {
    ///     provider: "microsoft".into(),
    ///     client_id: "00000000-0000-0000-0000-000000000000".into(),
    ///     ..OAuth2Input::default()
    /// })
    /// .expect("valid");
    /// let cache = TokenCache::for_account(&settings, "agent@company.com");
    /// cache.store(&Secret::new("the refresh token"), settings.refresh_token.as_ref())?;
    /// # Ok::<(), String>(())
    /// ```
    pub fn for_account(settings: &OAuth2Settings, user: &str) -> TokenCache {
        TokenCache::new(settings.token_cache.clone(), cache_key(settings, user))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The refresh token to start with: the cached one, unless `configured` is a refresh
    /// token the cache entry does not descend from (then `configured`). `None` when neither
    /// has one.
    pub fn initial_refresh_token(
        &self,
        configured: Option<&Secret>,
    ) -> Result<Option<Secret>, String> {
        let file = self.read()?;
        let Some(entry) = file.tokens.get(&self.key) else {
            return Ok(configured.cloned());
        };
        Ok(match configured {
            Some(c) if entry.replaces.as_deref() != Some(digest(c).as_str()) => Some(c.clone()),
            _ => Some(Secret::new(entry.refresh_token.as_str())),
        })
    }

    /// Stores `refresh_token` as this entry, remembering that it replaces `configured`.
    pub fn store(&self, refresh_token: &Secret, configured: Option<&Secret>) -> Result<(), String> {
        let _lock = self.lock()?;
        let mut file = self.read()?;
        file.version = 1;
        let updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        file.tokens.insert(
            self.key.clone(),
            Entry {
                refresh_token: refresh_token.expose().to_owned(),
                replaces: configured.map(digest),
                updated,
            },
        );
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| format!("cannot encode the token cache: {e}"))?;
        text.push('\n');
        let result = self.write_atomically(text.as_bytes());
        zeroize::Zeroize::zeroize(&mut text);
        for entry in file.tokens.values_mut() {
            zeroize::Zeroize::zeroize(&mut entry.refresh_token);
        }
        result
    }

    fn read(&self) -> Result<File1, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File1::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        serde_json::from_str(&text).map_err(|e| {
            // serde_json's message names a line and column, never the value.
            format!(
                "{} is not a smtpkit token cache ({e}); move it away and run `smtpkit auth login`",
                self.path.display()
            )
        })
    }

    /// An exclusive lock on `<file>.lock`, held until the returned file is dropped.
    fn lock(&self) -> Result<File, String> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let lock = create_private(Path::new(&name), false)?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", Path::new(&name).display()))?;
        Ok(lock)
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<(), String> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "smtpkit-tokens.json".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = create_private(&tmp, true)?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &self.path)
                .map_err(|e| format!("cannot replace {}: {e}", self.path.display()))?;
            // The rename is durable once the directory is.
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// Opens `path` for writing, created with mode 0600 (owner only) on Unix; `truncate` empties
/// an existing file.
fn create_private(path: &Path, truncate: bool) -> Result<File, String> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_is_kept_and_preferred_until_the_config_changes() {
        let dir = tempfile_dir();
        let path = dir.join("tokens.json");
        let cache = TokenCache::new(&path, "https://id/token client user");
        let configured = Secret::new("rt-from-config");
        assert_eq!(
            cache
                .initial_refresh_token(Some(&configured))
                .expect("read")
                .as_ref()
                .map(Secret::expose),
            Some("rt-from-config")
        );
        cache
            .store(&Secret::new("rt-rotated"), Some(&configured))
            .expect("store");
        let text = std::fs::read_to_string(&path).expect("read file");
        assert!(!text.contains("rt-from-config"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let start = |c: Option<&Secret>| {
            cache
                .initial_refresh_token(c)
                .expect("read")
                .map(|s| s.expose().to_owned())
        };
        assert_eq!(start(Some(&configured)).as_deref(), Some("rt-rotated"));
        assert_eq!(start(None).as_deref(), Some("rt-rotated"));
        // A new token pasted into the configuration wins over the cache.
        assert_eq!(
            start(Some(&Secret::new("rt-pasted"))).as_deref(),
            Some("rt-pasted")
        );
        // Other entries are kept.
        TokenCache::new(&path, "other")
            .store(&Secret::new("rt-other"), None)
            .expect("store other");
        assert_eq!(start(None).as_deref(), Some("rt-rotated"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_cache_is_reported_without_its_content() {
        let dir = tempfile_dir();
        let path = dir.join("tokens.json");
        std::fs::write(&path, "{\"tokens\": \"secret-looking-text").expect("write");
        let e = TokenCache::new(&path, "k")
            .initial_refresh_token(None)
            .expect_err("damaged");
        assert!(
            e.contains("auth login") && !e.contains("secret-looking"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "smtpkit-token-cache-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
