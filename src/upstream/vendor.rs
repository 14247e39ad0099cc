//! The Replicated vendor API (`replicated.app`, or the license's `spec.endpoint`) as KOTS
//! speaks it: the release download of `replicated://APP[/CHANNEL]` with its query
//! (`channelSequence`, `versionLabel`, `licenseSequence`, `isSemverSupported`,
//! `isEmbeddedCluster`, `selectedChannelId`), the `X-Replicated-*` headers of the answer
//! ([`VendorRelease`], kept in the archive metadata and `state.json`), and the pending
//! releases an update checks for a required one it would skip.
//!
//! Semantics follow KOTS's `pkg/replicatedapp/upstream.go` (`GetRequest`),
//! `pkg/upstream/replicated.go` (`downloadReplicatedApp`, `listPendingChannelReleases`),
//! `cmd/kots/cli/util.go` + `pkg/kotsutil` (which channel a license selects) and
//! `pkg/update/required.go` (a required release cannot be skipped).

use serde::{Deserialize, Serialize};

use crate::license::License;
use crate::upstream::{self, UpstreamError, UpstreamOptions};

/// The channel slug KOTS selects when the upstream names none (`extractPreferredChannelSlug`).
const DEFAULT_CHANNEL_SLUG: &str = "stable";

/// What the vendor API said about the release it served (`X-Replicated-*` headers): KOTS's
/// update cursor, kept so an update knows where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VendorRelease {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel_name: String,
    /// `X-Replicated-ChannelSequence`: the release's place on its channel (KOTS's cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_sequence: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// `X-Replicated-ReleasedAt`, RFC 3339 as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// `X-Replicated-IsRequired`: an update may not skip this release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_required: bool,
    /// Export only: the required releases before this one on its channel (KOTS's airgap
    /// `spec.requiredReleases`), so an import into an older app directory can refuse to
    /// skip one without asking the vendor API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_releases: Vec<RequiredRelease>,
}

/// A release an update may not skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredRelease {
    pub channel_sequence: i64,
    pub version_label: String,
}

/// What to ask for, besides the license.
#[derive(Debug, Clone, Default)]
pub struct ReleaseQuery {
    /// `--channel` or `replicated://APP/CHANNEL`: a channel slug, sent in the path.
    pub channel: Option<String>,
    /// `--app-version-label`: this release instead of the channel's latest.
    pub version_label: Option<String>,
    /// The release the kept app directory holds (an update); `None` on a first pull.
    pub current: Option<VendorRelease>,
    /// Also list the channel's required releases before the one served (for an archive).
    pub list_required: bool,
}

/// Why a download did not give a release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    /// The license cannot get it: a channel it lacks, the vendor API's refusal (its message).
    #[error("{0}")]
    License(String),
    /// The update would skip a required release.
    #[error(transparent)]
    RequiredSkipped(#[from] RequiredSkipped),
}

/// An update past a required release: KOTS's message, and the oldest such release (the one
/// to install first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct RequiredSkipped {
    pub why: String,
    pub oldest: String,
}

/// One entry of `GET /release/APP/pending`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingRelease {
    channel_sequence: i64,
    #[serde(default)]
    version_label: String,
    #[serde(default)]
    is_required: bool,
}

/// The license's channel for `slug` (KOTS's `FindChannelIDInLicense`): a license without
/// `spec.channels` has one channel, its top-level `channelID`; a multi-channel license must
/// list the slug (`stable` when none was asked for).
pub fn selected_channel_id(license: &License, slug: Option<&str>) -> Result<String, String> {
    if license.channels.is_empty() {
        return Ok(license.channel_id.clone());
    }
    let wanted = slug.unwrap_or(DEFAULT_CHANNEL_SLUG);
    license
        .channels
        .iter()
        .find(|c| c.channel_slug == wanted)
        .map(|c| c.channel_id.clone())
        .ok_or_else(|| {
            let slugs: Vec<&str> = license
                .channels
                .iter()
                .map(|c| c.channel_slug.as_str())
                .collect();
            format!(
                "has no channel {wanted:?} (its channels: {}); pass --channel SLUG",
                slugs.join(", ")
            )
        })
}

/// The query KOTS sends with a release download (`GetRequest`) or a pending list, keys in
/// Go's `url.Values.Encode` order (sorted).
fn query(
    license: &License,
    cursor: &str,
    version_label: Option<&str>,
    selected_channel_id: &str,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("channelSequence", cursor);
    q.append_pair("isEmbeddedCluster", "false");
    q.append_pair("isSemverSupported", "true");
    q.append_pair("licenseSequence", &license.license_sequence.to_string());
    q.append_pair("selectedChannelId", selected_channel_id);
    if let Some(v) = version_label {
        q.append_pair("versionLabel", v);
    }
    q.finish()
}

/// `endpoint/seg/seg?query`: the endpoint's own path dropped (as KOTS does), each segment
/// percent-encoded (a slug cannot change the path).
fn api_url(endpoint: &str, segments: &[&str], query: &str) -> Result<String, VendorError> {
    let mut u = url::Url::parse(endpoint)
        .map_err(|e| VendorError::License(format!("endpoint {endpoint:?}: {e}")))?;
    u.path_segments_mut()
        .map_err(|()| VendorError::License(format!("endpoint {endpoint:?} cannot have a path")))?
        .clear()
        .extend(segments);
    u.set_query(Some(query));
    Ok(u.into())
}

/// The vendor API's address: `$REPLICATED_APP_ENDPOINT` (as KOTS reads it), else the
/// license's endpoint.
fn endpoint(license: &License) -> String {
    std::env::var("REPLICATED_APP_ENDPOINT").unwrap_or(license.endpoint.clone())
}

/// Downloads the release `query` asks for: the tarball and what the headers say about it.
/// An update (`query.current` on the same channel) that would skip a required release is
/// refused, naming it, before the release's files are read.
pub async fn download(
    license: &License,
    query_in: &ReleaseQuery,
    opts: &UpstreamOptions,
) -> Result<(Vec<u8>, VendorRelease), VendorError> {
    let channel_id =
        selected_channel_id(license, query_in.channel.as_deref()).map_err(VendorError::License)?;
    // A new channel starts over: its sequences are not comparable with the old one's.
    let current = query_in
        .current
        .as_ref()
        .filter(|c| c.channel_id.is_empty() || c.channel_id == channel_id);
    let cursor = current
        .and_then(|c| c.channel_sequence)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let endpoint = endpoint(license);
    let mut path = vec!["release", license.app_slug.as_str()];
    path.extend(query_in.channel.as_deref());
    let url = api_url(
        &endpoint,
        &path,
        &query(
            license,
            &cursor,
            query_in.version_label.as_deref(),
            &channel_id,
        ),
    )?;
    let (body, headers) = get(&url, license, opts)
        .await
        .map_err(VendorError::License)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut release = VendorRelease {
        channel_id: header("X-Replicated-ChannelID").unwrap_or_default(),
        channel_name: header("X-Replicated-ChannelName").unwrap_or_default(),
        channel_sequence: header("X-Replicated-ChannelSequence").and_then(|s| s.parse().ok()),
        version_label: header("X-Replicated-VersionLabel"),
        released_at: header("X-Replicated-ReleasedAt"),
        // Go's strconv.ParseBool, as KOTS reads it.
        is_required: matches!(
            header("X-Replicated-IsRequired").as_deref(),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        ),
        required_releases: Vec::new(),
    };
    let pending = |cursor: String| {
        let url = api_url(
            &endpoint,
            &["release", &license.app_slug, "pending"],
            &query(license, &cursor, None, &channel_id),
        );
        async move {
            let url = url?;
            let (list, _) = get(&url, license, opts)
                .await
                .map_err(VendorError::License)?;
            required_in(&list).map_err(|why| VendorError::License(format!("{url}: {why}")))
        }
    };
    if let (Some(cur), Some(to)) = (current, release.channel_sequence) {
        if cur.channel_sequence.is_some_and(|c| to > c) {
            // KOTS's update check: what is pending after the kept release.
            check_update(cur, &release, &pending(cursor.clone()).await?)?;
        }
    }
    if query_in.list_required {
        if let Some(to) = release.channel_sequence {
            // The whole channel (no cursor): an archive may land on any older directory.
            release.required_releases = pending(String::new())
                .await?
                .into_iter()
                .filter(|r| r.channel_sequence < to)
                .collect();
        }
    }
    Ok((body, release))
}

/// GET with the license (Basic `licenseID:licenseID`); the vendor's own message on refusal.
async fn get(
    url: &str,
    license: &License,
    opts: &UpstreamOptions,
) -> Result<(Vec<u8>, reqwest::header::HeaderMap), String> {
    let basic = (license.license_id.as_str(), license.license_id.as_str());
    upstream::fetch(url, opts, Some(basic))
        .await
        .map_err(|e| match e {
            UpstreamError::Fetch { why, .. } => {
                format!("the vendor API at {url} refused the request: {why}")
            }
            other => other.to_string(),
        })
}

/// Most bytes of a pending-releases answer read: its required releases go into the archive
/// metadata, which readers refuse past 64 MiB (a channel of thousands of releases is well
/// under 1 MiB).
const MAX_PENDING: usize = 8 << 20;

/// The required releases of a `GET /release/APP/pending` answer.
fn required_in(pending_json: &[u8]) -> Result<Vec<RequiredRelease>, String> {
    if pending_json.len() > MAX_PENDING {
        return Err(format!(
            "the vendor API's pending releases are {} bytes, more than {MAX_PENDING}",
            pending_json.len()
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pending {
        #[serde(default)]
        channel_releases: Vec<PendingRelease>,
    }
    let pending: Pending = serde_json::from_slice(pending_json)
        .map_err(|e| format!("the vendor API's pending releases are not JSON: {e}"))?;
    Ok(pending
        .channel_releases
        .into_iter()
        .filter(|r| r.is_required)
        .map(|r| RequiredRelease {
            channel_sequence: r.channel_sequence,
            version_label: r.version_label,
        })
        .collect())
}

/// Refuses an update from `current` to `next` past a `required` release between them, with
/// KOTS's message (`pkg/update/required.go`, `getRequiredNonDeployableCause`: the required
/// versions, newest first). Another channel starts over (KOTS's `channelChanged`), and a
/// release without a sequence cannot be placed, so neither is refused.
pub fn check_update(
    current: &VendorRelease,
    next: &VendorRelease,
    required: &[RequiredRelease],
) -> Result<(), RequiredSkipped> {
    let same_channel = current.channel_id.is_empty()
        || next.channel_id.is_empty()
        || current.channel_id == next.channel_id;
    let (Some(from), Some(to)) = (current.channel_sequence, next.channel_sequence) else {
        return Ok(());
    };
    let mut skipped: Vec<&RequiredRelease> = required
        .iter()
        .filter(|r| r.channel_sequence > from && r.channel_sequence < to)
        .collect();
    if !same_channel || skipped.is_empty() {
        return Ok(());
    }
    skipped.sort_by_key(|r| std::cmp::Reverse(r.channel_sequence));
    skipped.dedup();
    let labels: Vec<String> = skipped
        .iter()
        .map(|r| crate::names::escaped(&r.version_label))
        .collect();
    let (noun, verb) = if labels.len() == 1 {
        ("version", "is")
    } else {
        ("versions", "are")
    };
    let label = |r: &VendorRelease| {
        r.version_label
            .as_deref()
            .map_or("-".into(), crate::names::escaped)
    };
    Err(RequiredSkipped {
        why: format!(
            "updating from {} (sequence {from}) to {} (sequence {to}): This version cannot be \
             deployed because {noun} {} {verb} required and must be deployed first",
            label(current),
            label(next),
            labels.join(", ")
        ),
        oldest: labels.last().cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::LicenseChannel;

    fn license() -> License {
        License {
            license_id: "id".into(),
            app_slug: "myapp".into(),
            endpoint: "https://replicated.app".into(),
            channel_id: "top".into(),
            license_sequence: 7,
            ..Default::default()
        }
    }

    #[test]
    fn query_is_in_go_order_and_escaped() {
        assert_eq!(
            query(&license(), "", Some("1.2.3 beta"), "top"),
            "channelSequence=&isEmbeddedCluster=false&isSemverSupported=true&licenseSequence=7\
             &selectedChannelId=top&versionLabel=1.2.3+beta"
        );
    }

    #[test]
    fn a_slug_cannot_change_the_path_or_query() {
        let u = api_url(
            "http://127.0.0.1:9/x",
            &["release", "myapp", "a/../b?c"],
            "q=1",
        )
        .unwrap();
        assert_eq!(u, "http://127.0.0.1:9/release/myapp/a%2F..%2Fb%3Fc?q=1");
        // The endpoint's own path is dropped, as KOTS drops it.
        let u = api_url("https://replicated.app/v1/", &["release", "myapp"], "").unwrap();
        assert_eq!(u, "https://replicated.app/release/myapp?");
    }

    #[test]
    fn channel_selection_follows_kots() {
        let mut l = license();
        assert_eq!(selected_channel_id(&l, Some("beta")).unwrap(), "top");
        l.channels = vec![
            LicenseChannel {
                channel_id: "s".into(),
                channel_slug: "stable".into(),
                ..Default::default()
            },
            LicenseChannel {
                channel_id: "b".into(),
                channel_slug: "beta".into(),
                ..Default::default()
            },
        ];
        assert_eq!(selected_channel_id(&l, None).unwrap(), "s");
        assert_eq!(selected_channel_id(&l, Some("beta")).unwrap(), "b");
        let e = selected_channel_id(&l, Some("nightly")).unwrap_err();
        assert!(e.contains("stable, beta"), "{e}");
    }

    #[test]
    fn required_releases_between_are_named_newest_first() {
        let list = br#"{"channelReleases":[
            {"channelSequence":3,"versionLabel":"1.3.0","isRequired":true},
            {"channelSequence":4,"versionLabel":"1.4.0","isRequired":false},
            {"channelSequence":5,"versionLabel":"1.5.0","isRequired":true},
            {"channelSequence":6,"versionLabel":"1.6.0","isRequired":true}]}"#;
        let required = required_in(list).unwrap();
        assert_eq!(required.len(), 3);
        let at = |seq: i64, channel: &str| VendorRelease {
            channel_id: channel.into(),
            channel_sequence: Some(seq),
            version_label: Some(format!("v{seq}")),
            ..Default::default()
        };
        let e = check_update(&at(2, "c"), &at(6, "c"), &required).unwrap_err();
        assert!(
            e.why.contains("from v2 (sequence 2) to v6 (sequence 6)")
                && e.why.contains("versions 1.5.0, 1.3.0 are required"),
            "{e}"
        );
        assert_eq!(e.oldest, "1.3.0");
        // The target itself being required is no skip; nor is one at or before the current;
        // nor one on another channel.
        assert!(check_update(&at(5, "c"), &at(6, "c"), &required).is_ok());
        assert!(check_update(&at(2, "c"), &at(3, "c"), &required).is_ok());
        assert!(check_update(&at(2, "c"), &at(6, "other"), &required).is_ok());
        assert!(required_in(b"<html>").is_err());
    }

    #[test]
    fn a_pending_answer_too_large_for_the_metadata_is_refused() {
        let entry = format!(
            r#"{{"channelSequence":1,"versionLabel":"{}","isRequired":true}}"#,
            "x".repeat(1 << 20)
        );
        let list = format!(r#"{{"channelReleases":[{}]}}"#, vec![entry; 9].join(","));
        let e = required_in(list.as_bytes()).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }
}
