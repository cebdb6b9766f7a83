//! The systemd unit: `systemd-analyze verify` accepts it without a single warning, its
//! hardening scores well in `systemd-analyze security`, and it agrees with the binary (exit
//! code 78 not restarted, check-config before start, Type=notify with a watchdog).
use std::path::Path;
use std::process::Command;

fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/siglipd.service")).unwrap();
    let path = dir.join("siglipd.service");
    std::fs::write(&path, unit.replace("/usr/bin/siglipd", env!("CARGO_BIN_EXE_siglipd"))).unwrap();
    path
}

#[test]
fn unit_verifies_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed for this test");
    let err = String::from_utf8_lossy(&o.stderr);
    // verify exits 0 on "ignoring" warnings: any output at all is a failure here
    assert!(o.status.success() && err.trim().is_empty() && o.stdout.is_empty(), "{err}");

    let o = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for siglipd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(level <= 2.5, "exposure {level} (\"OK\" is below 3):\n{out}");
}

#[test]
fn unit_agrees_with_the_binary() {
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/siglipd.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    assert!(has("Type=notify"));
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(has(&format!("RestartPreventExitStatus={}", siglipd::app::EXIT_CONFIG)));
    assert!(has("Restart=on-failure"));
    // SIGHUP reloads (the daemon handles it; see tests/daemon.rs), state goes to StateDirectory
    assert!(has("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(has("StateDirectory=siglipd"));
    assert!(unit.contains("ExecStartPre=/usr/bin/siglipd -q check-config --config"));

    // a bad config makes check-config exit with that very code
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[model]\nbundle = \"/nonexistent\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_siglipd")).args(["-q", "check-config", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(siglipd::app::EXIT_CONFIG as i32), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn shipped_service_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/siglipd.toml");
    let c = siglipd::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.model.bundle, Path::new("/var/lib/siglipd/models/siglip-base-patch16-224"));
    assert!(c.http.is_some() && c.mqtt.is_some());
}

/// The unit's `Documentation=man:siglipd(1)` names a page that exists: `siglipd man` writes it
/// (and one per command) from the clap definitions, and `man` can render it.
#[test]
fn man_pages_are_generated_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_siglipd")).args(["man", "--dir"]).arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for page in ["siglipd.1", "siglipd-run.1", "siglipd-classify.1", "siglipd-check-config.1", "siglipd-serve.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not a man page");
    }
    let root = std::fs::read_to_string(dir.path().join("siglipd.1")).unwrap();
    assert!(root.contains("classify") && root.contains("check\\-config"), "{root}");
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/siglipd.service")).unwrap();
    assert!(unit.contains("Documentation=man:siglipd(1)"));
}
