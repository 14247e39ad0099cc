//! Deterministic synthetic images written as an OCI layout directory, so tests (and the
//! benchmark) can fill a real registry with `skopeo copy`, independently of our own code.

#![allow(dead_code)]

use std::path::Path;

use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What to generate for one image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The `org.opencontainers.image.ref.name` annotation, e.g. `img-0:v1`.
    pub name: String,
    /// Own layers (in addition to the shared base layer, if any).
    pub layers: usize,
    pub layer_size: usize,
    pub shared_base: bool,
    /// Two platforms (linux/amd64, linux/arm64) under an OCI index.
    pub multiarch: bool,
    /// Plain tar layers (no gzip): quick to generate at hundreds of MiB.
    pub uncompressed: bool,
    pub seed: u64,
}

impl ImageSpec {
    pub fn new(name: &str, seed: u64) -> ImageSpec {
        ImageSpec {
            name: name.to_string(),
            layers: 1,
            layer_size: 64 * 1024,
            shared_base: true,
            multiarch: false,
            uncompressed: false,
            seed,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct SynthImage {
    pub name: String,
    /// Digest of the top-level manifest or index.
    pub digest: String,
    pub media_type: String,
    /// Digests of every blob of this image (layers, configs, manifests).
    pub blobs: Vec<String>,
    pub shared_base: Option<String>,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// xorshift64*: deterministic, incompressible-enough bytes without a rand dependency.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A gzip'd tar with one file of noise: a real layer, so any tool that sniffs it agrees.
pub fn layer(seed: u64, size: usize) -> Vec<u8> {
    let raw = tar_layer(seed, size);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

/// A plain tar with one file of noise.
pub fn tar_layer(seed: u64, size: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let data = noise(seed, size);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    tar.append_data(&mut h, format!("data/{seed}.bin"), &data[..])
        .unwrap();
    tar.into_inner().unwrap()
}

fn put(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let p = dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    if !p.exists() {
        std::fs::write(p, data).unwrap();
    }
    d
}

fn desc(media_type: &str, digest: &str, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// Writes the images into an OCI layout at `dir` (created if needed).
pub fn write_layout(dir: &Path, specs: &[ImageSpec]) -> Vec<SynthImage> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let make = |spec: &ImageSpec, seed: u64| {
        if spec.uncompressed {
            (tar_layer(seed, spec.layer_size), OCI_LAYER_TAR)
        } else {
            (layer(seed, spec.layer_size), OCI_LAYER)
        }
    };
    let (base, base_type) = match specs.first() {
        Some(s) => make(s, 0xBA5E),
        None => (layer(0xBA5E, 1024), OCI_LAYER),
    };
    let base_digest = put(dir, &base);
    let mut out = Vec::new();
    let mut index_entries = Vec::new();
    for spec in specs {
        let mut blobs = Vec::new();
        let arches: &[&str] = if spec.multiarch {
            &["amd64", "arm64"]
        } else {
            &["amd64"]
        };
        let mut platform_descs = Vec::new();
        for (ai, arch) in arches.iter().enumerate() {
            let mut layers = Vec::new();
            if spec.shared_base {
                layers.push((base_digest.clone(), base.len(), base_type));
                blobs.push(base_digest.clone());
            }
            for l in 0..spec.layers {
                let (data, media_type) = make(spec, spec.seed * 1000 + ai as u64 * 100 + l as u64);
                let d = put(dir, &data);
                blobs.push(d.clone());
                layers.push((d, data.len(), media_type));
            }
            let config = serde_json::json!({
                "architecture": arch, "os": "linux",
                "config": {"Labels": {"synth": spec.name}},
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _, _)| d.clone()).collect::<Vec<_>>()},
            });
            let config = serde_json::to_vec(&config).unwrap();
            let config_digest = put(dir, &config);
            blobs.push(config_digest.clone());
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": desc(OCI_CONFIG, &config_digest, config.len()),
                "layers": layers.iter().map(|(d, s, t)| desc(t, d, *s)).collect::<Vec<_>>(),
            });
            let manifest = serde_json::to_vec(&manifest).unwrap();
            let md = put(dir, &manifest);
            blobs.push(md.clone());
            let mut pd = desc(OCI_MANIFEST, &md, manifest.len());
            pd["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            platform_descs.push((pd, md, manifest.len()));
        }
        let (top, media_type, size) = if spec.multiarch {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": platform_descs.iter().map(|(d, _, _)| d.clone()).collect::<Vec<_>>(),
            });
            let index = serde_json::to_vec(&index).unwrap();
            let d = put(dir, &index);
            blobs.push(d.clone());
            (d, OCI_INDEX, index.len())
        } else {
            let (_, md, len) = platform_descs.pop().unwrap();
            (md, OCI_MANIFEST, len)
        };
        let mut entry = desc(media_type, &top, size);
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": spec.name});
        index_entries.push(entry);
        blobs.sort();
        blobs.dedup();
        out.push(SynthImage {
            name: spec.name.clone(),
            digest: top,
            media_type: media_type.to_string(),
            blobs,
            shared_base: spec.shared_base.then(|| base_digest.clone()),
        });
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": index_entries});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
    out
}

/// Pushes one image of a layout into a registry with skopeo (an independent tool).
pub fn skopeo_push(layout: &Path, name: &str, dest: &str) {
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "-q",
        ])
        .arg(format!("oci:{}:{name}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {name} -> {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
