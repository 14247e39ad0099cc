//! Flags for rendering an app (KOTS templates, Config, License, Helm charts): shared by
//! `images`, `export`, `import`, `pull` and `template`, so each renders with the same inputs.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::license::License;
use crate::render::config::ConfigValues;
use crate::render::{helm, Charts, Inputs};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct RenderArgs {
    /// The operator's answers to the app's Config (`kind: ConfigValues`,
    /// spec.values.<item>.value). On an update they replace the saved answers they name and
    /// keep the rest.
    #[arg(long, value_name = "FILE")]
    pub config_values: Option<PathBuf>,
    /// The customer's KOTS license (`kind: License`): for `replicated://APP`, and for
    /// templates that read it (LicenseFieldValue, LicenseDockerCfg).
    #[arg(long, value_name = "FILE")]
    pub license_file: Option<PathBuf>,
    /// The namespace the app deploys to (the `Namespace` template function, and helm's
    /// --namespace for charts whose HelmChart names none). Default: `default`.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The helm binary that renders the app's charts (v3 or v4). Default: `helm` on PATH.
    #[arg(long, value_name = "PATH", conflicts_with = "no_helm")]
    pub helm: Option<PathBuf>,
    /// Do not render Helm charts: their images are read from chart values with heuristics
    /// (complete references only; images only templates compute are missed), and nothing of
    /// the charts deploys.
    #[arg(long)]
    pub no_helm: bool,
}

impl RenderArgs {
    /// The render inputs these flags give; the command fills in mode, app, registry and
    /// saved values.
    pub fn inputs(&self, mode: helm::Mode, app: &str) -> anyhow::Result<Inputs> {
        let answers = match &self.config_values {
            Some(p) => Some(
                ConfigValues::load(p)
                    .with_context(|| format!("--config-values {}", p.display()))?,
            ),
            None => None,
        };
        Ok(Inputs {
            mode,
            app: app.to_string(),
            version: None,
            answers,
            saved: None,
            license: self.license()?.map(Arc::new),
            local_registry: None,
            namespace: self.namespace.clone(),
            image_pull_secret: None,
            charts: if self.no_helm {
                Charts::NotRendered
            } else {
                Charts::Helm(self.helm.clone())
            },
        })
    }

    pub fn license(&self) -> anyhow::Result<Option<License>> {
        match &self.license_file {
            Some(p) => Ok(Some(License::load(p)?)),
            None => Ok(None),
        }
    }
}

/// Renders `upstream` as export and `images` see it: no private registry yet, the
/// HelmCharts' airgap values, required config items allowed to be empty.
pub fn for_discovery(
    upstream: &crate::upstream::Upstream,
    args: &RenderArgs,
) -> anyhow::Result<crate::render::Rendered> {
    let app = upstream.name.clone().unwrap_or_else(|| "app".to_string());
    let mut inputs = args.inputs(helm::Mode::Airgap, &app)?;
    inputs.version = upstream.version.clone();
    crate::render::render(&upstream.files, &inputs)
        .with_context(|| format!("rendering {}", upstream.source))
}

/// What `images` and `template` were pointed at.
pub enum AppSource {
    /// An upstream (directory, tarball, single manifest file, https://, replicated://).
    Upstream(crate::upstream::Upstream),
    /// An app directory kots-bundle wrote: its `upstream/`, and its state.
    AppDir(crate::upstream::Upstream, std::path::PathBuf),
    /// An `.airgap` archive: its path (read by the caller as it needs).
    Archive(std::path::PathBuf),
}

/// Reads `source` as an app directory, an `.airgap` archive, a single manifest file, or an
/// upstream as `export` takes it.
pub async fn load_app(
    source: &str,
    upstream_args: &super::upstream::UpstreamArgs,
    license_file: Option<&std::path::Path>,
) -> anyhow::Result<AppSource> {
    use crate::upstream::{ManifestFile, Upstream};
    let path = std::path::Path::new(source);
    if crate::overlay::is_app_dir(path) {
        let mut up = upstream_args
            .load(&path.join("upstream").display().to_string(), license_file)
            .await?;
        if let Some(state) = crate::overlay::read_state(path)? {
            up.name = Some(state.app);
            up.version = state.version;
        }
        return Ok(AppSource::AppDir(up, path.to_path_buf()));
    }
    let lower = source.to_ascii_lowercase();
    if path.is_file() && crate::yaml::Format::of(&lower).is_some() {
        let data = std::fs::read(path).with_context(|| format!("{source}: cannot read"))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(AppSource::Upstream(Upstream {
            source: source.to_string(),
            name: None,
            version: None,
            files: vec![ManifestFile {
                path: file_name,
                data,
            }],
            release: None,
        }));
    }
    if path.is_file() && !crate::upstream::is_tarball_name(&lower) {
        return Ok(AppSource::Archive(path.to_path_buf()));
    }
    Ok(AppSource::Upstream(
        upstream_args.load(source, license_file).await?,
    ))
}
