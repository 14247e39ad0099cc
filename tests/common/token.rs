//! A token issuer for registries configured with `auth: token` (distribution's bearer-token
//! scheme, docs/spec/auth/token.md and jwt.md), standing in for Docker Hub's or Harbor's auth
//! server, which cannot run here.
//!
//! It is a real HTTP/1.1 server on a loopback port (a std thread per connection). It checks
//! HTTP Basic credentials (or the OAuth2 password grant of docs/spec/auth/oauth.md), filters the
//! requested scopes through a policy (pull anything; push only under given prefixes) and
//! answers a JWT signed with ES256 whose certificate chain (`x5c`) leads to the CA the
//! registry trusts (`rootcertbundle`). Every request is recorded so tests can assert on what
//! a client asked for and what it was given.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::tls::TestCa;

pub const SERVICE: &str = "kots-bundle-test-registry";
pub const ISSUER: &str = "kots-bundle-test-issuer";
/// Seconds a token lives (the spec's floor is 60).
pub const EXPIRES_IN: u64 = 300;

/// One resource scope, `type:name:action,action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses `repository:myapp/x:pull,push`; the name may itself hold colons (a port).
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    pub fn has(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }
}

/// One request to the token endpoint, as the server saw and answered it.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// `GET` (the token spec) or `POST` (the OAuth2 form).
    pub method: String,
    /// The user name the client presented, right or wrong.
    pub user: Option<String>,
    /// Credentials matched; `false` means the answer was 401.
    pub authenticated: bool,
    pub service: Option<String>,
    pub requested: Vec<Scope>,
    pub granted: Vec<Scope>,
}

/// Who may do what.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    pub user: String,
    pub password: String,
    /// Repositories whose name starts with one of these may be pushed to (e.g. `myapp/`);
    /// every repository may be pulled. Nothing else (`delete`, `*`, catalog) is granted.
    pub push_prefixes: Vec<String>,
}

impl TokenPolicy {
    pub fn new(user: &str, password: &str, push_prefixes: &[&str]) -> TokenPolicy {
        TokenPolicy {
            user: user.to_string(),
            password: password.to_string(),
            push_prefixes: push_prefixes.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn grant(&self, scope: &Scope) -> Option<Scope> {
        if scope.kind != "repository" {
            return None;
        }
        let actions: Vec<String> = scope
            .actions
            .iter()
            .filter(|a| match a.as_str() {
                "pull" => true,
                "push" => self.push_prefixes.iter().any(|p| scope.name.starts_with(p)),
                _ => false,
            })
            .cloned()
            .collect();
        (!actions.is_empty()).then(|| Scope {
            kind: scope.kind.clone(),
            name: scope.name.clone(),
            actions,
        })
    }
}

struct Shared {
    policy: TokenPolicy,
    /// The signing certificate (DER) for `x5c`, and its key.
    cert_der: Vec<u8>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    requests: Mutex<Vec<TokenRequest>>,
    jti: AtomicU64,
}

pub struct TokenServer {
    /// `127.0.0.1:PORT` of the token endpoint.
    pub addr: String,
    /// `http://127.0.0.1:PORT/token`: what the registry names in `WWW-Authenticate`.
    pub realm: String,
    /// PEM of the CA the signing certificate chains to: the registry's `rootcertbundle`.
    pub root_cert_bundle: PathBuf,
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(policy: TokenPolicy) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("kots-bundle test token CA");
        let root_cert_bundle = ca.write_cert(&dir.path().join("token-root.pem"));
        let signing = ca.issue_signing("kots-bundle test token signer");
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signing.key_pkcs8, &rng)
                .expect("load the signing key");
        let shared = Arc::new(Shared {
            policy,
            cert_der: signing.cert_der,
            key,
            rng,
            requests: Mutex::new(Vec::new()),
            jti: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        // A broken client connection only ends that connection.
                        let _ = serve(conn, &shared);
                    });
                }
            })
        };
        TokenServer {
            realm: format!("http://{addr}/token"),
            addr,
            root_cert_bundle,
            dir,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// Names another realm in the registry's configuration (a proxy in front of this server,
    /// or another host name for it); set before the registry starts.
    pub fn set_realm(&mut self, realm: String) {
        self.realm = realm;
    }

    /// The `auth:` section for the registry's config.yml.
    pub fn auth_yaml(&self) -> String {
        format!(
            "token:\n  realm: {}\n  service: {SERVICE}\n  issuer: {ISSUER}\n  rootcertbundle: {}\n",
            self.realm,
            self.root_cert_bundle.display()
        )
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Repositories that were granted `action` in some token.
    pub fn granted(&self, action: &str) -> Vec<String> {
        self.names(action, |r| &r.granted)
    }

    /// Repositories for which `action` was asked for (granted or not).
    pub fn requested(&self, action: &str) -> Vec<String> {
        self.names(action, |r| &r.requested)
    }

    /// The repositories of the scopes `which` picks from each request that name `action`,
    /// sorted, once each.
    fn names(&self, action: &str, which: impl Fn(&TokenRequest) -> &Vec<Scope>) -> Vec<String> {
        let mut names: Vec<String> = self
            .requests()
            .iter()
            .flat_map(|r| which(r).clone())
            .filter(|s| s.has(action))
            .map(|s| s.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

fn respond(mut conn: &TcpStream, status: &str, extra: &[(&str, &str)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
    let _ = conn.flush();
}

fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let req = read_request(&conn)?;
    let (path, query) = req
        .target
        .split_once('?')
        .unwrap_or((req.target.as_str(), ""));
    if path != "/token" {
        respond(&conn, "404 Not Found", &[], "{\"error\":\"not found\"}");
        return Ok(());
    }
    let mut service = None;
    let mut scopes = Vec::new();
    let mut user = None;
    let mut password = None;
    // Both forms carry `service` and `scope`; a scope value may hold several, space-separated.
    let mut take = |pairs: url::form_urlencoded::Parse<'_>, form: bool| {
        for (k, v) in pairs {
            match k.as_ref() {
                "service" => service = Some(v.into_owned()),
                "scope" => scopes.extend(v.split_whitespace().filter_map(Scope::parse)),
                "username" if form => user = Some(v.into_owned()),
                "password" if form => password = Some(v.into_owned()),
                _ => {}
            }
        }
    };
    take(url::form_urlencoded::parse(query.as_bytes()), false);
    match req.method.as_str() {
        "GET" => {
            if let Some((u, p)) = basic_credentials(req.header("authorization")) {
                user = Some(u);
                password = Some(p);
            }
        }
        "POST" => {
            let form = url::form_urlencoded::parse(&req.body);
            let grant = form
                .clone()
                .find(|(k, _)| k == "grant_type")
                .map(|(_, v)| v.into_owned());
            if grant.as_deref() != Some("password") {
                respond(
                    &conn,
                    "400 Bad Request",
                    &[],
                    "{\"error\":\"unsupported_grant_type\"}",
                );
                return Ok(());
            }
            take(form, true);
        }
        _ => {
            respond(&conn, "405 Method Not Allowed", &[], "{}");
            return Ok(());
        }
    }
    let authenticated = user.as_deref() == Some(shared.policy.user.as_str())
        && password.as_deref() == Some(shared.policy.password.as_str());
    let granted: Vec<Scope> = if authenticated {
        scopes
            .iter()
            .filter_map(|s| shared.policy.grant(s))
            .collect()
    } else {
        Vec::new()
    };
    shared.requests.lock().unwrap().push(TokenRequest {
        method: req.method.clone(),
        user: user.clone(),
        authenticated,
        service: service.clone(),
        requested: scopes,
        granted: granted.clone(),
    });
    if !authenticated {
        respond(
            &conn,
            "401 Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"kots-bundle test token server\"")],
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid username or password\"}]}",
        );
        return Ok(());
    }
    let token = sign(
        shared,
        user.as_deref().unwrap_or_default(),
        service.as_deref().unwrap_or(SERVICE),
        &granted,
    );
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": EXPIRES_IN,
    });
    respond(&conn, "200 OK", &[], &body.to_string());
    Ok(())
}

fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let b64 = header?.strip_prefix("Basic ")?;
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A compact JWS (ES256) in the shape distribution 2.8 verifies: `aud` a single string,
/// `access` a list of `{type, name, actions}`, the signer's certificate in `x5c`.
fn sign(shared: &Shared, user: &str, service: &str, granted: &[Scope]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [STANDARD.encode(&shared.cert_der)],
    });
    let access: Vec<serde_json::Value> = granted
        .iter()
        .map(|s| serde_json::json!({"type": s.kind, "name": s.name, "actions": s.actions}))
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": service,
        "exp": now + EXPIRES_IN,
        "nbf": now,
        "iat": now,
        "jti": format!("{now}-{}", shared.jti.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = shared
        .key
        .sign(&shared.rng, signing_input.as_bytes())
        .expect("sign token");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// A registry front that asks for Bearer tokens and issues them itself, for a registry with
/// no auth behind a [`super::faulty::FaultyProxy`]: the token is one plain string the test
/// can rotate (a registry that expires its tokens), and every token request is recorded as
/// it was sent. Unlike [`TokenServer`] it answers `access_token` only (the OAuth2 name, which
/// a client must accept) and takes the OAuth2 refresh-token grant, docker's `identitytoken`,
/// with the password standing in for the refresh token.
pub struct BearerGate {
    user: String,
    pass: String,
    token: Mutex<String>,
    /// Query strings of the GET token requests, `POST <form>` of the POST ones.
    token_requests: Mutex<Vec<String>>,
}

/// An answer the gate gives instead of letting a request through.
pub struct GateAnswer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl BearerGate {
    pub fn new(user: &str, pass: &str, token: &str) -> Arc<BearerGate> {
        Arc::new(BearerGate {
            user: user.to_string(),
            pass: pass.to_string(),
            token: Mutex::new(token.to_string()),
            token_requests: Mutex::new(Vec::new()),
        })
    }

    /// From now on only `token` is accepted (the cached one gets a 401).
    pub fn rotate(&self, token: &str) {
        *self.token.lock().unwrap() = token.to_string();
    }

    pub fn token_requests(&self) -> Vec<String> {
        self.token_requests.lock().unwrap().clone()
    }

    /// What the gate answers to a request for `target` reaching the proxy at `me`; `None`
    /// lets it through (without its Authorization, which the registry does not need).
    /// `body` is read only for the token endpoint.
    pub fn check(
        &self,
        me: &str,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Option<GateAnswer> {
        let path = target.split('?').next().unwrap_or("");
        let token = self.token.lock().unwrap().clone();
        if path == "/token" {
            let form = String::from_utf8_lossy(body).into_owned();
            self.token_requests
                .lock()
                .unwrap()
                .push(if method == "POST" {
                    format!("POST {form}")
                } else {
                    target
                        .split_once('?')
                        .map(|x| x.1.to_string())
                        .unwrap_or_default()
                });
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", self.user, self.pass))
            );
            let refresh = method == "POST"
                && form.contains("grant_type=refresh_token")
                && form.contains(&format!("refresh_token={}", self.pass));
            return Some(if authorization == Some(expected.as_str()) || refresh {
                GateAnswer {
                    status: 200,
                    headers: vec![("Content-Type", "application/json".into())],
                    body: format!(r#"{{"access_token":"{token}","expires_in":300}}"#).into_bytes(),
                }
            } else {
                GateAnswer {
                    status: 401,
                    headers: Vec::new(),
                    body: br#"{"details":"incorrect username or password"}"#.to_vec(),
                }
            });
        }
        if authorization == Some(format!("Bearer {token}").as_str()) {
            return None;
        }
        let scope = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split("/manifests/").next())
            .and_then(|p| p.split("/blobs/").next())
            .filter(|p| !p.is_empty())
            .map(|repo| {
                let action = if method == "GET" || method == "HEAD" {
                    "pull"
                } else {
                    "pull,push"
                };
                format!(",scope=\"repository:{repo}:{action}\"")
            })
            .unwrap_or_default();
        let challenge =
            format!("Bearer realm=\"http://{me}/token\",service=\"test-registry\"{scope}");
        Some(GateAnswer {
            status: 401,
            headers: vec![
                ("WWW-Authenticate", challenge),
                ("Content-Type", "application/json".into()),
            ],
            body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                .to_vec(),
        })
    }
}
