//! What KOTS knows about the installation: the version context (`Sequence`, `Cursor`,
//! `ChannelName`, `IsAirgap`, ...), and the kURL and identity-service contexts, which answer as
//! KOTS does when there is no kURL cluster and no identity service.

use std::sync::Arc;

use gotmpl::Value;

use super::{Env, Funcs};
use crate::render::template::args::{string, Args};
use crate::render::template::VersionInfo;

pub fn register(m: &mut Funcs, env: &Arc<Env>) {
    type Get = fn(&VersionInfo) -> Value;
    let fields: [(&'static str, Get, Value); 9] = [
        ("Sequence", |v| Value::Int(v.sequence), Value::Int(-1)),
        ("Cursor", |v| string(v.cursor.clone()), string("")),
        (
            "ChannelName",
            |v| string(v.channel_name.clone()),
            string(""),
        ),
        (
            "VersionLabel",
            |v| string(v.version_label.clone()),
            string(""),
        ),
        (
            "IsRequired",
            |v| Value::Bool(v.is_required),
            Value::Bool(false),
        ),
        (
            "ReleaseNotes",
            |v| string(v.release_notes.clone()),
            string(""),
        ),
        ("IsAirgap", |v| Value::Bool(v.is_airgap), Value::Bool(false)),
        (
            "ReplicatedRegistryDomain",
            |v| string(v.replicated_registry_domain.clone()),
            string(""),
        ),
        (
            "ReplicatedProxyDomain",
            |v| string(v.replicated_proxy_domain.clone()),
            string(""),
        ),
    ];
    for (name, get, none) in fields {
        let e = env.clone();
        m.add(name, move |a| {
            Args::exact(name, a, 0)?;
            Ok(e.ctx.version.as_ref().map_or(none.clone(), get))
        });
    }

    // kURL: no kURL installer config outside a kURL cluster.
    for (name, zero) in [
        ("KurlString", string("")),
        ("KurlInt", Value::Int(0)),
        ("KurlBool", Value::Bool(false)),
        ("KurlOption", string("")),
    ] {
        m.add(name, move |a| {
            Args::exact(name, a, 1)?.str(0)?;
            Ok(zero.clone())
        });
    }
    m.add("KurlAll", |a| {
        Args::exact("KurlAll", a, 0)?;
        Ok(string(""))
    });

    // Identity service: not configured.
    for (name, zero) in [
        ("IdentityServiceEnabled", Value::Bool(false)),
        ("IdentityServiceClientID", string("")),
        ("IdentityServiceClientSecret", string("")),
        ("IdentityServiceRoles", Value::Map(Default::default())),
        ("IdentityServiceName", string("")),
        ("IdentityServicePort", string("")),
    ] {
        m.add(name, move |a| {
            Args::exact(name, a, 0)?;
            Ok(zero.clone())
        });
    }
}
