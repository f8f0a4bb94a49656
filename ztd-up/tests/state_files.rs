//! The state files against the real tools: a deploy leaves `.ztd/` its owner's alone (0700,
//! files 0600), and a symlinked `.ztd/state.json` is a state error (exit 5, one line) that
//! changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ztd_core::report::ErrorReport;
use ztd_testkit::{TestStack, require_engine, testapp_image};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn one_service(tag: &str) -> TestStack {
    let stack = TestStack::new(tag);
    let app = stack.service("app");
    stack.write_compose(&format!(
        "services:\n  {app}:\n    image: {}\n",
        testapp_image()
    ));
    stack
}

#[test]
fn a_deploy_keeps_its_state_to_its_owner() {
    require_engine!();
    let stack = one_service("st-modes");
    let ztd = stack.dir.join(".ztd");
    std::fs::create_dir(&ztd).unwrap();
    std::fs::set_permissions(&ztd, std::fs::Permissions::from_mode(0o755)).unwrap();
    stack.run("ztd-up", &[]).expect_code(0);
    assert_eq!(mode(&ztd), 0o700, "tightened");
    for file in ["state.json", "history.jsonl", "lock"] {
        assert_eq!(mode(&ztd.join(file)), 0o600, "{file}");
    }
}

#[test]
fn a_symlinked_state_file_is_a_state_error_that_changes_nothing() {
    require_engine!();
    let stack = one_service("st-link");
    let ztd = stack.dir.join(".ztd");
    std::fs::create_dir(&ztd).unwrap();
    std::fs::write(stack.dir.join("elsewhere.json"), "{}\n").unwrap();
    std::os::unix::fs::symlink("../elsewhere.json", ztd.join("state.json")).unwrap();
    let before = stack.snapshot();
    for tool in ["ztd-up", "ztd-detect", "ztd-rollback"] {
        let out = stack.run(tool, &[]);
        out.expect_code(5).expect_one_line_error("symbolic link");
        let report: ErrorReport =
            serde_json::from_value(out.json.clone()).expect("an error report");
        assert!(!report.ok, "{tool}");
        assert_eq!(report.error.kind, "state", "{tool}");
        assert_eq!(stack.snapshot(), before, "{tool} changed nothing");
    }
    assert!(
        std::fs::symlink_metadata(ztd.join("state.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
