//! KOTS's license context (`pkg/template/license_context.go`): `LicenseFieldValue` and
//! `LicenseDockerCfg`. Unlike KOTS, which renders them empty, a template that calls them
//! without a license is an error asking for `--license-file`: an empty license ID in a pull
//! secret or an empty entitlement would deploy silently wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use super::{Env, Funcs};
use crate::render::license::License;
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

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    let e = env.clone();
    m.add("LicenseFieldValue", move |a| {
        let a = Args::exact("LicenseFieldValue", a, 1)?;
        let license = need_license(&e, "LicenseFieldValue")?;
        Ok(string(license.field_value(a.str(0)?)))
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
