//! `make install`, `make uninstall` and `make deb` lay out exactly what they promise: the six
//! tools, man pages and completions made from the tools' own flags, the scripts and the example,
//! and take all of it away again.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ztd_testkit::bin;

const TOOLS: [&str; 6] = [
    "ztd-detect",
    "ztd-up",
    "ztd-health",
    "ztd-switch",
    "ztd-rollback",
    "ztd-monitor",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn debug_bins() -> PathBuf {
    bin("ztd-detect").parent().expect("bin dir").to_path_buf()
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn install_lays_out_tools_man_pages_and_completions_and_uninstall_takes_them_away() {
    let prefix = std::env::temp_dir().join(format!("ztd-install-{}", std::process::id()));
    let prefix_text = prefix.to_string_lossy().to_string();
    let bins = debug_bins().to_string_lossy().to_string();
    let (ok, text) = run(
        "bash",
        &[
            "mk/install.sh",
            "install",
            "--prefix",
            &prefix_text,
            "--bin-dir",
            &bins,
        ],
    );
    assert!(ok, "{text}");
    for tool in TOOLS {
        let installed = prefix.join("bin").join(tool);
        let (ok, version) = run(&installed.to_string_lossy(), &["--version"]);
        assert!(ok && version.contains(tool), "{tool}: {version}");
        let man = std::fs::read_to_string(prefix.join(format!("share/man/man1/{tool}.1")))
            .expect("man page");
        assert!(man.contains(&format!("\n.TH {tool} 1 ")), "{man}");
        assert!(
            man.contains("Exit codes"),
            "{tool}'s man page has its exit codes"
        );
        let bash = prefix.join(format!("share/bash-completion/completions/{tool}"));
        let (ok, complete) = run(
            "bash",
            &[
                "-c",
                &format!("source {} && complete -p {tool}", bash.display()),
            ],
        );
        assert!(
            ok && complete.contains(tool),
            "bash completion of {tool}: {complete}"
        );
        let zsh = std::fs::read_to_string(prefix.join(format!("share/zsh/site-functions/_{tool}")))
            .expect("zsh completion");
        assert!(zsh.starts_with(&format!("#compdef {tool}")), "{zsh}");
        let fish = std::fs::read_to_string(
            prefix.join(format!("share/fish/vendor_completions.d/{tool}.fish")),
        )
        .expect("fish completion");
        assert!(fish.contains(&format!("complete -c {tool}")), "{fish}");
    }
    assert!(
        prefix
            .join("share/ztd/scripts/zero-downtime-deploy.sh")
            .is_file()
    );
    assert!(
        prefix
            .join("share/ztd/examples/trading-bot/compose.yaml")
            .is_file()
    );

    let (ok, text) = run(
        "bash",
        &["mk/install.sh", "uninstall", "--prefix", &prefix_text],
    );
    assert!(ok, "{text}");
    assert_eq!(
        files_under(&prefix),
        Vec::<PathBuf>::new(),
        "uninstall leaves nothing"
    );
    std::fs::remove_dir_all(&prefix).ok();
}

#[test]
fn the_debian_package_holds_the_tools_and_installs_and_removes_cleanly() {
    if !run("sh", &["-c", "command -v dpkg-deb"]).0 {
        eprintln!("skipped: dpkg-deb is not installed (a Debian machine builds the package)");
        return;
    }
    let out = std::env::temp_dir().join(format!("ztd-deb-{}", std::process::id()));
    let bins = debug_bins().to_string_lossy().to_string();
    let (ok, text) = run(
        "bash",
        &[
            "mk/deb.sh",
            "--bin-dir",
            &bins,
            "--out",
            &out.to_string_lossy(),
            "--uncompressed",
        ],
    );
    assert!(ok, "{text}");
    let deb = text
        .lines()
        .last()
        .expect("the package's path")
        .trim()
        .to_string();
    let (ok, contents) = run("dpkg-deb", &["--contents", &deb]);
    assert!(ok, "{contents}");
    for tool in TOOLS {
        assert!(
            contents.contains(&format!("./usr/bin/{tool}\n")),
            "{tool} in {contents}"
        );
        assert!(contents.contains(&format!("./usr/share/man/man1/{tool}.1.gz")));
    }
    assert!(contents.contains("./usr/share/doc/ztd/copyright"));
    let (_, info) = run("dpkg-deb", &["--field", &deb, "Package", "Version"]);
    assert!(info.contains("Package: ztd"), "{info}");

    // Install and remove it for real where this test may: as root, with no ztd installed.
    let root = run("id", &["-u"]).1.trim() == "0";
    let installed_before = run("dpkg", &["-s", "ztd"]).0;
    if root && !installed_before {
        let (ok, text) = run("dpkg", &["-i", &deb]);
        assert!(ok, "dpkg -i: {text}");
        let (ok, version) = run("/usr/bin/ztd-switch", &["--version"]);
        let (removed, text) = run("dpkg", &["-r", "ztd"]);
        assert!(ok && version.contains("ztd-switch"), "{version}");
        assert!(removed, "dpkg -r: {text}");
        for tool in TOOLS {
            assert!(
                !Path::new("/usr/bin").join(tool).exists(),
                "{tool} left behind"
            );
        }
        assert!(
            !Path::new("/usr/share/ztd").exists(),
            "/usr/share/ztd left behind"
        );
    } else {
        eprintln!("not installed for real: needs root and no ztd package installed already");
    }
    std::fs::remove_dir_all(&out).ok();
}
