//! Registry failures as typed errors: HTTP statuses and the registry's own error bodies
//! (`{"errors":[{"code","message","detail"}]}`) turned into messages that say what to fix.
//!
//! Nothing here ever holds an Authorization header, a token or a password: errors carry the
//! registry, the repository, the status, the registry's code and message, and a hint.

use std::fmt;

use serde::Deserialize;

/// What the client was doing, so the same status can be explained in context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Pull,
    Push,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
        }
    }
}

/// Compact text for error fields: errors travel in every `Result` of the copy engine, so
/// they are kept small (clippy's `result_large_err`).
pub type Text = Box<str>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP answer at all: DNS, refused connection, TLS handshake, timeout.
    #[error("cannot reach registry {registry} at {url}: {message}{hint}")]
    Unreachable {
        registry: String,
        url: String,
        message: String,
        hint: String,
    },
    /// The registry stopped sending or taking bytes (see `timeout`), past every retry.
    #[error("registry {registry} stalled on {request}: {why}; if the link is this slow, raise --idle-timeout (KOTS_BUNDLE_IDLE_TIMEOUT, seconds)")]
    Stalled {
        registry: String,
        /// `METHOD URL` (no query).
        request: String,
        why: String,
    },
    /// An answer that is read whole (manifest, token, error body) was larger than its cap.
    #[error("registry {registry} sent {what} larger than {limit} bytes; refusing it (no real registry sends one this big)")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    /// The registry's challenge names a token service the credentials must not go to.
    #[error("registry {registry} names the token service {realm}, which is plain HTTP on another host; kots-bundle did not send the credentials there (they would cross the network unencrypted to a host that is not the registry): the registry's token realm must be https:// or on its own host")]
    CredentialsWithheld { registry: String, realm: String },
    /// The registry does not take uploads at all (read-only, a cache or mirror).
    #[error(
        "registry {registry} refuses pushes to {repository} (HTTP {status}){}: it is read-only (maintenance mode, or a pull-through cache or mirror); push to a registry that accepts uploads, or have its read-only mode turned off",
        fmt_detail(code, message)
    )]
    PushRefused {
        registry: Text,
        repository: Text,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
    },
    /// The registry (or its token service) refused the credentials that were sent.
    #[error(
        "registry {registry} rejected the credentials{} (HTTP {status}){}; check `docker login {registry}` (where source registries' credentials come from) or, for the destination, --registry-username/--registry-password-stdin",
        user.as_ref().map(|u| format!(" for user {u}")).unwrap_or_default(),
        fmt_detail(code, message)
    )]
    Credentials {
        registry: Text,
        user: Option<Text>,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
    },
    /// The registry wants credentials and none were found.
    #[error(
        "registry {registry} requires credentials (HTTP {status}){} and none were found; run `docker login {registry}` (source registries' credentials come from there) or, for the destination, pass --registry-username with --registry-password-stdin",
        fmt_detail(code, message)
    )]
    LoginRequired {
        registry: Text,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
    },
    /// Authenticated, but not allowed to do this on this repository.
    #[error(
        "registry {registry} denied {action} access to {repository} (HTTP {status}){}: {hint}",
        fmt_detail(code, message)
    )]
    Denied {
        registry: Text,
        repository: Text,
        action: &'static str,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
        hint: Text,
    },
    /// A manifest, blob or repository that is not there.
    #[error(
        "{what} not found in {registry}/{repository} (HTTP {status}){}{hint}",
        fmt_detail(code, message)
    )]
    NotFound {
        registry: Text,
        repository: Text,
        what: Text,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
        hint: Text,
    },
    /// Any other unexpected status.
    #[error(
        "registry {registry} answered {request} with HTTP {status}{}{hint}",
        fmt_detail(code, message)
    )]
    Status {
        registry: Text,
        repository: Text,
        /// `METHOD /path` (no query).
        request: Text,
        status: u16,
        code: Option<Text>,
        message: Option<Text>,
        hint: &'static str,
    },
    /// The registry answered, but not with what the protocol (or the digest) promised.
    #[error("registry {registry}, repository {repository}: {why}")]
    Protocol {
        registry: String,
        repository: String,
        why: String,
    },
    /// Every mirror and the primary location failed; each attempt's error is listed.
    #[error("{image}: no location could serve it:{}", fmt_attempts(attempts))]
    AllLocationsFailed {
        image: String,
        attempts: Vec<(String, RegistryError)>,
    },
    /// Docker config or a credential helper could not be used.
    #[error("credentials for {registry}: {why}")]
    Keychain { registry: String, why: String },
    /// Bad options: a mirror spec, registries.conf, a CA file.
    #[error("{0}")]
    Config(String),
}

impl RegistryError {
    /// The HTTP status the registry answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Credentials { status, .. }
            | RegistryError::LoginRequired { status, .. }
            | RegistryError::Denied { status, .. }
            | RegistryError::NotFound { status, .. }
            | RegistryError::PushRefused { status, .. }
            | RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The registry's error code (`NAME_UNKNOWN`, `DENIED`, ...), if it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Credentials { code, .. }
            | RegistryError::LoginRequired { code, .. }
            | RegistryError::Denied { code, .. }
            | RegistryError::NotFound { code, .. }
            | RegistryError::PushRefused { code, .. }
            | RegistryError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

fn fmt_detail(code: &Option<Text>, message: &Option<Text>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

fn fmt_attempts(attempts: &[(String, RegistryError)]) -> String {
    let mut s = String::new();
    for (location, e) in attempts {
        s.push_str(&format!("\n  - {location}: {e}"));
    }
    s
}

/// The body distribution-spec registries send with 4xx/5xx answers.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorInfo>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorInfo {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// Parses a body; anything else (HTML from a proxy, empty) yields no errors.
    pub fn parse(body: &[u8]) -> ErrorBody {
        serde_json::from_slice(body).unwrap_or_default()
    }

    fn has_code(&self, code: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.code.eq_ignore_ascii_case(code))
    }

    /// First code, and all messages joined: what the registry said, for the user.
    fn summary(&self) -> (Option<String>, Option<String>) {
        let code = self
            .errors
            .iter()
            .map(|e| e.code.clone())
            .find(|c| !c.is_empty());
        let messages: Vec<&str> = self
            .errors
            .iter()
            .map(|e| e.message.trim())
            .filter(|m| !m.is_empty())
            .collect();
        let message = (!messages.is_empty()).then(|| messages.join("; "));
        (code, message)
    }
}

/// Where an error response came from, to phrase the error.
pub(crate) struct Context<'a> {
    pub registry: &'a str,
    pub repository: &'a str,
    pub method: &'a str,
    /// The URL path (no query: upload locations carry session state, not secrets, but are long).
    pub path: &'a str,
    pub action: Action,
    /// `manifest nginx:1.25`, `blob sha256:...`: what a 404 is about.
    pub what: &'a str,
    /// The user whose credentials were sent, if any.
    pub user: Option<&'a str>,
    /// A 401 whose challenge says the token lacked the scope: access denied, not bad credentials.
    pub insufficient_scope: bool,
}

impl<'a> Context<'a> {
    /// `GET /v2/`: the ping that finds the auth scheme and proves the credentials.
    pub(crate) fn ping(registry: &'a str, user: Option<&'a str>) -> Context<'a> {
        Context {
            registry,
            repository: "",
            method: "GET",
            path: "/v2/",
            action: Action::Pull,
            what: "the registry API (/v2/)",
            user,
            insufficient_scope: false,
        }
    }
}

/// The typed error for a non-success answer.
pub(crate) fn from_response(ctx: &Context<'_>, status: u16, body: &[u8]) -> RegistryError {
    let parsed = ErrorBody::parse(body);
    let (code, mut message) = parsed.summary();
    if message.is_none() && parsed.errors.is_empty() && status >= 400 {
        // A non-JSON body (a proxy's HTML page) still says something; keep a short line.
        let text = String::from_utf8_lossy(body);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        message = line.map(|l| l.chars().take(200).collect());
    }
    let (code, message): (Option<Text>, Option<Text>) =
        (code.map(Into::into), message.map(Into::into));
    let registry: Text = ctx.registry.into();
    let repository: Text = ctx.repository.into();
    let first_component = ctx.repository.split('/').next().unwrap_or(ctx.repository);

    if status == 401 && !ctx.insufficient_scope {
        return match ctx.user {
            Some(u) => RegistryError::Credentials {
                registry,
                user: Some(u.into()),
                status,
                code,
                message,
            },
            None => RegistryError::LoginRequired {
                registry,
                status,
                code,
                message,
            },
        };
    }
    // distribution in read-only mode answers every write with 405 UNSUPPORTED.
    if ctx.action == Action::Push && (status == 405 || parsed.has_code("UNSUPPORTED")) {
        return RegistryError::PushRefused {
            registry,
            repository,
            status,
            code,
            message,
        };
    }
    let name_unknown = parsed.has_code("NAME_UNKNOWN");
    if status == 403 || ctx.insufficient_scope || parsed.has_code("DENIED") {
        let hint = match ctx.action {
            Action::Push => format!(
                "the user lacks push permission on {repository}; on Harbor the project {first_component} must exist and the user must be a developer (or maintainer) of it; on Quay and ECR grant write access to the repository"
            ),
            Action::Pull => format!(
                "the user lacks pull permission on {repository}; log in as a user that may read it"
            ),
        };
        return RegistryError::Denied {
            registry,
            repository,
            action: ctx.action.verb(),
            status,
            code,
            message,
            hint: hint.into(),
        };
    }
    if status == 404 || name_unknown {
        let hint = if ctx.action == Action::Push && (name_unknown || parsed.errors.is_empty()) {
            format!(
                ": repository {repository} does not exist: create the project {first_component} (Harbor, Quay) or the repository {repository} (ECR) first"
            )
        } else if name_unknown {
            format!(": repository {repository} does not exist there")
        } else {
            String::new()
        };
        let what = if ctx.action == Action::Push && (name_unknown || parsed.errors.is_empty()) {
            format!("repository {repository}")
        } else {
            ctx.what.to_string()
        };
        return RegistryError::NotFound {
            registry,
            repository,
            what: what.into(),
            status,
            code,
            message,
            hint: hint.into(),
        };
    }
    // Harbor answers 412 for a tag its immutability rules protect, ECR TAG_INVALID
    // ("...cannot be overwritten because the repository is immutable"), others 409.
    let immutable = ctx.action == Action::Push
        && ctx.path.contains("/manifests/")
        && (status == 409
            || status == 412
            || parsed.has_code("TAG_INVALID")
            || message
                .as_deref()
                .is_some_and(|m| m.to_ascii_lowercase().contains("immutable")));
    let hint = match status {
        _ if immutable => "; the tag already holds a different image and the registry does not let tags be overwritten (Harbor tag immutability rules, ECR immutable repositories): push under a new tag or namespace, or have the rule relaxed",
        429 => "; the registry is rate limiting: wait and try again, or log in (anonymous pulls have lower limits)",
        s if s >= 500 => "; the registry failed: try again later or check its logs",
        _ => "",
    };
    RegistryError::Status {
        registry,
        repository,
        request: format!("{} {}", ctx.method, ctx.path).into(),
        status,
        code,
        message,
        hint,
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(action: Action, user: Option<&'a str>) -> Context<'a> {
        Context {
            registry: "harbor.local:8443",
            repository: "myproj/app/nginx",
            method: "POST",
            path: "/v2/myproj/app/nginx/blobs/uploads/",
            action,
            what: "manifest nginx:1.25",
            user,
            insufficient_scope: false,
        }
    }

    #[test]
    fn an_immutable_tag_conflict_says_so() {
        let mut c = ctx(Action::Push, Some("bob"));
        c.method = "PUT";
        c.path = "/v2/myproj/app/nginx/manifests/1.25";
        let e = from_response(&c, 412, br#"{"errors":[{"code":"UNKNOWN","message":"Failed to process request due to 'nginx:1.25' configured as immutable."}]}"#)
            .to_string();
        assert!(e.contains("PUT /v2/myproj/app/nginx/manifests/1.25"), "{e}");
        assert!(e.contains("does not let tags be overwritten"), "{e}");
        let e = from_response(&c, 400, br#"{"errors":[{"code":"TAG_INVALID","message":"The image tag '1.25' already exists"}]}"#)
            .to_string();
        assert!(e.contains("does not let tags be overwritten"), "{e}");
        c.path = "/v2/myproj/app/nginx/blobs/uploads/x";
        let e = from_response(&c, 409, b"").to_string();
        assert!(!e.contains("overwritten"), "only manifests have tags: {e}");
    }

    #[test]
    fn insufficient_scope_is_a_permission_problem_naming_the_repository() {
        let mut c = ctx(Action::Push, Some("bob"));
        c.insufficient_scope = true;
        let e = from_response(
            &c,
            401,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .to_string();
        assert!(e.contains("denied push access to myproj/app/nginx"), "{e}");
        assert!(!e.contains("rejected the credentials"), "{e}");
    }

    #[test]
    fn name_unknown_on_push_names_what_to_create() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"myproj/app/nginx"}}]}"#;
        let e = from_response(&ctx(Action::Push, Some("bob")), 404, body);
        let s = e.to_string();
        assert!(matches!(e, RegistryError::NotFound { .. }), "{e:?}");
        assert_eq!(e.code(), Some("NAME_UNKNOWN"));
        assert!(
            s.contains("repository myproj/app/nginx does not exist"),
            "{s}"
        );
        assert!(s.contains("create the project myproj"), "{s}");
        assert!(s.contains("(ECR)"), "{s}");
        assert!(s.contains("repository name not known to registry"), "{s}");
    }

    #[test]
    fn manifest_unknown_on_pull_is_plain_not_found() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let e = from_response(&ctx(Action::Pull, None), 404, body);
        let s = e.to_string();
        assert!(
            s.starts_with("manifest nginx:1.25 not found in harbor.local:8443/myproj/app/nginx"),
            "{s}"
        );
        assert!(!s.contains("create the project"), "{s}");
    }

    #[test]
    fn denied_on_push_explains_harbor_membership() {
        let body = br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let e = from_response(&ctx(Action::Push, Some("bob")), 403, body);
        let s = e.to_string();
        assert!(matches!(e, RegistryError::Denied { .. }), "{e:?}");
        assert!(s.contains("denied push access to myproj/app/nginx"), "{s}");
        assert!(s.contains("developer"), "{s}");
        assert!(s.contains("project myproj must exist"), "{s}");
    }

    #[test]
    fn unauthorized_names_user_and_registry_or_asks_for_login() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        let s = from_response(&ctx(Action::Push, Some("bob")), 401, body).to_string();
        assert!(s.contains("rejected the credentials for user bob"), "{s}");
        assert!(s.contains("docker login harbor.local:8443"), "{s}");
        let s = from_response(&ctx(Action::Pull, None), 401, body).to_string();
        assert!(s.contains("requires credentials"), "{s}");
        assert!(s.contains("--registry-username"), "{s}");
    }

    #[test]
    fn non_json_bodies_and_5xx_keep_a_short_reason() {
        let e = from_response(
            &ctx(Action::Pull, None),
            502,
            b"<html>\n<body>Bad Gateway</body></html>",
        );
        let s = e.to_string();
        assert_eq!(e.status(), Some(502));
        assert!(s.contains("HTTP 502"), "{s}");
        assert!(s.contains("<html>"), "{s}");
        assert!(s.contains("try again later"), "{s}");
        let s = from_response(&ctx(Action::Pull, None), 429, b"").to_string();
        assert!(s.contains("rate limiting"), "{s}");
    }

    #[test]
    fn a_read_only_registry_refuses_pushes_to_the_repository() {
        let body =
            br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#;
        let e = from_response(&ctx(Action::Push, Some("bob")), 405, body);
        let s = e.to_string();
        assert!(matches!(e, RegistryError::PushRefused { .. }), "{e:?}");
        assert!(
            s.contains("registry harbor.local:8443 refuses pushes to myproj/app/nginx"),
            "{s}"
        );
        assert!(s.contains("read-only"), "{s}");
        // A pull that meets 405 is not about pushing.
        let e = from_response(&ctx(Action::Pull, None), 405, body);
        assert!(matches!(e, RegistryError::Status { .. }), "{e:?}");
    }

    #[test]
    fn stays_small() {
        // Every copy-engine Result carries it; clippy's result_large_err limit is 128.
        assert!(std::mem::size_of::<RegistryError>() <= 112);
    }

    #[test]
    fn all_locations_lists_each_attempt() {
        let e = RegistryError::AllLocationsFailed {
            image: "quay.io/org/a:1".into(),
            attempts: vec![
                (
                    "mirror.local/quay.io/org/a".into(),
                    RegistryError::Config("boom".into()),
                ),
                ("quay.io/org/a".into(), RegistryError::Config("bang".into())),
            ],
        };
        let s = e.to_string();
        assert!(s.starts_with("quay.io/org/a:1"), "{s}");
        assert!(s.contains("mirror.local/quay.io/org/a: boom"), "{s}");
        assert!(s.contains("quay.io/org/a: bang"), "{s}");
    }
}
