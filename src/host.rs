//! The host the daemon runs on: descriptor limits and paths as users write them.
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

/// The soft limit on open file descriptors.
pub fn fd_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and nothing else
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        #[allow(clippy::unnecessary_cast)] // rlim_t is 32-bit on armv7
        let n = r.rlim_cur as u64;
        n
    } else {
        1024
    }
}

/// Raises the soft descriptor limit to the hard one (at most 65536), as services started by
/// systemd are expected to do themselves: its default soft limit is 1024, kept low only for
/// programs that still use select(2) (systemd.exec(5), LimitNOFILE=).
pub fn raise_fd_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let want = r.rlim_max.min(65_536);
        if r.rlim_cur >= want {
            return;
        }
        let old = r.rlim_cur;
        r.rlim_cur = want;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
            debug!(from = old, to = want, "raised the open-files limit");
        } else {
            warn!(limit = old, "cannot raise the open-files limit (LimitNOFILE=)");
        }
    }
}

/// The system clock as Unix seconds (0 before 1970). Published timestamps go through
/// `daemon::schedule::WallClock`, which never goes backwards.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A path as users write it in a config file: `~/…` is the home directory (`$HOME`).
pub fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(rest),
            None => p.to_path_buf(),
        },
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_is_home() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_home(Path::new("~/models/x")), Path::new(&home).join("models/x"));
        assert_eq!(expand_home(Path::new("/abs/~x")), Path::new("/abs/~x"));
        assert_eq!(expand_home(Path::new("rel")), Path::new("rel"));
    }

    #[test]
    fn raising_keeps_a_usable_limit() {
        raise_fd_limit();
        assert!(fd_limit() >= 256);
    }
}
