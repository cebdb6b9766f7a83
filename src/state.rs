//! The state directory: what siglipd learns or is told at run time and must still know after a
//! restart (controls set over MQTT or the page, what it published to the broker).
//!
//! One directory (`[state] dir`, systemd's `StateDirectory=`), one JSON file per kind of
//! state. Every file carries `format` and `version`; it is written atomically (temporary file
//! in the same directory, fsync, rename, fsync of the directory), so a crash or power cut
//! leaves the old file or the new one, never half of one. A file that cannot be parsed, or has
//! another version, is moved aside (`<name>.unreadable`) with a warning and the defaults apply:
//! state is never a reason not to start.
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::warn;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state directory {dir} cannot be created: {cause} (set [state] dir to a writable directory, or run under the systemd unit, which has StateDirectory=siglipd)")]
    Create { dir: PathBuf, cause: std::io::Error },
    #[error("state directory {dir} is not writable: {cause} (run-time changes would be lost at restart: fix its owner/permissions or set [state] dir)")]
    NotWritable { dir: PathBuf, cause: std::io::Error },
    #[error("cannot write {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("cannot encode {name}: {cause}")]
    Encode { name: String, cause: serde_json::Error },
    #[error("state directory {dir} is in use by another siglipd process: give each daemon its own [state] dir (two daemons sharing one would overwrite each other's controls and remove each other's Home Assistant devices)")]
    InUse { dir: PathBuf },
}

/// The `format`/`version` header every state file starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
}

/// A state file's contents: a [`Header`] plus the body, flattened into one JSON object.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    #[serde(flatten)]
    header: Header,
    #[serde(flatten)]
    body: T,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// An exclusive `flock` on `<dir>/lock`, held while any clone lives: two daemons sharing
    /// one state directory would overwrite each other's controls and remove each other's
    /// Home Assistant devices.
    /// None: opened read-only ([`StateDir::open_read_only`]), no lock taken, nothing written.
    lock: Option<std::sync::Arc<File>>,
}

impl StateDir {
    /// Creates the directory if needed (mode 0700 for a new one: it holds thumbnails and
    /// settings) and proves it writable.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|cause| StateError::Create { dir: dir.into(), cause })?;
        }
        let probe = dir.join(".write-test");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(|cause| StateError::NotWritable { dir: dir.into(), cause })?;
        let _ = fs::remove_file(&probe);
        let lock = File::create(dir.join("lock")).map_err(|cause| StateError::NotWritable { dir: dir.into(), cause })?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; released when the last clone drops the file
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StateError::InUse { dir: dir.into() });
        }
        Ok(Self { dir: dir.into(), lock: Some(std::sync::Arc::new(lock)) })
    }

    /// Opens an existing directory to read only, beside a daemon that may hold its lock
    /// (`siglipd examples list`): files are replaced atomically, so reads see whole files.
    /// Unreadable files are reported, not moved aside; writes fail.
    /// A directory that does not exist yet reads as empty.
    pub fn open_read_only(dir: &Path) -> Self {
        Self { dir: dir.into(), lock: None }
    }

    /// Opened with [`StateDir::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.lock.is_none()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads `name` if it exists and has this `format` and `version`. Anything else (corrupt,
    /// another version) is moved aside with a warning and reads as `None`.
    pub fn read<T: DeserializeOwned>(&self, name: &str, format: &str, version: u32) -> Option<T> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!("cannot read {}: {e} (using the defaults)", path.display());
                return None;
            }
        };
        let problem = match serde_json::from_slice::<Header>(&bytes) {
            Ok(h) if h.format == format && h.version == version => match serde_json::from_slice::<Envelope<T>>(&bytes) {
                Ok(e) => return Some(e.body),
                Err(e) => format!("cannot be parsed: {e}"),
            },
            Ok(h) => format!("is {} version {}, this siglipd reads {format} version {version}", h.format, h.version),
            Err(e) => format!("cannot be parsed: {e}"),
        };
        if self.lock.is_none() {
            warn!("state file {} {problem}", path.display());
            return None;
        }
        let aside = self.dir.join(format!("{name}.unreadable"));
        let _ = fs::rename(&path, &aside);
        warn!("state file {} {problem}; moved to {} and using the defaults", path.display(), aside.display());
        None
    }

    /// Writes `name` atomically.
    pub fn write<T: Serialize>(&self, name: &str, format: &str, version: u32, body: &T) -> Result<(), StateError> {
        if self.lock.is_none() {
            let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "opened read-only");
            return Err(StateError::Write { path: self.dir.join(name), cause });
        }
        let env = Envelope { header: Header { format: format.into(), version }, body };
        let bytes = serde_json::to_vec_pretty(&env).map_err(|cause| StateError::Encode { name: name.into(), cause })?;
        write_atomic(&self.dir.join(name), &bytes)
    }
}

/// Temporary file in the same directory → fsync → rename over `path` → fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |cause| StateError::Write { path: path.into(), cause };
    // a bare file name has the parent "": the current directory
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("state"), std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        n: u32,
    }

    #[test]
    fn round_trip_versioned_and_atomic() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("a/b")).unwrap();
        assert_eq!(s.read::<Body>("x.json", "t", 1), None);
        s.write("x.json", "t", 1, &Body { n: 7 }).unwrap();
        assert_eq!(s.read::<Body>("x.json", "t", 1), Some(Body { n: 7 }));
        let mut names: Vec<_> = fs::read_dir(s.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("lock"), std::ffi::OsString::from("x.json")], "no temporary file left behind");
        // another version is not trusted, and is kept aside for a human
        assert_eq!(s.read::<Body>("x.json", "t", 2), None);
        assert!(s.path().join("x.json.unreadable").exists());
    }

    #[test]
    fn one_process_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let a = StateDir::open(d.path()).unwrap();
        let e = StateDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another siglipd"), "{e}");
        drop(a);
        StateDir::open(d.path()).expect("free again once the first is gone");
    }

    #[test]
    fn corrupt_files_are_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path()).unwrap();
        fs::write(d.path().join("x.json"), b"{\"format\":\"t\",\"vers").unwrap();
        assert_eq!(s.read::<Body>("x.json", "t", 1), None);
        assert!(!d.path().join("x.json").exists());
    }

    #[test]
    fn a_directory_that_cannot_exist_says_what_to_do() {
        // works as root too: a regular file where a parent directory should be
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("file"), b"x").unwrap();
        let e = StateDir::open(&d.path().join("file/state")).unwrap_err().to_string();
        assert!(e.contains("cannot be created") && e.contains("[state] dir") && e.contains("StateDirectory="), "{e}");
    }

    #[test]
    fn unwritable_directory_says_what_to_do() {
        if unsafe { libc::geteuid() } == 0 {
            return; // root writes anywhere
        }
        let d = tempfile::tempdir().unwrap();
        let ro = d.path().join("ro");
        fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let e = StateDir::open(&ro).unwrap_err().to_string();
        assert!(e.contains("not writable") && e.contains("[state] dir"), "{e}");
    }
}
