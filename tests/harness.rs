//! The registry harness itself works: a blob pushed over the raw distribution API reads back.

mod common;

use common::{raw_http, raw_http_location, TestRegistry};
use sha2::{Digest, Sha256};

#[test]
fn pushes_and_reads_back_one_blob() {
    let reg = TestRegistry::start();
    let data = b"kots-bundle harness blob".to_vec();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));

    let (status, loc) = raw_http_location(&reg.addr, "POST", "/v2/harness/test/blobs/uploads/");
    assert_eq!(status, 202, "start upload: {}", reg.log());
    let loc = loc.expect("Location header");
    let path = loc
        .strip_prefix(&format!("http://{}", reg.addr))
        .unwrap_or(&loc)
        .to_string();
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _) = raw_http(
        &reg.addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    assert_eq!(status, 201, "finish upload: {}", reg.log());

    let (status, body) = reg.http_get(&format!("/v2/harness/test/blobs/{digest}"));
    assert_eq!(status, 200);
    assert_eq!(body, data);

    let (status, _) = reg.http_get(&format!("/v2/harness/test/blobs/sha256:{}", "0".repeat(64)));
    assert_eq!(status, 404, "a blob never pushed must not be found");
}
