//! The app directory kept in the private registry, so an update can run from any host in
//! the network: `import` pushes it as an OCI artifact, `download` rebuilds it.
//!
//! The artifact, at `REGISTRY/[prefix/][NS/]<app>-app:<version>` and `:latest`:
//! - an OCI image manifest with `artifactType` [`ARTIFACT_TYPE`], the empty config
//!   (`application/vnd.oci.empty.v1+json`, `{}`), and annotations naming the app and version;
//! - one layer, [`LAYER_TYPE`]: a gzip'd tar of regular files, `release/...` (the current
//!   release: upstream, base, the generated midstream, state.json, config-values.yaml) and
//!   `operator/...` (the operator's files: overlays/midstream/kustomization.yaml,
//!   overlays/downstream/, anything else of theirs), mode 0600 for owner-only files.
//!
//! What it holds is what the directory holds ([`crate::overlay::collect`]), so the saved
//! config values, passwords and generated secrets included, and base's rendered Secrets; not
//! the registry credentials `--write-pull-secret` writes. Reading the repository is reading
//! the app's secrets.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::digest::Digest;
use crate::manifest::OCI_MANIFEST;
use crate::overlay::{self, Carried, CarriedFile};
use crate::registry::Client;
use crate::rewrite::Endpoint;

/// `artifactType` of the stored app directory.
pub const ARTIFACT_TYPE: &str = "application/vnd.kots-bundle.app.v1";
/// Media type of its one layer.
pub const LAYER_TYPE: &str = "application/vnd.kots-bundle.app.layer.v1.tar+gzip";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
const RELEASE: &str = "release/";
const OPERATOR: &str = "operator/";
/// Caps for what `download` reads: the layer as stored, the files unpacked, their count.
const MAX_LAYER: u64 = 256 * 1024 * 1024;
const MAX_UNPACKED: u64 = 1024 * 1024 * 1024;
const MAX_FILES: usize = 200_000;

/// `[prefix/][NS/]<app>-app`: the artifact's repository beside the app's images.
pub fn repository(endpoint: &Endpoint, namespace: Option<&str>, app: &str) -> String {
    let mut repo = String::new();
    for part in [endpoint.prefix.as_deref(), namespace]
        .into_iter()
        .flatten()
    {
        repo.push_str(part);
        repo.push('/');
    }
    repo.push_str(app);
    repo.push_str("-app");
    repo
}

/// The tag of a version: the version where the tag grammar allows it, other characters
/// (`+` of semver build metadata, say) as `_`; `None` for no version.
pub fn version_tag(version: Option<&str>) -> Option<String> {
    let v = version?.trim();
    if v.is_empty() {
        return None;
    }
    let mut tag: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if tag.starts_with(['.', '-']) {
        tag.insert(0, 'v');
    }
    tag.truncate(128);
    Some(tag)
}

/// The layer: `release/` and `operator/` files in a gzip'd tar, in a fixed order with fixed
/// metadata (the same directory gives the same digest).
pub fn pack(carried: &Carried) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (prefix, files) in [(RELEASE, &carried.release), (OPERATOR, &carried.operator)] {
        for f in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(f.data.len() as u64);
            h.set_mode(if f.secret { 0o600 } else { 0o644 });
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, format!("{prefix}{}", f.path), &f.data[..])
                .with_context(|| format!("packing {}", f.path))?;
        }
    }
    Ok(tar.into_inner()?.finish()?)
}

/// Reads a layer back, refusing anything but regular files with safe paths under
/// `release/` or `operator/`, and more than the caps.
pub fn unpack(layer: &[u8]) -> anyhow::Result<Carried> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut carried = Carried::default();
    let mut total = 0u64;
    for entry in archive
        .entries()
        .context("reading the stored app directory")?
    {
        let mut entry = entry.context("reading the stored app directory")?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| anyhow::anyhow!("a stored path is not UTF-8"))?;
        let shown = crate::names::escaped(&name);
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("stored entry {shown} is not a regular file");
        }
        let (part, path) = if let Some(p) = name.strip_prefix(RELEASE) {
            (&mut carried.release, p)
        } else if let Some(p) = name.strip_prefix(OPERATOR) {
            (&mut carried.operator, p)
        } else {
            bail!("stored entry {shown} is neither under {RELEASE} nor {OPERATOR}");
        };
        crate::names::relative_path(path)
            .map_err(|why| anyhow::anyhow!("stored entry {shown}: {why}"))?;
        let size = entry.header().size()?;
        total += size;
        if total > MAX_UNPACKED {
            bail!("the stored app directory unpacks to more than {MAX_UNPACKED} bytes");
        }
        let secret = entry.header().mode().is_ok_and(|m| m & 0o077 == 0);
        let mut data = Vec::with_capacity(size.min(1 << 20) as usize);
        entry
            .by_ref()
            .take(size)
            .read_to_end(&mut data)
            .with_context(|| format!("reading stored entry {shown}"))?;
        part.push(CarriedFile {
            path: path.to_string(),
            data,
            secret,
        });
        if carried.release.len() + carried.operator.len() > MAX_FILES {
            bail!("the stored app directory has more than {MAX_FILES} files");
        }
    }
    Ok(carried)
}

fn bytes_stream(data: Bytes) -> crate::copy::BlobStream {
    Box::pin(futures_util::stream::once(async move { Ok(data) }))
}

/// Pushes the app directory `dir` (as it is now) as `repository:version` and `:latest`;
/// returns the references pushed.
pub async fn store(
    client: &Client,
    endpoint: &Endpoint,
    namespace: Option<&str>,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let state =
        overlay::read_state(dir)?.with_context(|| format!("{} has no app state", dir.display()))?;
    let d = dir.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut carried = overlay::collect(&d)?;
        // The registry's copy holds no secret of the app's: see `withhold_secrets`.
        let withheld = overlay::withhold_secrets(&mut carried)?;
        if !withheld.is_empty() {
            tracing::debug!(?withheld, "left out of the stored app directory");
        }
        pack(&carried)
    })
    .await
    .context("packing the app directory")??;
    if layer.len() as u64 > MAX_LAYER {
        bail!(
            "the app directory packs to {} bytes, more than the {MAX_LAYER} stored",
            layer.len()
        );
    }
    let registry = &endpoint.registry;
    let repo = repository(endpoint, namespace, &state.app);
    let layer = Bytes::from(layer);
    let layer_digest = Digest::of(&layer);
    let empty_digest = Digest::of(EMPTY);
    // Both blobs at once. Asked with a HEAD, not a mount: a re-import that changes
    // nothing only reads.
    let ensure = |digest: Digest, data: Bytes| {
        let repo = &repo;
        async move {
            if client.blob_exists(registry, repo, &digest).await? {
                return Ok(());
            }
            let size = data.len() as u64;
            client
                .put_blob(registry, repo, &digest, size, &move || {
                    bytes_stream(data.clone())
                })
                .await
        }
    };
    futures_util::try_join!(
        ensure(layer_digest.clone(), layer.clone()),
        ensure(empty_digest.clone(), Bytes::from_static(EMPTY)),
    )?;
    let mut annotations = serde_json::Map::new();
    annotations.insert("dev.kots-bundle.app.name".into(), state.app.clone().into());
    if let Some(v) = &state.version {
        annotations.insert("dev.kots-bundle.app.version".into(), v.clone().into());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": empty_digest, "size": EMPTY.len()},
        "layers": [{
            "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len(),
            "annotations": {"org.opencontainers.image.title": format!("{}-app.tar.gz", state.app)},
        }],
        "annotations": annotations,
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    let mut tags: Vec<String> = version_tag(state.version.as_deref()).into_iter().collect();
    tags.push("latest".into());
    let digest = Digest::of(&bytes);
    let (repo, digest, bytes) = (&repo, &digest, &bytes);
    let pushed = futures_util::future::try_join_all(tags.into_iter().map(|tag| async move {
        // An unchanged directory (a re-import) writes nothing.
        if client.head_manifest(registry, repo, &tag).await?.as_ref() != Some(digest) {
            client
                .put_manifest(registry, repo, &tag, OCI_MANIFEST, bytes.clone())
                .await?;
        }
        Ok::<_, crate::registry::RegistryError>(format!("{registry}/{repo}:{tag}"))
    }))
    .await?;
    Ok(pushed)
}

/// What [`download`] wrote.
#[derive(Debug)]
pub struct Downloaded {
    pub reference: String,
    pub dest: PathBuf,
    pub version: Option<String>,
    pub files: usize,
    /// Config items whose values the stored copy does not hold: the next import asks for
    /// them (`--config-values`).
    pub withheld: Vec<String>,
}

/// Fetches `app`'s stored directory (`tag`, default `latest`) and writes it at `dest`,
/// which must not exist or be empty: it appears whole (built beside it, then renamed).
pub async fn download(
    client: &Client,
    endpoint: &Endpoint,
    namespace: Option<&str>,
    app: &str,
    tag: Option<&str>,
    dest: &Path,
) -> anyhow::Result<Downloaded> {
    crate::names::app_name(app).with_context(|| format!("--app {}", crate::names::escaped(app)))?;
    refuse_non_empty(dest)?;
    let registry = &endpoint.registry;
    let repo = repository(endpoint, namespace, app);
    let tag = tag.unwrap_or("latest");
    let reference = format!("{registry}/{repo}:{tag}");
    let manifest = client.get_manifest(registry, &repo, tag).await?;
    let m: serde_json::Value = serde_json::from_slice(&manifest.bytes)
        .with_context(|| format!("{reference}: the manifest is not JSON"))?;
    if m["artifactType"].as_str() != Some(ARTIFACT_TYPE) {
        bail!(
            "{reference} is not an app directory stored by kots-bundle import (artifactType {}, expected {ARTIFACT_TYPE})",
            m["artifactType"]
        );
    }
    let layers = m["layers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [layer] = layers else {
        bail!("{reference}: expected one layer, found {}", layers.len());
    };
    if layer["mediaType"].as_str() != Some(LAYER_TYPE) {
        bail!(
            "{reference}: its layer is {}, expected {LAYER_TYPE}",
            layer["mediaType"]
        );
    }
    let digest: Digest = layer["digest"]
        .as_str()
        .unwrap_or("")
        .parse()
        .with_context(|| format!("{reference}: the layer's digest"))?;
    let size = layer["size"].as_u64().unwrap_or(u64::MAX);
    if size > MAX_LAYER {
        bail!("{reference}: the layer is larger than {MAX_LAYER} bytes");
    }
    // Checked against its digest and size as it arrives.
    let data: Vec<u8> = client
        .get_blob(registry, &repo, &digest, size)
        .await?
        .try_fold(
            Vec::with_capacity(size as usize),
            |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            },
        )
        .await
        .with_context(|| format!("downloading {reference}"))?;
    let dest = dest.to_path_buf();
    let written = dest.clone();
    let (files, version, withheld) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let carried = unpack(&data).with_context(|| format!("unpacking {reference}"))?;
        let files = carried.release.len() + carried.operator.len();
        write_dest(&written, &carried)?;
        let version = overlay::read_state(&written)?.and_then(|s| s.version);
        let withheld = carried
            .release
            .iter()
            .find(|f| f.path == "config-values.yaml")
            .and_then(|f| {
                crate::render::config::ConfigValues::parse(&String::from_utf8_lossy(&f.data)).ok()
            })
            .map(|v| v.withheld.into_iter().collect())
            .unwrap_or_default();
        Ok((files, version, withheld))
    })
    .await
    .context("writing the app directory")??;
    Ok(Downloaded {
        reference: format!("{registry}/{repo}:{tag}"),
        dest,
        version,
        files,
        withheld,
    })
}

fn refuse_non_empty(dest: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; download writes a new app directory only (give a new --dest)",
                    dest.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("--dest {}", dest.display())),
    }
}

/// Builds the directory beside `dest` and renames it into place (over an empty `dest`).
fn write_dest(dest: &Path, carried: &Carried) -> anyhow::Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".kots-bundle-download-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    overlay::restore(staging.path(), carried)?;
    refuse_non_empty(dest)?;
    let built = staging.keep();
    if let Err(e) = std::fs::rename(&built, dest) {
        let _ = std::fs::remove_dir_all(&built);
        return Err(e).with_context(|| format!("moving the app directory to {}", dest.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, secret: bool) -> CarriedFile {
        CarriedFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            secret,
        }
    }

    #[test]
    fn a_packed_directory_unpacks_the_same_and_the_same_bytes_twice() {
        let carried = Carried {
            release: vec![
                file("state.json", "{}", false),
                file("config-values.yaml", "pw: x", true),
                file(
                    &format!("upstream/{}", "d/".repeat(60) + "long.yaml"),
                    "a",
                    false,
                ),
            ],
            operator: vec![file("overlays/downstream/kustomization.yaml", "k", false)],
        };
        let packed = pack(&carried).unwrap();
        assert_eq!(pack(&carried).unwrap(), packed);
        assert_eq!(unpack(&packed).unwrap(), carried);
    }

    #[test]
    fn unsafe_entries_are_refused() {
        for name in ["release/../x", "operator//x", "elsewhere/x", "/release/x"] {
            let mut tar = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            // Written raw: the tar crate refuses some of these names itself.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            tar.append(&h, &b"x"[..]).unwrap();
            let raw = tar.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &raw).unwrap();
            assert!(unpack(&gz.finish().unwrap()).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn a_download_fills_an_empty_directory_and_refuses_a_non_empty_one() {
        let carried = Carried {
            release: vec![file("state.json", "{\"app\":\"x\"}", false)],
            operator: vec![file("overlays/downstream/kustomization.yaml", "k", false)],
        };
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_dest(&empty, &carried).unwrap();
        assert_eq!(
            std::fs::read_to_string(empty.join("overlays/downstream/kustomization.yaml")).unwrap(),
            "k"
        );
        assert!(
            write_dest(&empty, &carried).is_err(),
            "overwrote a non-empty directory"
        );
        // Only the two directories: nothing half-built left beside them.
        write_dest(&d.path().join("new"), &carried).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn tags_and_repositories() {
        assert_eq!(
            version_tag(Some("1.2.3+build.5")).as_deref(),
            Some("1.2.3_build.5")
        );
        assert_eq!(version_tag(Some("-rc")).as_deref(), Some("v-rc"));
        assert_eq!(version_tag(None), None);
        let ep = Endpoint::parse("reg.example:5000/team").unwrap();
        assert_eq!(repository(&ep, Some("ns"), "myapp"), "team/ns/myapp-app");
    }
}
