//! KOTS's config context (`pkg/template/config_context.go`): the `ConfigOption` family over
//! the resolved config values, and the registry functions bound to the destination registry.
//!
//! `LocalImageName` names an image exactly as the rewrite does ([`crate::rewrite::target_of`]),
//! so a templated image and a plain one land on the same name. Without a local registry
//! (export) it returns the image as written, so discovery finds the real source. KOTS, online
//! and without a local registry, would send private images through `proxy.replicated.com`;
//! an airgap bundle pulls the sources themselves, so kots-bundle does not (KOTS also leaves
//! `registry.replicated.com` images as written there).

use std::sync::Arc;

use gotmpl::{TemplateError, Value};

use super::kots_license::{dockercfg, registry_hosts};
use super::{Env, Funcs};
use crate::reference::Reference;
use crate::render::template::args::{call_error, string, Args};
use crate::rewrite::target_of;

/// `[prefix/]namespace` of the local registry, as KOTS's `LocalRegistryNamespace`.
fn registry_namespace(env: &Env) -> String {
    let Some(r) = &env.ctx.local_registry else {
        return String::new();
    };
    [r.endpoint.prefix.as_deref(), r.namespace.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
}

pub fn local_image_name(env: &Env, image: &str) -> Result<String, TemplateError> {
    let Some(r) = &env.ctx.local_registry else {
        return Ok(image.to_string());
    };
    let source = Reference::parse(image)
        .map_err(|e| call_error("LocalImageName", format!("image {image:?}: {}", e.why)))?;
    let target = target_of(
        &source,
        &r.endpoint,
        r.namespace.as_deref(),
        r.preserve_paths,
    )
    .map_err(|e| call_error("LocalImageName", e))?;
    Ok(target.to_string())
}

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    let value_of = |env: &Env, name: &str| -> Option<String> {
        env.ctx.config.get(name).map(|v| v.effective().to_string())
    };

    let e = env.clone();
    m.add("ConfigOption", move |a| {
        let name = Args::exact("ConfigOption", a, 1)?.str(0)?;
        Ok(string(value_of(&e, name).unwrap_or_default()))
    });
    m.add("ConfigOptionName", |a| {
        Ok(string(Args::exact("ConfigOptionName", a, 1)?.str(0)?))
    });
    m.add("ConfigOptionIndex", |a| {
        Args::exact("ConfigOptionIndex", a, 1)?.str(0)?;
        Ok(string(""))
    });
    let e = env.clone();
    m.add("ConfigOptionData", move |a| {
        let name = Args::exact("ConfigOptionData", a, 1)?.str(0)?;
        let v = value_of(&e, name).unwrap_or_default();
        Ok(string(
            super::kots_static::std_b64_decode(&v).unwrap_or_default(),
        ))
    });
    let e = env.clone();
    m.add("ConfigOptionFilename", move |a| {
        let name = Args::exact("ConfigOptionFilename", a, 1)?.str(0)?;
        Ok(string(
            e.ctx
                .config
                .get(name)
                .map(|v| v.filename.clone())
                .unwrap_or_default(),
        ))
    });
    let e = env.clone();
    m.add("ConfigOptionEquals", move |a| {
        let a = Args::exact("ConfigOptionEquals", a, 2)?;
        let (name, want) = (a.str(0)?, a.str(1)?);
        Ok(Value::Bool(value_of(&e, name).is_some_and(|v| v == want)))
    });
    let e = env.clone();
    m.add("ConfigOptionNotEquals", move |a| {
        let a = Args::exact("ConfigOptionNotEquals", a, 2)?;
        let (name, want) = (a.str(0)?, a.str(1)?);
        Ok(Value::Bool(value_of(&e, name).is_some_and(|v| v != want)))
    });

    let e = env.clone();
    m.add("HasLocalRegistry", move |a| {
        Args::exact("HasLocalRegistry", a, 0)?;
        Ok(Value::Bool(e.ctx.local_registry.is_some()))
    });
    let e = env.clone();
    m.add("LocalRegistryHost", move |a| {
        Args::exact("LocalRegistryHost", a, 0)?;
        Ok(string(
            e.ctx
                .local_registry
                .as_ref()
                .map(|r| r.endpoint.registry.clone())
                .unwrap_or_default(),
        ))
    });
    let e = env.clone();
    m.add("LocalRegistryNamespace", move |a| {
        Args::exact("LocalRegistryNamespace", a, 0)?;
        Ok(string(registry_namespace(&e)))
    });
    let e = env.clone();
    m.add("LocalRegistryAddress", move |a| {
        Args::exact("LocalRegistryAddress", a, 0)?;
        let Some(r) = &e.ctx.local_registry else {
            return Ok(string(""));
        };
        let ns = registry_namespace(&e);
        Ok(string(if ns.is_empty() {
            r.endpoint.registry.clone()
        } else {
            format!("{}/{ns}", r.endpoint.registry)
        }))
    });
    let e = env.clone();
    m.add("LocalImageName", move |a| {
        let image = Args::exact("LocalImageName", a, 1)?.str(0)?;
        Ok(string(local_image_name(&e, image)?))
    });
    let e = env.clone();
    m.add("LocalRegistryImagePullSecret", move |a| {
        Args::exact("LocalRegistryImagePullSecret", a, 0)?;
        if e.ctx.local_registry.is_some() {
            return Err(call_error(
                "LocalRegistryImagePullSecret",
                "kots-bundle does not write registry credentials into manifests; \
                 create the pull secret yourself and pass --image-pull-secret NAME",
            ));
        }
        let license = e.ctx.license.as_deref();
        let (registry, proxy) = registry_hosts(&e, license);
        let id = license.map(|l| l.license_id.as_str()).unwrap_or("");
        Ok(string(dockercfg(&[&proxy, &registry], "LICENSE_ID", id)))
    });
    let e = env.clone();
    m.add("ImagePullSecretName", move |a| {
        Args::exact("ImagePullSecretName", a, 0)?;
        Ok(string(match &e.ctx.image_pull_secret {
            Some(n) => n.clone(),
            None if e.ctx.app_slug.is_empty() => String::new(),
            None => format!("{}-registry", e.ctx.app_slug),
        }))
    });
}
