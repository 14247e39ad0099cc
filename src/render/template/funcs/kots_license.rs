//! KOTS's license context (`pkg/template/license_context.go`): `LicenseFieldValue` and
//! `LicenseDockerCfg`. Unlike KOTS, which renders them empty, a template that calls them
//! without a license is an error asking for `--license-file`: an empty license ID in a pull
//! secret or an empty entitlement would deploy silently wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use super::{Env, Funcs};
use crate::license::{EntitlementValue, License};
use crate::render::template::args::{string, Args};

fn need_license<'a>(env: &'a Env, name: &str) -> Result<&'a License, gotmpl::TemplateError> {
    env.ctx.license.as_deref().ok_or_else(|| {
        gotmpl::TemplateError::Exec(format!(
            "{name} needs the customer's license: give --license-file"
        ))
    })
}

/// The Replicated registry and proxy hosts: the release's custom domains when it has them,
/// else the license endpoint's (KOTS's `GetRegistryProxyInfo`).
pub fn registry_hosts(env: &Env, license: Option<&License>) -> (String, String) {
    let (mut registry, mut proxy) = match license {
        Some(l) => l.registry_hosts(),
        None => (
            "registry.replicated.com".to_string(),
            "proxy.replicated.com".to_string(),
        ),
    };
    if let Some(v) = &env.ctx.version {
        if !v.replicated_registry_domain.is_empty() {
            registry = v.replicated_registry_domain.clone();
        }
        if !v.replicated_proxy_domain.is_empty() {
            proxy = v.replicated_proxy_domain.clone();
        }
    }
    (registry, proxy)
}

/// A docker config JSON (`{"auths":{host:{"auth":base64(user:password)}}}`, keys sorted as
/// Go's `json.Marshal` sorts them), base64-encoded.
pub fn dockercfg(hosts: &[&str], user: &str, password: &str) -> String {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let auth = b64.encode(format!("{user}:{password}"));
    let auths: BTreeMap<&str, BTreeMap<&str, &str>> = hosts
        .iter()
        .map(|h| (*h, BTreeMap::from([("auth", auth.as_str())])))
        .collect();
    let json = serde_json::json!({ "auths": auths }).to_string();
    b64.encode(json)
}

/// KOTS's `LicenseFieldValue`: a built-in field, else a custom field (entitlement), else
/// the empty string.
pub fn field_value(license: &License, name: &str) -> String {
    let b = |v: bool| v.to_string();
    match name {
        "appSlug" => license.app_slug.clone(),
        "channelID" => license.channel_id.clone(),
        "channelName" => license.channel.clone().unwrap_or_default(),
        "customerEmail" => license.customer_email.clone(),
        "endpoint" => license.endpoint.clone(),
        "licenseID" | "licenseId" => license.license_id.clone(),
        "licenseSequence" => license.license_sequence.to_string(),
        "customerName" => license.customer_name.clone(),
        "signature" => String::from_utf8_lossy(&license.signature).into_owned(),
        "licenseType" => license.license_type.clone(),
        "replicatedProxyDomain" => license.replicated_proxy_domain.clone(),
        "isEmbeddedClusterDownloadEnabled" => b(license.is_embedded_cluster_download_enabled),
        "isAirgapSupported" => b(license.is_airgap_supported),
        "isEmbeddedClusterMultiNodeEnabled" => b(license.is_embedded_cluster_multi_node_enabled),
        "IsDisasterRecoverySupported" | "isDisasterRecoverySupported" => {
            b(license.is_disaster_recovery_supported)
        }
        "isGeoaxisSupported" => b(license.is_geoaxis_supported),
        "isGitOpsSupported" => b(license.is_gitops_supported),
        "isIdentityServiceSupported" => b(license.is_identity_service_supported),
        "isSemverRequired" => b(license.is_semver_required),
        "isSnapshotSupported" => b(license.is_snapshot_supported),
        "isSupportBundleUploadSupported" => b(license.is_support_bundle_upload_supported),
        other => license
            .entitlements
            .get(other)
            .map(|e| go_value(&e.value))
            .unwrap_or_default(),
    }
}

/// Go's `%v` of an entitlement value, as `LicenseFieldValue` prints it.
fn go_value(v: &EntitlementValue) -> String {
    match v {
        EntitlementValue::String(s) => s.clone(),
        EntitlementValue::Int(n) => n.to_string(),
        EntitlementValue::Float(x) => crate::render::template::gofmt::format_float(*x, 'g', None),
        EntitlementValue::Bool(b) => b.to_string(),
    }
}

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    let e = env.clone();
    m.add("LicenseFieldValue", move |a| {
        let a = Args::exact("LicenseFieldValue", a, 1)?;
        let license = need_license(&e, "LicenseFieldValue")?;
        Ok(string(field_value(license, a.str(0)?)))
    });
    let e = env.clone();
    m.add("LicenseDockerCfg", move |a| {
        Args::exact("LicenseDockerCfg", a, 0)?;
        let license = need_license(&e, "LicenseDockerCfg")?;
        let (registry, proxy) = registry_hosts(&e, Some(license));
        Ok(string(dockercfg(
            &[&proxy, &registry],
            "LICENSE_ID",
            &license.license_id,
        )))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::DEFAULT_ENDPOINT;

    const LICENSE: &str = r#"apiVersion: kots.io/v1beta1
kind: License
metadata:
  name: acme
spec:
  licenseID: 1vusOokxAVp1tkRGuyxnF23PJcq
  appSlug: my-app
  channelName: Stable
  channelID: 1vusIYZLAVxMG6q760OJmRKj5i5
  customerName: ACME Corp
  customerEmail: ops@acme.example
  licenseType: prod
  licenseSequence: 7
  endpoint: https://replicated.app
  signature: eyJzaWduYXR1cmUiOiJhYmMifQ==
  isAirgapSupported: true
  isSnapshotSupported: true
  entitlements:
    expires_at:
      title: Expiration
      value: "2030-01-01T00:00:00Z"
      valueType: String
    seats:
      title: Seats
      value: 25
      valueType: Integer
    feature_x:
      title: Feature X
      value: true
      valueType: Boolean
"#;

    #[test]
    fn parses_builtin_fields_and_entitlements() {
        let l = License::parse(LICENSE).unwrap();
        assert_eq!(l.license_id, "1vusOokxAVp1tkRGuyxnF23PJcq");
        assert_eq!(l.channel.as_deref(), Some("Stable"));
        assert_eq!(field_value(&l, "licenseSequence"), "7");
        assert_eq!(field_value(&l, "isAirgapSupported"), "true");
        assert_eq!(field_value(&l, "isGitOpsSupported"), "false");
        assert_eq!(field_value(&l, "signature"), r#"{"signature":"abc"}"#);
        assert_eq!(field_value(&l, "seats"), "25");
        assert_eq!(field_value(&l, "feature_x"), "true");
        assert_eq!(field_value(&l, "expires_at"), "2030-01-01T00:00:00Z");
        assert_eq!(field_value(&l, "nope"), "");
        assert_eq!(field_value(&l, "licenseId"), l.license_id);
    }

    #[test]
    fn defaults_and_errors() {
        let l = License::parse("kind: License\nspec:\n  licenseID: abc\n  appSlug: app\n").unwrap();
        assert_eq!(l.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(field_value(&l, "endpoint"), DEFAULT_ENDPOINT);
        for (text, why) in [
            ("kind: Config\n", "kind: License"),
            ("kind: License\nspec:\n  appSlug: a\n", "licenseID"),
            ("kind: License\nspec:\n  licenseID: a\n", "appSlug"),
            ("kind: License\n", "no spec"),
        ] {
            let e = License::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
