//! Shared by the end-to-end tests: the real binary, a source registry filled with synthetic
//! images by skopeo (standing in for quay.io through a mirror), and an app that uses them.

#![allow(dead_code)]

use std::process::{Command, Output};

use super::synth::{self, ImageSpec, SynthImage};
use super::TestRegistry;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kots-bundle"))
}

/// Runs `cmd` with `input` on its standard input (a password for `--registry-password-stdin`),
/// capturing its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A source registry holding `quay.io/org/{multi:1, a:v1, b:v1}`.
pub struct Source {
    pub reg: TestRegistry,
    pub layout: tempfile::TempDir,
    pub images: Vec<SynthImage>,
}

impl Source {
    pub fn start(specs: Vec<ImageSpec>) -> Source {
        super::require_tools(&["skopeo"]);
        let reg = TestRegistry::start();
        let layout = tempfile::tempdir().unwrap();
        let images = synth::write_layout(layout.path(), &specs);
        for img in &images {
            synth::skopeo_push(
                layout.path(),
                &img.name,
                &format!("{}/quay.io/org/{}", reg.addr, img.name),
            );
        }
        Source {
            reg,
            layout,
            images,
        }
    }

    pub fn default_specs() -> Vec<ImageSpec> {
        let mut multi = ImageSpec::new("multi:1", 1);
        multi.multiarch = true;
        vec![multi, ImageSpec::new("a:v1", 2), ImageSpec::new("b:v1", 3)]
    }

    pub fn mirror(&self) -> String {
        format!("quay.io={}/quay.io", self.reg.addr)
    }

    pub fn image(&self, name: &str) -> &SynthImage {
        self.images.iter().find(|i| i.name == name).unwrap()
    }
}

/// An app whose Deployment uses the three images, `a` pinned by digest.
pub fn app_dir(src: &Source) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let a = &src.image("a:v1").digest;
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      initContainers:\n      - {{name: init, image: \"quay.io/org/a@{a}\"}}\n      containers:\n      - {{name: m, image: quay.io/org/multi:1}}\n      - {{name: b, image: quay.io/org/b:v1}}\n"
        ),
    )
    .unwrap();
    dir
}

/// An app whose Deployment pulls `quay.io/org/a` pinned by digest (an init container) and
/// `quay.io/org/<image>` for each of `images` (a container named after it).
pub fn app_dir_using(src: &Source, images: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let a = &src.image("a:v1").digest;
    let containers: String = images
        .iter()
        .map(|i| {
            let name = i.split(':').next().unwrap();
            format!("      - {{name: {name}, image: quay.io/org/{i}}}\n")
        })
        .collect();
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app}}\nspec:\n  template:\n    spec:\n      initContainers:\n      - {{name: init, image: \"quay.io/org/a@{a}\"}}\n      containers:\n{containers}"
        ),
    )
    .unwrap();
    dir
}

impl Source {
    /// Pushes one more synthetic image (e.g. a new version) as `quay.io/org/<name>`.
    pub fn add(&mut self, spec: ImageSpec) -> SynthImage {
        let dir = tempfile::tempdir().unwrap();
        let img = synth::write_layout(dir.path(), &[spec]).pop().unwrap();
        synth::skopeo_push(
            dir.path(),
            &img.name,
            &format!("{}/quay.io/org/{}", self.reg.addr, img.name),
        );
        self.images.push(img.clone());
        img
    }
}

/// Every `image:` value `KUBECTL kustomize DIR` renders, sorted and unique.
pub fn rendered_images(kubectl: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let out = ok(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(dir)
            .output()
            .unwrap(),
        &format!("{} kustomize {}", kubectl.display(), dir.display()),
    );
    let mut images: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("image: "))
        .map(|s| s.trim_matches('"').to_string())
        .collect();
    images.sort();
    images.dedup();
    images
}

/// `kots-bundle export APP -o OUT`, fetching through `src`'s mirror, with `extra` flags.
pub fn export_cmd(
    src: &Source,
    app: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Command {
    let mut cmd = bin();
    cmd.arg("export")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--registry-mirror", &src.mirror()])
        .args(extra);
    cmd
}

/// `kots-bundle import ARCHIVE` into `reg` under `ns`, writing the app directory `dir`.
pub fn import_cmd(
    reg: &TestRegistry,
    ns: &str,
    archive: &std::path::Path,
    dir: &std::path::Path,
) -> Command {
    let mut cmd = bin();
    cmd.arg("import")
        .arg(archive)
        .args(["--registry-endpoint", &reg.addr, "--image-namespace", ns])
        .arg("--dest")
        .arg(dir);
    cmd
}
