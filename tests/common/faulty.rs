//! A faulty network between us and a real registry: a loopback HTTP proxy that forwards each
//! request to the registry unless a rule says to answer 5xx, 429 with `Retry-After`, to cut
//! the response after some bytes (a connection reset mid-blob), to stall first, to trickle
//! the response a byte at a time, to take an upload slowly, to answer with a huge body, to
//! cut or corrupt a response body, or to answer in the registry's place. With a
//! [`BearerGate`] it also stands in for a registry that asks for Bearer tokens.
//!
//! Each proxied connection carries one request (`Connection: close` is forced), so every
//! request gets its own decision.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::token::BearerGate;

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (with an empty body) instead of forwarding.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`.
    TooMany(u64),
    /// Forward, but close the connection after this many bytes of the response.
    Cut(usize),
    /// Forward after this delay.
    Delay(Duration),
    /// Answer this status with this (JSON) body instead of forwarding.
    Answer(u16, &'static str),
    /// Forward the response head, then its body one byte per interval.
    Trickle(Duration),
    /// Forward, but pass the request body on at about this many bytes a second.
    SlowUpload(usize),
    /// Answer this status with a body of this many bytes (`Content-Length` declared or not);
    /// what the client took is counted in [`FaultyProxy::huge_sent`].
    Huge(u16, u64, bool),
    /// Forward without the request's `Range` header (a server that ignores ranges).
    NoRange,
    /// Forward with the path's query left off: a `POST .../blobs/uploads/?mount=` then opens
    /// a plain upload session (202), as on a registry without cross-repository mounts.
    NoQuery,
    /// Forward, but close the connection after this many bytes of the response body.
    CutBody(usize),
    /// Forward with one byte in the middle of the response body flipped.
    Corrupt,
    /// Answer this status with these headers and this body instead of forwarding (an API
    /// the registry behind lacks, e.g. referrers).
    Reply(u16, Vec<(String, String)>, Vec<u8>),
}

/// A rule: the first `times` requests whose `METHOD target` contains `matching` (empty:
/// every request) get `fault`, the others none.
pub fn first(
    times: u32,
    matching: &str,
    fault: Fault,
) -> impl Fn(&str, &str, usize) -> Option<Fault> + Send + Sync + 'static {
    let (left, matching) = (AtomicU32::new(times), matching.to_string());
    move |method, path, _| {
        let hit = format!("{method} {path}").contains(&matching)
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        hit.then(|| fault.clone())
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
}

type Rule = dyn Fn(&str, &str, usize) -> Option<Fault> + Send + Sync;

pub struct FaultyProxy {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes of [`Fault::Huge`] bodies the client read (written without error).
    pub huge_sent: Arc<AtomicU64>,
    rule: Arc<Mutex<Box<Rule>>>,
    gate: Arc<Mutex<Option<Arc<BearerGate>>>>,
    stop: Arc<AtomicBool>,
}

impl FaultyProxy {
    /// A proxy in front of `upstream` (`127.0.0.1:PORT`); `rule(method, path, n)` decides the
    /// fault for the n-th request (from 0).
    pub fn start(
        upstream: &str,
        rule: impl Fn(&str, &str, usize) -> Option<Fault> + Send + Sync + 'static,
    ) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Mutex<Box<Rule>>> = Arc::new(Mutex::new(Box::new(rule)));
        let stop = Arc::new(AtomicBool::new(false));
        let huge_sent = Arc::new(AtomicU64::new(0));
        let gate: Arc<Mutex<Option<Arc<BearerGate>>>> = Arc::new(Mutex::new(None));
        let (s, r, st, up, hs) = (
            seen.clone(),
            rule.clone(),
            stop.clone(),
            upstream.to_string(),
            huge_sent.clone(),
        );
        let (g, me) = (gate.clone(), addr.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (s, r, up, hs) = (s.clone(), r.clone(), up.clone(), hs.clone());
                let (g, me) = (g.lock().unwrap().clone(), me.clone());
                std::thread::spawn(move || handle(conn, &up, &s, &r, &hs, g.as_deref(), &me));
            }
        });
        FaultyProxy {
            addr,
            seen,
            huge_sent,
            rule,
            gate,
            stop,
        }
    }

    /// Puts `gate` in front of the registry: requests without its token get a 401
    /// challenge naming this proxy's `/token`, which the gate answers.
    pub fn set_gate(&self, gate: Arc<BearerGate>) {
        *self.gate.lock().unwrap() = Some(gate);
    }

    /// `METHOD path` of every request so far (the query left out), and ` RANGE` when it
    /// asked for one.
    pub fn log(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                let path = s.path.split('?').next().unwrap_or("");
                match &s.range {
                    Some(r) => format!("{} {path} {r}", s.method),
                    None => format!("{} {path}", s.method),
                }
            })
            .collect()
    }

    /// Replaces the rule (e.g. no faults for a re-run).
    pub fn set_rule(
        &self,
        rule: impl Fn(&str, &str, usize) -> Option<Fault> + Send + Sync + 'static,
    ) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn faults(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.fault.is_some())
            .cloned()
            .collect()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<Seen>>,
    rule: &Mutex<Box<Rule>>,
    huge_sent: &AtomicU64,
    gate: Option<&BearerGate>,
    me: &str,
) {
    // Read the request head.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        // A TLS ClientHello: answer as a plain-HTTP server does, so the client falls back.
        if head == [0x16] {
            let _ = client.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
            return;
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let mut length = 0usize;
    let mut range = None;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
        headers.push(l.to_string());
    }
    if let Some(gate) = gate {
        let authorization = headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        });
        let mut body = Vec::new();
        if path.split('?').next() == Some("/token") {
            let _ = (&mut client).take(length as u64).read_to_end(&mut body);
        }
        if let Some(a) = gate.check(me, &method, &path, authorization.as_deref(), &body) {
            seen.lock().unwrap().push(Seen {
                method: method.clone(),
                path: path.clone(),
                fault: None,
                range: range.clone(),
            });
            let _ = std::io::copy(
                &mut (&mut client).take((length - body.len()) as u64),
                &mut std::io::sink(),
            );
            let mut head = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                a.status,
                a.body.len()
            );
            for (k, v) in &a.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = client.write_all(head.as_bytes());
            let _ = client.write_all(&a.body);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        headers.retain(|h| !h.to_ascii_lowercase().starts_with("authorization:"));
    }
    let fault = {
        let mut seen = seen.lock().unwrap();
        let n = seen.len();
        let fault = (rule.lock().unwrap())(&method, &path, n);
        seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            fault: fault.clone(),
            range: range.clone(),
        });
        if fault == Some(Fault::NoRange) {
            headers.retain(|h| !h.to_ascii_lowercase().starts_with("range:"));
        }
        fault
    };
    let answer = |client: &mut TcpStream, status: &str, extra: &str, body: &str| {
        // Drain the request body first, so the client reads our answer, not a reset.
        let _ = std::io::copy(&mut client.take(length as u64), &mut std::io::sink());
        let _ = client.write_all(
            format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let _ = client.shutdown(Shutdown::Both);
    };
    let mut cut = None;
    let mut body_cut = None;
    let mut corrupt = false;
    let mut trickle = None;
    let mut upload_rate = None;
    match fault {
        Some(Fault::Huge(code, size, declared)) => {
            let _ = std::io::copy(&mut (&mut client).take(length as u64), &mut std::io::sink());
            let len = if declared {
                format!("Content-Length: {size}\r\n")
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\n{len}Connection: close\r\n\r\n"
            );
            if client.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b'a'; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if client.write_all(&chunk[..n]).is_err() {
                    break;
                }
                huge_sent.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::Trickle(d)) => trickle = Some(d),
        Some(Fault::SlowUpload(rate)) => upload_rate = Some(rate),
        Some(Fault::Status(code)) => {
            return answer(&mut client, &format!("{code} Injected"), "", "")
        }
        Some(Fault::Answer(code, body)) => {
            return answer(
                &mut client,
                &format!("{code} Injected"),
                "Content-Type: application/json\r\n",
                body,
            )
        }
        Some(Fault::Reply(code, extra, body)) => {
            let _ = std::io::copy(&mut (&mut client).take(length as u64), &mut std::io::sink());
            let mut head = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in &extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = client.write_all(head.as_bytes());
            let _ = client.write_all(&body);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::TooMany(secs)) => {
            return answer(
                &mut client,
                "429 Too Many Requests",
                &format!("Retry-After: {secs}\r\n"),
                "",
            )
        }
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        Some(Fault::Cut(n)) => cut = Some(n),
        Some(Fault::CutBody(n)) => body_cut = Some(n),
        Some(Fault::Corrupt) => corrupt = true,
        Some(Fault::NoRange) | Some(Fault::NoQuery) | None => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let path = match fault {
        Some(Fault::NoQuery) => path.split('?').next().unwrap_or_default().to_string(),
        _ => path,
    };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if server.write_all(out.as_bytes()).is_err() {
        return;
    }
    // Request body upstream, response back, each in its own direction.
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || match upload_rate {
        None => {
            let _ = std::io::copy(&mut (&mut c2).take(length as u64), &mut s2);
        }
        Some(rate) => {
            // A tenth of a second's worth at a time.
            let piece = (rate / 10).max(1);
            let mut buf = vec![0u8; piece];
            let mut left = length;
            while left > 0 {
                let want = left.min(piece);
                if c2.read_exact(&mut buf[..want]).is_err() || s2.write_all(&buf[..want]).is_err() {
                    break;
                }
                left -= want;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    let mut head_seen: Vec<u8> = Vec::new();
    // For the body faults: the response head so far, then where the body starts and its
    // declared length.
    let mut response_head: Vec<u8> = Vec::new();
    let mut body_at: Option<(usize, Option<usize>)> = None;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if body_at.is_none() && (body_cut.is_some() || corrupt) {
            response_head.extend_from_slice(&buf[..n]);
            if let Some(p) = response_head.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response_head[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok());
                body_at = Some((p + 4, len));
            }
        }
        if let (true, Some((start, Some(len)))) = (corrupt, body_at) {
            let at = start + len / 2;
            if len > 0 && (sent..sent + n).contains(&at) {
                buf[at - sent] ^= 0x01;
            }
        }
        let cut = cut.or_else(|| Some(body_at?.0 + body_cut?));
        let n = match cut {
            Some(limit) if sent + n >= limit => {
                let _ = client.write_all(&buf[..limit - sent]);
                break;
            }
            _ => n,
        };
        if let Some(d) = trickle {
            // The head at once (up to its blank line), then the body a byte at a time.
            head_seen.extend_from_slice(&buf[..n.min(64 * 1024)]);
            let body_from = head_seen
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| (p + 4).saturating_sub(head_seen.len() - n).min(n))
                .unwrap_or(n);
            if client.write_all(&buf[..body_from]).is_err() {
                break;
            }
            let mut gone = false;
            for b in &buf[body_from..n] {
                std::thread::sleep(d);
                if client.write_all(std::slice::from_ref(b)).is_err() {
                    gone = true;
                    break;
                }
            }
            if gone {
                break;
            }
        } else if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
}
