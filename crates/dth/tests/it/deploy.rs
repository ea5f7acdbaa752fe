//! The deployment files under `deploy/` through the checkers `scripts/install-peers` puts in
//! `.tools/deploy` (docs/deploy.md): hadolint on the Containerfile; kubernetes-validate (strict)
//! on every Kubernetes manifest, with the KEDA and Prometheus Operator resources checked against
//! their CRD schemas by `deploy/checks/validate_crds.py` (kubernetes-validate has no schemas for
//! them); `kubectl kustomize` when kubectl is on this machine, its output checked the same way;
//! yamllint on every YAML file; cfn-lint on the CloudFormation template in each partition;
//! `systemd-analyze verify` on the units when systemd-analyze is here (it needs no running
//! systemd: the units are verified inside a scratch root). Every flag and `DTH_*` variable the
//! files give `dth serve` and `dth worker` must be one the binary knows. Each check fails with the
//! tool's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The kinds `validate_crds.py` checks; kubernetes-validate has no schema for them.
const CUSTOM_KINDS: [&str; 3] = ["ScaledObject", "TriggerAuthentication", "ServiceMonitor"];
/// Environment variables dth reads that are no flag's `[env: …]` (secrets are never flags).
const SECRET_VARS: [&str; 5] = [
    "DTH_MASTER_KEY",
    "DTH_METRICS_TOKEN",
    "DTH_OIDC_CLIENT_SECRET",
    "DTH_API_TOKEN",
    "DTH_SMTP_PASSWORD",
];

fn deploy_dir() -> PathBuf {
    dth_testkit::workspace_root().join("deploy")
}

/// A checker of `.tools/deploy/bin`, or a panic saying how to install it.
fn checker(name: &str) -> PathBuf {
    let path = dth_testkit::tools_dir().join("deploy/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing; run scripts/install-peers",
        path.display()
    );
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a checker and fails the test with its output when it fails.
fn check(what: &str, cmd: &mut Command) -> String {
    let out = run(cmd);
    let said = text(&out);
    assert!(out.status.success(), "{what} failed:\n{said}");
    said
}

/// The Kubernetes manifests of deploy/k8s (not the kustomization itself).
fn manifests() -> Vec<PathBuf> {
    let dir = deploy_dir().join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "manifests in {}: {files:?}",
        dir.display()
    );
    files
}

/// kubernetes-validate (strict) and validate_crds.py on `files`: every resource valid, and every
/// custom resource checked by its CRD schema.
fn validate_manifests(files: &[PathBuf]) {
    let said = check(
        "kubernetes-validate --strict",
        Command::new(checker("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .args(files),
    );
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        let custom = CUSTOM_KINDS
            .iter()
            .any(|k| line.contains(&format!("Couldn't find schema for kind {k} ")));
        assert!(
            custom,
            "kubernetes-validate said more than that the custom kinds have no schema:\n{said}"
        );
    }
    let crds = deploy_dir().join("checks/validate_crds.py");
    let said = check(
        "validate_crds.py",
        Command::new(checker("python")).arg(&crds).args(files),
    );
    for kind in CUSTOM_KINDS {
        assert!(
            said.contains(&format!(": {kind}/")) && !said.contains("unknown field"),
            "{kind} not validated:\n{said}"
        );
    }
}

#[test]
fn containerfile_passes_hadolint() {
    let file = deploy_dir().join("container/Containerfile");
    let said = check(
        "hadolint",
        Command::new(checker("hadolint"))
            .arg("--no-color")
            .arg(&file),
    );
    assert!(said.trim().is_empty(), "hadolint:\n{said}");
}

#[test]
fn kubernetes_manifests_are_valid() {
    validate_manifests(&manifests());
}

#[test]
fn kustomize_renders_valid_manifests() {
    let Ok(out) = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("kubectl is not installed here: the kustomize rendering is not checked");
        return;
    };
    assert!(out.status.success(), "kubectl version:\n{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("k8s");
    std::fs::create_dir(&k8s).unwrap();
    for entry in std::fs::read_dir(deploy_dir().join("k8s")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, k8s.join(path.file_name().unwrap())).unwrap();
    }
    // dth.env from its example, every key given a value of the right form.
    let example = std::fs::read_to_string(k8s.join("dth.env.example")).unwrap();
    let env: String = example
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with('='))
        .map(|l| match l {
            "DTH_MASTER_KEY=" => format!("{l}{}\n", "0f".repeat(32)),
            "DTH_STORE=" => format!("{l}postgres://dth@db.example.com:5432/dth\n"),
            _ => format!("{l}test-value\n"),
        })
        .collect();
    assert_eq!(env.lines().count(), 3, "{example}");
    std::fs::write(k8s.join("dth.env"), env).unwrap();
    let out = run(Command::new("kubectl").arg("kustomize").arg(&k8s));
    assert!(out.status.success(), "kubectl kustomize:\n{}", text(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    for want in [
        "kind: Secret",
        "name: dth\n",
        "kind: ScaledObject",
        "image: registry.example.com/dth:0.1.0",
        "namespace: dth",
    ] {
        assert!(rendered.contains(want), "no {want:?} in:\n{rendered}");
    }
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    validate_manifests(&[file]);
}

#[test]
fn yaml_passes_yamllint() {
    let config = deploy_dir().join("checks/yamllint.yaml");
    check(
        "yamllint",
        Command::new(checker("yamllint"))
            .args(["--strict", "--format", "parsable", "--config-file"])
            .arg(&config)
            .arg(deploy_dir()),
    );
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let template = deploy_dir().join("aws/dth.yaml");
    let said = check(
        "cfn-lint",
        Command::new(checker("cfn-lint"))
            .args([
                "--regions",
                "us-east-1",
                "eu-west-1",
                "cn-north-1",
                "cn-northwest-1",
                "us-gov-west-1",
                "--",
            ])
            .arg(&template),
    );
    assert!(said.trim().is_empty(), "cfn-lint:\n{said}");
}

#[test]
fn systemd_units_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here (Debian package systemd): not checked");
        return;
    };
    assert!(out.status.success(), "systemd-analyze:\n{}", text(&out));
    // A scratch root: the system's own units (sysinit.target and the rest), ours, and an
    // executable /usr/local/bin/dth (verify checks that ExecStart's command can be run).
    let root = tempfile::tempdir().unwrap();
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the system's units (sysinit.target) in /usr/lib/systemd/system");
    copy_dir(system_units, &root.path().join("usr/lib/systemd/system"));
    let ours = root.path().join("etc/systemd/system");
    copy_dir(&deploy_dir().join("systemd"), &ours);
    let bin = root.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let launcher = format!("#!/bin/sh\nexec {} \"$@\"\n", env!("CARGO_BIN_EXE_dth"));
    std::fs::write(bin.join("dth"), launcher).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("dth"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(["dth.service", "dth-worker@1.service"]));
    let said = text(&out);
    // verify reports a directive it ignores on stderr but still exits 0: both must be clean.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, dest).unwrap();
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn deploy_files_use_flags_and_variables_dth_knows() {
    let help = |cmd: &str| {
        let out = run(Command::new(env!("CARGO_BIN_EXE_dth")).args([cmd, "--help"]));
        assert!(out.status.success(), "dth {cmd} --help:\n{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let known = format!("{}\n{}", help("serve"), help("worker"));
    let files = [
        "container/Containerfile",
        "k8s/hub.yaml",
        "k8s/worker.yaml",
        "k8s/dth.env.example",
        "systemd/dth.service",
        "systemd/dth-worker@.service",
        "aws/dth.yaml",
    ];
    // The lines that run dth: the image's CMD, the pods' args, the units' ExecStart, the tasks'
    // Command.
    let runs_dth = |line: &str| {
        let line = line.trim_start();
        ["CMD [", "args:", "ExecStart=", "Command: ["]
            .iter()
            .any(|p| line.starts_with(p))
    };
    let words = |line: &str| -> Vec<String> {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(str::to_string)
            .collect()
    };
    let mut flags = 0;
    for name in files {
        let body = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
        for line in body.lines() {
            for word in words(line) {
                if runs_dth(line)
                    && let Some(flag) = word.strip_prefix("--")
                {
                    assert!(
                        known.contains(&format!("--{flag} "))
                            || known.contains(&format!("--{flag}\n")),
                        "{name}: dth has no flag --{flag}: {line}"
                    );
                    flags += 1;
                }
                if word.len() > 4 && word.starts_with("DTH_") && !SECRET_VARS.contains(&&*word) {
                    assert!(
                        known.contains(&format!("[env: {word}="))
                            || known.contains(&format!("[env: {word}]")),
                        "{name}: dth reads no variable {word}: {line}"
                    );
                }
            }
        }
    }
    assert!(flags >= 6, "only {flags} flags found in the deploy files");
}
