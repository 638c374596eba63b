//! What each fuzz target does with one input, and the invariants it asserts.
//!
//! Shared by the libFuzzer targets in `fuzz/fuzz_targets/` and by the ordinary test
//! `tests/it/fuzz_regressions.rs`, which runs it on every committed seed and
//! regression input, so CI replays exactly what the fuzzer ran. Uses only
//! certwatch's public API. A panic is a finding.

use certwatch::alert::issuance_key;
use certwatch::cert;
use certwatch::matcher::WatchList;
use certwatch::sources::feed::{self, Peek};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

/// Feeds one frame to the certstream parser the way a worker does: `peek`, and
/// for a certificate `parse_matched` (which never loses a matched name) and
/// `parse_certificate`, then `issuance_key`.
///
/// Beyond not panicking: when both parse steps accept the frame they agree on
/// the leaf's names, and the normalised fields keep their documented shapes.
pub fn certstream(data: &[u8]) {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(peek) = feed::peek(frame) else {
        return;
    };
    let kind = peek.kind();
    let Peek::Certificate { all_domains, .. } = peek else {
        return;
    };
    assert_eq!(kind, feed::MessageKind::CertificateUpdate);
    // A certificate that matched is never lost: parse_matched reads anything
    // peek accepted, keeping the names that matched.
    let matched: Vec<&str> = all_domains
        .iter()
        .rev()
        .take(3)
        .map(|n| n.as_ref())
        .collect();
    let (full, _) = feed::parse_matched(frame, &matched);
    for name in &matched {
        let clean = cert::replace_nul(name);
        assert!(
            full.all_domains.iter().any(|n| *n == clean),
            "matched name {name:?} lost"
        );
    }
    let Ok(cert) = feed::parse_certificate(frame) else {
        return;
    };

    // The hot path matches on the names that the full parse records (NUL
    // replaced, exact duplicates removed, the first `MAX_NAMES` when nothing
    // matched).
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = all_domains
        .iter()
        .map(|n| cert::replace_nul(n).into_owned())
        .filter(|n| seen.insert(n.clone()))
        .collect();
    let kept = unique.len().min(cert::MAX_NAMES);
    assert_eq!(
        cert.all_domains,
        unique[..kept],
        "peek and parse_certificate disagree"
    );
    assert_eq!(cert.names_digest.is_some(), unique.len() > kept);
    // Whatever the frame, the row can be stored: no NUL, times Postgres takes.
    let texts = [
        &cert.subject_cn,
        &cert.issuer_o,
        &cert.issuer_cn,
        &cert.issuer_dn,
        &cert.source_name,
        &cert.source_url,
        &cert.cert_link,
    ];
    assert!(cert.all_domains.iter().all(|n| !n.contains('\0')));
    assert!(
        texts
            .iter()
            .all(|t| !t.as_deref().unwrap_or("").contains('\0'))
    );
    for t in [cert.not_before, cert.not_after].into_iter().flatten() {
        assert!((cert::MIN_TIME..=cert::NO_EXPIRATION).contains(&t));
    }
    if let Some(seen) = cert.seen {
        assert!(seen > 0.0 && seen <= cert::NO_EXPIRATION as f64, "{seen}");
    }
    assert!(cert.cert_index.is_none_or(|i| i64::try_from(i).is_ok()));
    assert!(
        cert.names.windows(2).all(|w| w[0] < w[1]),
        "names not sorted and unique: {:?}",
        cert.names
    );
    assert!(cert.names.len() <= cert.all_domains.len());

    if let Some(f) = &cert.fingerprint_sha1 {
        assert!(!f.is_empty() && is_lower_hex(f), "fingerprint {f:?}");
    }
    if let Some(h) = &cert.sha256 {
        assert!(h.len() == 64 && is_lower_hex(h), "sha256 {h:?}");
    }
    if let Some(s) = &cert.serial {
        let upper = s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
        assert!(upper && !s.is_empty(), "serial {s:?}");
        assert!(s == "0" || !s.starts_with('0'), "serial {s:?}");
    }
    if let Some(k) = &cert.issuer_key_id {
        assert!(!k.is_empty() && is_lower_hex(k), "issuer_key_id {k:?}");
    }

    let key = issuance_key(&cert);
    assert!(
        key.len() == 64 && is_lower_hex(&key),
        "issuance key {key:?}"
    );
    assert_eq!(key, issuance_key(&cert.clone()), "issuance key not stable");
}

/// Builds a watch list from the input and matches names against it.
///
/// The input is read as UTF-8 (lossy) and split on `\n`: the lines before the
/// first empty line are watch entries and the lines after it are names; with
/// no empty line, every line is both an entry and a name.
///
/// Beyond not panicking: every id `matches` reports is below `len()` and
/// reported once; each entry's own text, a name below it, its upper-case
/// spelling with a trailing dot, and `*.` its parent all match it; a list built
/// again from the normalized texts is the same list; and what `matches` reports
/// for a name is exactly what a naive scan of every entry finds (suffix on a
/// label boundary, or one label below a wildcard's base; IP addresses never
/// match; a non-ASCII name also in its IDNA ASCII form).
pub fn matcher(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let (entries, names): (&[&str], &[&str]) = match lines.iter().position(|l| l.is_empty()) {
        Some(blank) => (&lines[..blank], &lines[blank + 1..]),
        None => (&lines, &lines),
    };

    let (list, invalid) = WatchList::build(entries.iter().copied());
    assert!(list.len() + invalid.len() <= entries.len());
    let len = u32::try_from(list.len()).expect("ids are u32");

    // Normalized entries keep their documented shape, and normalizing them
    // again changes nothing.
    let texts: Vec<&str> = (0..len).map(|id| list.entry(id)).collect();
    for text in &texts {
        assert!(is_normalized(text), "entry {text:?} is not normalized");
    }
    let (again, again_invalid) = WatchList::build(texts.iter().copied());
    assert!(
        again_invalid.is_empty(),
        "normalized entries rejected: {texts:?}"
    );
    assert_eq!(again.len(), list.len());
    for (id, text) in (0..len).zip(&texts) {
        assert_eq!(again.entry(id), *text);
    }

    // Every entry matches its own text and the names it is documented to cover.
    for (id, text) in (0..len).zip(&texts) {
        let mut probes = vec![
            text.to_string(),
            format!("x.{text}"),
            format!("{}.", text.to_ascii_uppercase()),
        ];
        if let Some((_, parent)) = text.split_once('.') {
            probes.push(format!("*.{parent}"));
        }
        for probe in &probes {
            let mut out = Vec::new();
            let hit = list.matches(probe, &mut out);
            assert!(
                hit && out.contains(&id),
                "entry {text:?} (id {id}) not matched by {probe:?}: {out:?}"
            );
            check_ids(&list, probe, &out, &[]);
        }
    }

    // Each name, alone and with the ids earlier names already put in `out`.
    let mut acc: Vec<u32> = Vec::new();
    for name in names {
        let want = expected(&list, name);

        let mut out = Vec::new();
        let hit = list.matches(name, &mut out);
        check_ids(&list, name, &out, &[]);
        let got: BTreeSet<u32> = out.iter().copied().collect();
        assert_eq!(got, want, "name {name:?} against {texts:?}");
        assert_eq!(hit, !want.is_empty(), "return value for {name:?}");

        let before = acc.clone();
        let grew = list.matches(name, &mut acc);
        assert_eq!(
            &acc[..before.len()],
            &before[..],
            "ids already in out changed"
        );
        check_ids(&list, name, &acc[before.len()..], &before);
        assert_eq!(grew, acc.len() > before.len(), "return value for {name:?}");
        let new: BTreeSet<u32> = acc[before.len()..].iter().copied().collect();
        let want_new: BTreeSet<u32> = want
            .iter()
            .copied()
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(new, want_new, "ids appended for {name:?}");
    }
}

/// `added` holds only ids below `len()`, none twice and none in `already`.
fn check_ids(list: &WatchList, name: &str, added: &[u32], already: &[u32]) {
    let mut seen = BTreeSet::new();
    for &id in added {
        assert!(
            (id as usize) < list.len(),
            "id {id} out of range for {name:?}"
        );
        assert!(seen.insert(id), "id {id} reported twice for {name:?}");
        assert!(
            !already.contains(&id),
            "id {id} already in out for {name:?}"
        );
    }
}

/// The ids a naive scan of every entry finds for `name`.
fn expected(list: &WatchList, name: &str) -> BTreeSet<u32> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut forms = vec![name.to_ascii_lowercase()];
    if !name.is_ascii()
        && let Ok(ascii) = idna::domain_to_ascii(name)
    {
        forms.push(
            ascii
                .strip_suffix('.')
                .unwrap_or(&ascii)
                .to_ascii_lowercase(),
        );
    }
    let len = u32::try_from(list.len()).expect("ids are u32");
    let mut want = BTreeSet::new();
    for form in forms.iter().filter(|f| !is_ip(f)) {
        want.extend((0..len).filter(|&id| covers(form, list.entry(id))));
    }
    want
}

/// Whether the lower-case name `name` falls under `entry`: the entry itself, a
/// name below it on a label boundary, or `*.X` for an entry one label below X.
fn covers(name: &str, entry: &str) -> bool {
    let below = name
        .strip_suffix(entry)
        .is_some_and(|head| head.is_empty() || head.ends_with('.'));
    let wildcard = name.strip_prefix("*.").is_some_and(|base| {
        entry
            .split_once('.')
            .is_some_and(|(_, parent)| parent == base)
    });
    below || wildcard
}

/// An IPv4 or IPv6 address, the latter possibly in square brackets.
fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
        || s.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .is_some_and(|t| t.parse::<Ipv6Addr>().is_ok())
}

/// The documented shape of a normalized entry: `a-z`, `0-9`, `-`, `_` in
/// non-empty labels of at most 63 bytes, at most 253 bytes, not an IP address.
fn is_normalized(text: &str) -> bool {
    text.len() <= 253
        && !is_ip(text)
        && text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        && text.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
