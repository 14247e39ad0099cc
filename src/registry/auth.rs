//! How requests are authorized: the `WWW-Authenticate` challenge (anonymous, Basic or
//! Bearer), the credential for each registry (flags first, then docker's config), and
//! Bearer tokens fetched from the realm, cached per (registry, scopes) and refreshed when
//! they expire or the registry answers 401 again. The token exchange follows the Docker
//! token spec (GET with Basic) and its OAuth2 form (POST `grant_type=refresh_token` for an
//! identity token), as go-containerregistry's `transport/bearer.go` does.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::error::{self, Action, RegistryError};
use super::keychain::{self, Secret};
use super::retry::{self, Attempt};
use super::{scheme, Client};

/// A token answer is a few KiB of JSON; more than this is refused unread.
pub const MAX_TOKEN_BODY: u64 = 1024 * 1024;

/// What `GET /v2/` (or a 401 on any request) asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// Space-separated scopes the registry asked for (on a 401 for a resource).
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value: a scheme, then `key=value` / `key="quoted, value"`
/// parameters separated by commas. A second challenge in the same value is ignored.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = match value.find(char::is_whitespace) {
        Some(i) => (&value[..i], value[i..].trim_start()),
        None => (value, ""),
    };
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service").filter(|s| !s.is_empty()),
            scope: get("scope").filter(|s| !s.is_empty()),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else {
        None
    }
}

/// Whether a 401 says the token was valid but lacked the scope asked for (RFC 6750's
/// `error="insufficient_scope"`): a permission problem, not a credentials one.
pub(crate) fn insufficient_scope(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let rest = v
                .trim()
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r);
            parse_params(rest).iter().any(|(k, val)| {
                k.eq_ignore_ascii_case("error") && val.eq_ignore_ascii_case("insufficient_scope")
            })
        })
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A bare token: the start of another challenge. Stop at the first one.
            break;
        }
        chars.next();
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((key, value));
    }
    out
}

/// `repository:<repo>:pull` or `repository:<repo>:pull,push`.
pub(crate) fn repo_scope(repository: &str, push: bool) -> String {
    if push {
        format!("repository:{repository}:pull,push")
    } else {
        format!("repository:{repository}:pull")
    }
}

/// Adds the scopes of a 401's challenge (space separated) that are not there yet.
pub(crate) fn merge_scopes(scopes: &mut Vec<String>, more: &str) {
    for s in more.split_whitespace() {
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_string());
        }
    }
}

#[derive(Clone)]
pub(crate) struct Token {
    value: String,
    expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted>, expires {:?})", self.expires)
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The Docker token spec's floor (and default) for `expires_in`.
const MIN_TOKEN_LIFETIME: u64 = 60;

/// Credentials and tokens for every registry one [`super::Client`] talks to.
pub(crate) struct Auth {
    explicit: Option<(String, Secret)>,
    config_dir: Option<PathBuf>,
    secrets: Mutex<HashMap<String, Option<Secret>>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl Auth {
    pub fn new(explicit: Option<(String, Secret)>, config_dir: Option<PathBuf>) -> Auth {
        Auth {
            explicit,
            config_dir,
            secrets: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The credential for `registry`: the flags' (only for their host), else docker's
    /// config, else none. Looked up once per registry (helpers are processes).
    pub fn secret(&self, registry: &str) -> Result<Option<Secret>, RegistryError> {
        if let Some((host, s)) = &self.explicit {
            if host.eq_ignore_ascii_case(registry) {
                return Ok(Some(s.clone()));
            }
        }
        if let Some(s) = self.secrets.lock().unwrap().get(registry) {
            return Ok(s.clone());
        }
        let found = match keychain::config_dir(self.config_dir.as_deref()) {
            Some(dir) => {
                let path: Option<OsString> = std::env::var_os("PATH");
                keychain::load(&dir)?.lookup(registry, path.as_ref())?
            }
            None => None,
        };
        self.secrets
            .lock()
            .unwrap()
            .insert(registry.to_string(), found.clone());
        Ok(found)
    }

    pub fn username(&self, registry: &str) -> Option<String> {
        self.secret(registry)
            .ok()
            .flatten()
            .and_then(|s| s.username().map(str::to_string))
    }

    /// The `Authorization` value for a request with these scopes, if any.
    pub async fn header(
        &self,
        client: &Client,
        registry: &str,
        challenge: &Challenge,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, RegistryError> {
        match challenge {
            Challenge::Anonymous => Ok(None),
            Challenge::Basic => Ok(match self.secret(registry)? {
                Some(Secret::Basic { username, password }) => {
                    Some(basic_header(&username, &password))
                }
                // An identity token has no Basic form; the registry will say 401.
                _ => None,
            }),
            Challenge::Bearer { realm, service, .. } => {
                let key = (registry.to_string(), scope_key(scopes));
                if let Some(t) = self.tokens.lock().unwrap().get(&key) {
                    if t.expires > Instant::now() {
                        return Ok(Some(bearer_header(&t.value)));
                    }
                }
                let secret = self.secret(registry)?;
                let token = fetch_token(
                    client,
                    registry,
                    realm,
                    service.as_deref(),
                    scopes,
                    secret.as_ref(),
                )
                .await?;
                let header = bearer_header(&token.value);
                self.tokens.lock().unwrap().insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// `text` with every secret this client knows (passwords, identity tokens, Bearer
    /// tokens, Basic header values) replaced: for what a server echoes back in an error.
    pub fn scrub(&self, text: &[u8]) -> Vec<u8> {
        let mut secrets: Vec<String> = Vec::new();
        let mut add = |s: &Secret| match s {
            Secret::Basic { username, password } => {
                secrets.push(password.clone());
                secrets.push(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}")),
                );
            }
            Secret::IdentityToken { token, .. } => secrets.push(token.clone()),
        };
        if let Some((_, s)) = &self.explicit {
            add(s);
        }
        for s in self.secrets.lock().unwrap().values().flatten() {
            add(s);
        }
        secrets.extend(
            self.tokens
                .lock()
                .unwrap()
                .values()
                .map(|t| t.value.clone()),
        );
        // Too short a value would match ordinary words.
        secrets.retain(|s| s.len() >= 4);
        if secrets.is_empty() {
            return text.to_vec();
        }
        let mut out = String::from_utf8_lossy(text).into_owned();
        for s in &secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out.into_bytes()
    }

    /// Forgets the cached token for these scopes (the registry answered 401 with it).
    pub fn invalidate(&self, registry: &str, scopes: &[String]) {
        self.tokens
            .lock()
            .unwrap()
            .remove(&(registry.to_string(), scope_key(scopes)));
    }
}

fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s.join(" ")
}

fn sensitive(s: String) -> HeaderValue {
    let mut v = HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""));
    // Keeps the value out of hyper/reqwest debug output.
    v.set_sensitive(true);
    v
}

pub(crate) fn basic_header(username: &str, password: &str) -> HeaderValue {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(format!("Basic {enc}"))
}

fn bearer_header(token: &str) -> HeaderValue {
    sensitive(format!("Bearer {token}"))
}

/// Asks the token service for a token covering `scopes` (none: just prove the credentials,
/// as `ping` does). Retries like every other request. Credentials go to the realm only over
/// HTTPS or to the registry's own host: a challenge cannot send them in clear text to a
/// host of its choosing.
pub(crate) async fn fetch_token(
    client: &Client,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    secret: Option<&Secret>,
) -> Result<Token, RegistryError> {
    let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Protocol {
        registry: registry.to_string(),
        repository: String::new(),
        why: format!("the token realm in the registry's challenge is not a URL: {e}"),
    })?;
    if secret.is_some() && !may_receive_credentials(&url, registry) {
        return Err(RegistryError::CredentialsWithheld {
            registry: registry.to_string(),
            realm: scheme::redact_url(&url),
        });
    }
    // Userinfo in a realm would be sent as Basic credentials by the HTTP stack.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let refresh = matches!(secret, Some(Secret::IdentityToken { .. }));
    if !refresh {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        for s in scopes {
            q.append_pair("scope", s);
        }
        if let Some(Secret::Basic { username, .. }) = secret {
            q.append_pair("account", username);
        }
    }
    let method = if refresh { "POST" } else { "GET" };
    let shown = scheme::redact_url(&url);
    let what = format!("{method} {shown}");
    let user = secret.and_then(|s| s.username().map(str::to_string));
    let host = client.host_for(Some(registry), &url)?;
    client
        .retrier()
        .run(registry, &what, || async {
            let rb = match secret {
                Some(Secret::IdentityToken { token, .. }) => {
                    // OAuth2 refresh-token grant (docker's identitytoken flow).
                    let mut form: Vec<(&str, &str)> = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token),
                        ("client_id", "kots-bundle"),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    let joined = scopes.join(" ");
                    if !scopes.is_empty() {
                        form.push(("scope", &joined));
                    }
                    let body = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(form)
                        .finish();
                    host.http
                        .post(url.clone())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(body)
                }
                Some(Secret::Basic { username, password }) => host.http.get(url.clone()).header(
                    reqwest::header::AUTHORIZATION,
                    basic_header(username, password),
                ),
                None => host.http.get(url.clone()),
            };
            let resp = match client
                .transmit(&host, rb, &super::timeout::Meter::new())
                .await
            {
                Ok(r) => r,
                Err(f) => {
                    let err = client.transport_error(registry, &url, &host, &f);
                    return if f.retryable_with(&host) {
                        Attempt::Retry {
                            why: f.why(),
                            last: Err(err),
                            after: None,
                        }
                    } else {
                        Attempt::Done(Err(err))
                    };
                }
            };
            let status = resp.status();
            tracing::debug!(method, url = %shown, status = status.as_u16(), "token");
            if status.is_success() {
                return match client.read_capped(resp, MAX_TOKEN_BODY).await {
                    Ok(body) => Attempt::Done(parse_token(registry, &body)),
                    Err(super::ReadFail::TooLarge) => Attempt::Done(Err(RegistryError::TooLarge {
                        registry: registry.to_string(),
                        what: format!("a token answer (from {shown})"),
                        limit: MAX_TOKEN_BODY,
                    })),
                    Err(super::ReadFail::Io(e)) => Attempt::Retry {
                        why: e.to_string(),
                        last: Err(RegistryError::Protocol {
                            registry: registry.to_string(),
                            repository: String::new(),
                            why: format!("reading the token answer from {shown}: {e}"),
                        }),
                        after: None,
                    },
                };
            }
            let retry_after = retry::retry_after(resp.headers());
            let body = client.read_error_body(resp).await;
            let ctx = error::Context {
                registry,
                repository: "",
                method,
                path: url.path(),
                action: Action::Pull,
                what: "token",
                // A 401/403 from the token service with credentials means they are wrong.
                user: user.as_deref(),
                insufficient_scope: false,
            };
            let status = status.as_u16();
            let err = if (status == 401 || status == 403) && user.is_some() {
                error::from_response(&ctx, 401, &body)
            } else {
                error::from_response(&ctx, status, &body)
            };
            if retry::is_retryable_status(reqwest::StatusCode::from_u16(status).unwrap()) {
                Attempt::Retry {
                    why: format!("HTTP {status}"),
                    last: Err(err),
                    after: retry_after,
                }
            } else {
                Attempt::Done(Err(err))
            }
        })
        .await
}

/// Whether credentials may be sent to this token realm: over HTTPS, or to the registry's
/// own host (which sees them anyway).
fn may_receive_credentials(realm: &reqwest::Url, registry: &str) -> bool {
    if realm.scheme() == "https" {
        return true;
    }
    let registry_host = scheme::strip_port(scheme::api_host(registry));
    let registry_host = registry_host.trim_start_matches('[').trim_end_matches(']');
    realm
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| {
            h.eq_ignore_ascii_case(registry_host)
                || h.eq_ignore_ascii_case(scheme::strip_port(registry))
        })
}

fn parse_token(registry: &str, body: &[u8]) -> Result<Token, RegistryError> {
    let bad = |why: &str| RegistryError::Protocol {
        registry: registry.to_string(),
        repository: String::new(),
        why: format!("the token service's answer {why}"),
    };
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|_| bad("is not JSON"))?;
    let value = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| bad("holds neither `token` nor `access_token`"))?;
    let lifetime = answer
        .expires_in
        .unwrap_or(MIN_TOKEN_LIFETIME)
        .max(MIN_TOKEN_LIFETIME);
    // Refresh a little early so a token does not expire between check and use.
    let expires = Instant::now() + Duration::from_secs(lifetime) - Duration::from_secs(5);
    Ok(Token { value, expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_commas_and_several_params() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.io/token",service="registry.example.io",scope="repository:a/b:pull,push repository:c:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example.io/token".into(),
                service: Some("registry.example.io".into()),
                scope: Some("repository:a/b:pull,push repository:c:pull".into()),
            }
        );
        // Spaces after commas, unquoted values, mixed case, escaped quote, trailing comma.
        let c = parse_challenge(
            r#"bearer  Realm=https://h/t , service = "svc \"x\"" , error="insufficient_scope","#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://h/t".into(),
                service: Some("svc \"x\"".into()),
                scope: None,
            }
        );
    }

    #[test]
    fn basic_unknown_and_broken() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge(r#"Negotiate abc"#), None);
        // Bearer without a realm cannot be used.
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn scopes_merge_and_key_is_order_free() {
        let mut s = vec![repo_scope("a", true)];
        merge_scopes(&mut s, "repository:a:pull,push repository:b:pull");
        assert_eq!(s, ["repository:a:pull,push", "repository:b:pull"]);
        assert_eq!(
            scope_key(&["x".into(), "a".into()]),
            scope_key(&["a".into(), "x".into(), "a".into()])
        );
        assert_eq!(repo_scope("org/r", false), "repository:org/r:pull");
    }

    #[test]
    fn token_answers() {
        let t = parse_token("r", br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.expires > Instant::now() + Duration::from_secs(290));
        let t = parse_token("r", br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.value, "xyz");
        // Default (and floor) lifetime is 60 s.
        assert!(t.expires > Instant::now() + Duration::from_secs(50));
        assert!(t.expires < Instant::now() + Duration::from_secs(61));
        assert!(parse_token("r", br#"{"expires_in":3}"#).is_err());
        assert!(!format!("{t:?}").contains("xyz"));
    }

    #[test]
    fn credentials_go_to_https_realms_or_the_registrys_own_host_only() {
        let ok = |realm: &str, registry: &str| {
            may_receive_credentials(&reqwest::Url::parse(realm).unwrap(), registry)
        };
        assert!(ok("https://auth.docker.io/token", "docker.io"));
        assert!(ok("http://127.0.0.1:5001/token", "127.0.0.1:5000"));
        assert!(ok("http://Reg.Local/token", "reg.local:5000"));
        assert!(ok("http://[::1]:9/token", "[::1]:5000"));
        assert!(!ok("http://localhost:5001/token", "127.0.0.1:5000"));
        assert!(!ok("http://auth.example/token", "reg.example"));
        assert!(!ok("http://reg.example.evil/token", "reg.example"));
    }

    #[test]
    fn scrub_replaces_every_known_secret() {
        let a = Auth::new(
            Some((
                "r".into(),
                Secret::Basic {
                    username: "bob".into(),
                    password: "hunter2-pw".into(),
                },
            )),
            None,
        );
        a.tokens.lock().unwrap().insert(
            ("r".into(), "s".into()),
            Token {
                value: "tok-123456".into(),
                expires: Instant::now() + Duration::from_secs(60),
            },
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:hunter2-pw");
        let body = format!("bad password hunter2-pw / Basic {basic} / Bearer tok-123456");
        let out = String::from_utf8(a.scrub(body.as_bytes())).unwrap();
        assert!(
            !out.contains("hunter2") && !out.contains(&basic) && !out.contains("tok-123456"),
            "{out}"
        );
        assert!(out.contains("bad password <redacted>"), "{out}");
    }

    #[test]
    fn header_values_are_marked_sensitive() {
        assert!(basic_header("u", "p").is_sensitive());
        assert_eq!(basic_header("u", "p").to_str().unwrap(), "Basic dTpw");
    }
}
