//! The customer's KOTS license (`kots.io/v1beta1` or `v1beta2`, `kind: License`): what
//! `replicated://` downloads authenticate with, and what `LicenseFieldValue` and
//! `LicenseDockerCfg` read (the template functions, in `render`, turn its fields into what
//! they print). Field names are those of KOTS's `LicenseSpec`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// Licenses are small; anything bigger is not one.
const MAX_LICENSE_BYTES: u64 = 4 << 20;

/// The endpoint KOTS uses when a license names none.
pub const DEFAULT_ENDPOINT: &str = "https://replicated.app";

/// A custom license field's value (KOTS's `EntitlementValue`: string, integer or bool).
#[derive(Debug, Clone, PartialEq)]
pub enum EntitlementValue {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One entry of `spec.entitlements`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entitlement {
    pub title: String,
    pub description: String,
    pub value: EntitlementValue,
    pub value_type: String,
    pub is_hidden: bool,
}

/// A KOTS license.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct License {
    /// `spec.licenseID`: also the password of the Replicated registry and release API.
    pub license_id: String,
    pub app_slug: String,
    /// `spec.endpoint`, [`DEFAULT_ENDPOINT`] when absent.
    pub endpoint: String,
    /// `spec.channelName`.
    pub channel: Option<String>,
    pub channel_id: String,
    /// `spec.channels`: the channels of a multi-channel license (empty in older ones, which
    /// name one channel at the top level).
    pub channels: Vec<LicenseChannel>,
    pub customer_name: String,
    pub customer_email: String,
    pub license_type: String,
    pub license_sequence: i64,
    /// `spec.signature`, decoded from base64 (what `LicenseFieldValue "signature"` returns).
    pub signature: Vec<u8>,
    pub replicated_proxy_domain: String,
    pub is_airgap_supported: bool,
    pub is_gitops_supported: bool,
    pub is_identity_service_supported: bool,
    pub is_geoaxis_supported: bool,
    pub is_snapshot_supported: bool,
    pub is_disaster_recovery_supported: bool,
    pub is_support_bundle_upload_supported: bool,
    pub is_semver_required: bool,
    pub is_embedded_cluster_download_enabled: bool,
    pub is_embedded_cluster_multi_node_enabled: bool,
    /// `spec.entitlements`: custom fields, and `expires_at`.
    pub entitlements: BTreeMap<String, Entitlement>,
}

/// One entry of `spec.channels`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LicenseChannel {
    pub channel_id: String,
    pub channel_name: String,
    pub channel_slug: String,
    pub is_default: bool,
}

/// A license file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LicenseError {
    pub path: Option<PathBuf>,
    pub why: String,
}

impl fmt::Display for LicenseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "license {}: {}", p.display(), self.why),
            None => write!(f, "license: {}", self.why),
        }
    }
}

impl License {
    /// Reads and parses a license file.
    pub fn load(path: &Path) -> Result<License, LicenseError> {
        let bad = |why: String| LicenseError {
            path: Some(path.to_path_buf()),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_LICENSE_BYTES {
            return Err(bad(format!(
                "{} bytes; a license is a small YAML file",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        License::parse(&text).map_err(|e| bad(e.why))
    }

    /// Parses the license YAML (the first document that is a `kind: License`).
    pub fn parse(text: &str) -> Result<License, LicenseError> {
        let bad = |why: String| LicenseError { path: None, why };
        let mut last_error = None;
        let mut doc = None;
        for d in crate::yaml::yaml_documents(text) {
            match d.parsed {
                Ok(v) if v.get("kind").and_then(Value::as_str) == Some("License") => {
                    doc = Some(v);
                    break;
                }
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
        }
        let Some(v) = doc else {
            return Err(bad(match last_error {
                Some(e) => format!("not YAML: {e}"),
                None => "not a KOTS license (kind: License)".into(),
            }));
        };
        let spec = v.get("spec").ok_or_else(|| bad("no spec".into()))?;
        let text_of = |k: &str| -> String {
            match spec.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => String::new(),
            }
        };
        let flag = |k: &str| -> bool {
            match spec.get(k) {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            }
        };
        let license_id = text_of("licenseID");
        if license_id.is_empty() {
            return Err(bad("spec.licenseID is missing".into()));
        }
        let app_slug = text_of("appSlug");
        if app_slug.is_empty() {
            return Err(bad("spec.appSlug is missing".into()));
        }
        let endpoint = match text_of("endpoint") {
            e if e.is_empty() => DEFAULT_ENDPOINT.to_string(),
            e => e,
        };
        let signature = match spec.get("signature") {
            Some(Value::String(s)) => {
                use base64::Engine as _;
                let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|e| bad(format!("spec.signature is not base64: {e}")))?
            }
            _ => Vec::new(),
        };
        let mut entitlements = BTreeMap::new();
        if let Some(Value::Mapping(m)) = spec.get("entitlements") {
            for (k, e) in m {
                let Some(name) = k.as_str() else { continue };
                let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                let value = match e.get("value") {
                    Some(Value::Bool(b)) => EntitlementValue::Bool(*b),
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(i) => EntitlementValue::Int(i),
                        None => EntitlementValue::Float(n.as_f64().unwrap_or(0.0)),
                    },
                    Some(Value::String(s)) => EntitlementValue::String(s.clone()),
                    _ => EntitlementValue::String(String::new()),
                };
                entitlements.insert(
                    name.to_string(),
                    Entitlement {
                        title: s("title"),
                        description: s("description"),
                        value,
                        value_type: s("valueType"),
                        is_hidden: matches!(e.get("isHidden"), Some(Value::Bool(true))),
                    },
                );
            }
        }
        let channel = Some(text_of("channelName")).filter(|c| !c.is_empty());
        let channels = match spec.get("channels") {
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|c| {
                    let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                    LicenseChannel {
                        channel_id: s("channelID"),
                        channel_name: s("channelName"),
                        channel_slug: s("channelSlug"),
                        is_default: matches!(c.get("isDefault"), Some(Value::Bool(true))),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(License {
            license_id,
            app_slug,
            endpoint,
            channel,
            channel_id: text_of("channelID"),
            channels,
            customer_name: text_of("customerName"),
            customer_email: text_of("customerEmail"),
            license_type: text_of("licenseType"),
            license_sequence: text_of("licenseSequence").parse().unwrap_or(0),
            signature,
            replicated_proxy_domain: text_of("replicatedProxyDomain"),
            is_airgap_supported: flag("isAirgapSupported"),
            is_gitops_supported: flag("isGitOpsSupported"),
            is_identity_service_supported: flag("isIdentityServiceSupported"),
            is_geoaxis_supported: flag("isGeoaxisSupported"),
            is_snapshot_supported: flag("isSnapshotSupported"),
            is_disaster_recovery_supported: flag("isDisasterRecoverySupported"),
            is_support_bundle_upload_supported: flag("isSupportBundleUploadSupported"),
            is_semver_required: flag("isSemverRequired"),
            is_embedded_cluster_download_enabled: flag("isEmbeddedClusterDownloadEnabled"),
            is_embedded_cluster_multi_node_enabled: flag("isEmbeddedClusterMultiNodeEnabled"),
            entitlements,
        })
    }

    /// The Replicated registry and proxy hosts this license's images come from (KOTS's
    /// `GetRegistryProxyInfo` from the license endpoint; the staging endpoint has its own).
    pub fn registry_hosts(&self) -> (String, String) {
        let host = url::Url::parse(&self.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        if host == "staging.replicated.app" {
            return (
                "registry.staging.replicated.com".into(),
                "proxy.staging.replicated.com".into(),
            );
        }
        (
            "registry.replicated.com".into(),
            "proxy.replicated.com".into(),
        )
    }
}
