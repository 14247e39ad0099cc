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
use super::retry::{self, Attempt, RetryPolicy};
use super::scheme;

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
        http: &reqwest::Client,
        policy: &RetryPolicy,
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
                    http,
                    policy,
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
/// as `ping` does). Retries like every other request.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    secret: Option<&Secret>,
) -> Result<Token, RegistryError> {
    let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Protocol {
        registry: registry.to_string(),
        repository: String::new(),
        why: format!("the token realm {realm:?} in the registry's challenge is not a URL: {e}"),
    })?;
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
    let what = format!("{method} {}", url_without_query(&url));
    let user = secret.and_then(|s| s.username().map(str::to_string));
    retry::run(policy, &what, || async {
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
                http.post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            Some(Secret::Basic { username, password }) => http.get(url.clone()).header(
                reqwest::header::AUTHORIZATION,
                basic_header(username, password),
            ),
            None => http.get(url.clone()),
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = RegistryError::Unreachable {
                    registry: registry.to_string(),
                    url: url_without_query(&url),
                    message: format!("token service: {}", scheme::error_chain(&e)),
                    hint: if scheme::is_tls_error(&e) {
                        scheme::tls_hint(registry)
                    } else {
                        String::new()
                    },
                };
                return if retry::is_retryable_error(&e) {
                    Attempt::Retry {
                        why: err.to_string(),
                        last: Err(err),
                        after: None,
                    }
                } else {
                    Attempt::Done(Err(err))
                };
            }
        };
        let status = resp.status();
        tracing::debug!(method, url = %url_without_query(&url), status = status.as_u16(), "token");
        if status.is_success() {
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return Attempt::Retry {
                        why: scheme::error_chain(&e),
                        last: Err(RegistryError::Protocol {
                            registry: registry.to_string(),
                            repository: String::new(),
                            why: format!("reading the token answer: {}", scheme::error_chain(&e)),
                        }),
                        after: None,
                    }
                }
            };
            return Attempt::Done(parse_token(registry, &body));
        }
        let retry_after = retry::retry_after(resp.headers());
        let body = resp.bytes().await.unwrap_or_default();
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

pub(crate) fn url_without_query(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
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
    fn header_values_are_marked_sensitive() {
        assert!(basic_header("u", "p").is_sensitive());
        assert_eq!(basic_header("u", "p").to_str().unwrap(), "Basic dTpw");
    }
}
