//! The watch-list index and name matching: pure, no I/O.
//!
//! A [`WatchList`] is built on the timer thread from the rows of
//! `public.intent_current.fqdn` and read by every worker through an
//! atomically swapped `Arc`. It answers one question for each name of each
//! certificate in the Certificate Transparency firehose: which watched
//! domains does this name fall under?
//!
//! The index is a hash set of *nodes*: every entry and every proper suffix of
//! an entry on a label boundary (`example.org` gives `example.org` and `org`),
//! keyed by a 64-bit hash of the suffix. A name is walked from its last label
//! leftwards, hashing as it goes (lower-casing on the fly, no allocation); the
//! walk stops at the first suffix that is not a node, since no longer suffix
//! can then be an entry. A typical unwatched name costs one hash pass over its
//! bytes and two probes, the first of which (its top-level domain) is always
//! in cache: the cost per name does not grow with the watch list.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Identifies one distinct normalized entry of a [`WatchList`].
pub type EntryId = u32;

/// A raw watch-list entry that could not be normalized, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEntry {
    /// The entry exactly as it was given to [`WatchList::build`].
    pub raw: String,
    /// A short lowercase reason, as returned by [`normalize_entry`].
    pub reason: &'static str,
}

/// No entry at this node.
const NONE: EntryId = EntryId::MAX;

/// A suffix of one or more entries; an entry itself when `entry` is set.
#[derive(Clone, Copy)]
struct Node {
    entry: EntryId,
    /// Entries exactly one label below this suffix: `children[start..start + len]`.
    children_start: u32,
    children_len: u32,
}

/// The keys are already well-mixed 64-bit hashes: use them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type NodeMap = HashMap<u64, Node, BuildHasherDefault<PassThrough>>;

/// The index of watched domains that certificate names are matched against.
///
/// An entry `example.org` matches `example.org` itself and every name below
/// it on a label boundary. Wildcard names `*.X` also match the entries exactly
/// one label below `X`.
#[derive(Default)]
pub struct WatchList {
    /// Normalized entry texts, concatenated; `spans[id]` locates entry `id`.
    text: String,
    spans: Vec<(u32, u32)>,
    /// A compact summary of `nodes`, asked first: most probes of unwatched
    /// names end here, in one cache line, without touching the larger map.
    filter: BlockedBloom,
    nodes: NodeMap,
    children: Vec<EntryId>,
    /// Entries whose suffix hash collided with another entry's (never seen in
    /// practice with 64-bit hashes, but handled): checked by text.
    collisions: Vec<(u64, EntryId)>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One byte more of a suffix hash, read right to left, lower-cased.
#[inline]
fn step(h: u64, byte: u8) -> u64 {
    (h ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
}

/// Spreads the FNV state over all 64 bits (the splitmix64 finaliser).
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Calls `visit(start, key)` for every suffix of `bytes` that starts on a label
/// boundary, shortest first, until `visit` returns false.
#[inline]
fn walk_suffixes(bytes: &[u8], mut visit: impl FnMut(usize, u64) -> bool) {
    let mut h = FNV_OFFSET;
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        h = step(h, bytes[i]);
        if (i == 0 || bytes[i - 1] == b'.') && !visit(i, finish(h)) {
            return;
        }
    }
}

/// A blocked Bloom filter over node keys: each key sets three bits in one
/// 64-byte block, so a query reads one cache line. About 16 bits per key give
/// a false-positive rate near 0.3 %; a false positive costs one map probe.
#[derive(Default)]
struct BlockedBloom {
    blocks: Vec<[u64; 8]>,
}

impl BlockedBloom {
    fn with_keys(keys: usize) -> BlockedBloom {
        BlockedBloom {
            blocks: vec![[0; 8]; keys.div_ceil(64).max(1)],
        }
    }

    /// The block, and the three (word, bit) positions within it, of a key.
    #[inline]
    fn positions(&self, key: u64) -> (usize, [(usize, u64); 3]) {
        let block = ((u128::from(key) * self.blocks.len() as u128) >> 64) as usize;
        let bit = |shift: u32| {
            let b = (key >> shift) & 511;
            ((b >> 6) as usize, 1u64 << (b & 63))
        };
        (block, [bit(0), bit(9), bit(18)])
    }

    fn insert(&mut self, key: u64) {
        let (block, bits) = self.positions(key);
        for (word, mask) in bits {
            self.blocks[block][word] |= mask;
        }
    }

    #[inline]
    fn may_contain(&self, key: u64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let (block, bits) = self.positions(key);
        let block = &self.blocks[block];
        bits.iter().all(|&(word, mask)| block[word] & mask != 0)
    }
}

/// Builds a [`WatchList`] one raw entry at a time, so a refresh can stream rows
/// from the database instead of holding them all. Sized up front from the
/// expected count, so a rebuild makes a handful of allocations of stable size
/// (which the allocator can reuse from the list it replaces) instead of a
/// doubling series.
pub struct WatchListBuilder {
    list: WatchList,
    invalid: Vec<InvalidEntry>,
    parents: Vec<(u64, EntryId)>,
}

impl WatchListBuilder {
    /// A builder expecting about `entries` entries.
    pub fn with_capacity(entries: usize) -> WatchListBuilder {
        let mut list = WatchList::default();
        list.text.reserve(entries * 24);
        list.spans.reserve(entries);
        list.nodes.reserve(entries + entries / 8 + 64);
        WatchListBuilder {
            list,
            invalid: Vec::new(),
            parents: Vec::with_capacity(entries),
        }
    }

    /// Adds one raw entry; an invalid one is kept aside with its reason.
    pub fn add(&mut self, r: &str) {
        let list = &mut self.list;
        let normalized = match normalize_entry(r) {
            Ok(n) => n,
            Err(reason) => {
                self.invalid.push(InvalidEntry {
                    raw: r.to_owned(),
                    reason,
                });
                return;
            }
        };
        if list.find(&normalized).is_some() {
            return;
        }
        let (Ok(id), Ok(start), Ok(len)) = (
            EntryId::try_from(list.spans.len()),
            u32::try_from(list.text.len()),
            u32::try_from(normalized.len()),
        ) else {
            self.invalid.push(InvalidEntry {
                raw: r.to_owned(),
                reason: "too many entries",
            });
            return;
        };
        list.text.push_str(&normalized);
        list.spans.push((start, len));
        let bytes = normalized.as_bytes();
        let first_dot = bytes.iter().position(|&b| b == b'.');
        let parents = &mut self.parents;
        walk_suffixes(bytes, |at, key| {
            let node = list.nodes.entry(key).or_insert(Node {
                entry: NONE,
                children_start: 0,
                children_len: 0,
            });
            if at == 0 {
                if node.entry == NONE {
                    node.entry = id;
                } else {
                    list.collisions.push((key, id));
                }
            } else if Some(at) == first_dot.map(|d| d + 1) {
                parents.push((key, id));
            }
            true
        });
    }

    /// The finished list and the entries that were skipped.
    pub fn finish(mut self) -> (WatchList, Vec<InvalidEntry>) {
        let list = &mut self.list;
        self.parents.sort_unstable();
        list.children.reserve_exact(self.parents.len());
        for &(key, id) in &self.parents {
            let start = list.children.len() as u32;
            list.children.push(id);
            let node = list
                .nodes
                .get_mut(&key)
                .expect("a parent is a suffix of its child, so a node");
            if node.children_len == 0 {
                node.children_start = start;
            }
            node.children_len += 1;
        }
        list.filter = BlockedBloom::with_keys(list.nodes.len());
        for &key in list.nodes.keys() {
            list.filter.insert(key);
        }
        (self.list, self.invalid)
    }
}

impl WatchList {
    /// Builds the index from raw entries.
    ///
    /// Each entry goes through [`normalize_entry`]; entries that are equal
    /// after normalization share one id. Invalid raw entries are returned
    /// alongside the list, never fatal.
    pub fn build<'a>(raw: impl IntoIterator<Item = &'a str>) -> (WatchList, Vec<InvalidEntry>) {
        let raw = raw.into_iter();
        let mut builder = WatchListBuilder::with_capacity(raw.size_hint().0);
        for r in raw {
            builder.add(r);
        }
        builder.finish()
    }

    /// The id of a normalized entry, if it is in the list.
    fn find(&self, normalized: &str) -> Option<EntryId> {
        let mut found = None;
        walk_suffixes(normalized.as_bytes(), |at, key| {
            if at == 0 {
                found = self.ids_at(key).find(|&id| self.entry(id) == normalized);
            }
            true
        });
        found
    }

    /// The entry ids stored under `key`: its node's entry and any collisions.
    fn ids_at(&self, key: u64) -> impl Iterator<Item = EntryId> + '_ {
        let first = self.nodes.get(&key).map(|n| n.entry).filter(|&e| e != NONE);
        first.into_iter().chain(
            self.collisions
                .iter()
                .filter(move |(k, _)| *k == key)
                .map(|(_, id)| *id),
        )
    }

    /// Returns the number of distinct valid entries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Returns true if the list has no entries, so nothing can match.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Returns the normalized text of an entry.
    ///
    /// # Panics
    ///
    /// Panics if `id` was not handed out by this list.
    pub fn entry(&self, id: EntryId) -> &str {
        let (start, len) = self.spans[id as usize];
        &self.text[start as usize..(start + len) as usize]
    }

    /// Appends to `out` the ids of every entry `name` matches that are not
    /// already in `out`; returns true if it appended any.
    ///
    /// The name is compared ASCII case-insensitively with one trailing dot
    /// ignored. IP addresses never match. A malformed name still matches when
    /// it ends in a watched domain on a label boundary. A name with non-ASCII
    /// characters is also tried in its IDNA ASCII form, so that a U-label
    /// spelling of a watched internationalized domain matches too.
    pub fn matches(&self, name: &str, out: &mut Vec<EntryId>) -> bool {
        if self.is_empty() {
            return false;
        }
        let before = out.len();
        let name = strip_trailing_dot(name);
        self.match_suffixes(name, out);
        if !name.is_ascii()
            && let Ok(ascii) = idna::domain_to_ascii(name)
        {
            self.match_suffixes(strip_trailing_dot(&ascii), out);
        }
        out.len() > before
    }

    /// Walks `name`'s suffixes from the right, appending the new ids of the
    /// entries found.
    fn match_suffixes(&self, name: &str, out: &mut Vec<EntryId>) {
        let bytes = name.as_bytes();
        let wildcard_parent = bytes.starts_with(b"*.").then_some(2);
        // Whether the name is an IP address is only worked out on the first
        // hit, since nearly every name hits nothing.
        let mut is_ip_name: Option<bool> = None;
        let mut add = |id: EntryId, out: &mut Vec<EntryId>| {
            if !*is_ip_name.get_or_insert_with(|| is_ip(name)) && !out.contains(&id) {
                out.push(id);
            }
        };
        walk_suffixes(bytes, |at, key| {
            if !self.filter.may_contain(key) {
                return false;
            }
            let Some(node) = self.nodes.get(&key) else {
                return false;
            };
            let suffix = &bytes[at..];
            if node.entry != NONE {
                for id in self.ids_at(key) {
                    if self.entry(id).as_bytes().eq_ignore_ascii_case(suffix) {
                        add(id, out);
                    }
                }
            }
            // A wildcard name `*.X` also covers the entries one label below `X`.
            if Some(at) == wildcard_parent {
                let start = node.children_start as usize;
                for &id in &self.children[start..start + node.children_len as usize] {
                    if self.entry(id).as_bytes()[self.entry(id).len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix)
                    {
                        add(id, out);
                    }
                }
            }
            true
        });
    }
}

impl fmt::Debug for WatchList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchList")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Normalizes one raw watch-list entry, or returns a short lowercase reason
/// why it cannot be watched.
///
/// Trims ASCII whitespace, strips one leading `*.` and one trailing dot,
/// lowercases, and converts Unicode to punycode A-labels. Rejects empty
/// entries, IP addresses, wildcards anywhere else, empty labels, labels over
/// 63 bytes, names over 253 bytes, and characters other than `a-z`, `0-9`,
/// `-` and `_`. Single-label entries such as `org` are allowed.
pub fn normalize_entry(raw: &str) -> Result<String, &'static str> {
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let s = s.strip_prefix("*.").unwrap_or(s);
    let had_trailing_dot = s.ends_with('.');
    let s = strip_trailing_dot(s);
    if s.is_empty() {
        return Err("empty");
    }
    if is_ip(s) {
        return Err("ip address");
    }
    if s.contains('*') {
        return Err("wildcard not at start");
    }
    let mut s = s.to_ascii_lowercase();
    if !s.is_ascii() {
        s = idna::domain_to_ascii(&s).map_err(|_| "invalid idna")?;
        // A Unicode full stop such as U+3002 at the end becomes a trailing dot
        // only now; strip it unless a trailing dot was already stripped.
        if !had_trailing_dot && s.ends_with('.') {
            s.pop();
        }
        if s.is_empty() {
            return Err("empty");
        }
        if is_ip(&s) {
            return Err("ip address");
        }
    }
    if s.len() > 253 {
        return Err("name too long");
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label too long");
        }
    }
    if !s
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
    {
        return Err("invalid character");
    }
    Ok(s)
}

/// Returns `s` without one trailing dot, if it has one.
fn strip_trailing_dot(s: &str) -> &str {
    s.strip_suffix('.').unwrap_or(s)
}

/// Returns true if `s` is an IPv4 or IPv6 address, the latter possibly in
/// square brackets.
fn is_ip(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    if s.bytes().any(|b| b == b':') {
        return s.parse::<Ipv6Addr>().is_ok();
    }
    s.bytes().last().is_some_and(|b| b.is_ascii_digit()) && s.parse::<Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One matching case: watched entries, a certificate name, and the
    /// normalized entries it must match.
    type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str]);

    /// Builds a list from `entries`, matches `name`, and asserts the matched
    /// entry texts, sorted, equal `expected`, each reported once.
    fn check(entries: &[&str], name: &str, expected: &[&str]) {
        let (list, invalid) = WatchList::build(entries.iter().copied());
        assert!(invalid.is_empty(), "invalid entries {invalid:?}");
        let mut out = Vec::new();
        let hit = list.matches(name, &mut out);
        let mut got: Vec<&str> = out.iter().map(|&id| list.entry(id)).collect();
        got.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "entries {entries:?}, name {name:?}");
        assert_eq!(hit, !want.is_empty(), "entries {entries:?}, name {name:?}");
        let mut unique = out.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), out.len(), "duplicate ids for {name:?}");
    }

    fn run(cases: &[Case]) {
        for &(entries, name, expected) in cases {
            check(entries, name, expected);
        }
    }

    const EX: &[&str] = &["example.org"];

    #[test]
    fn subtree_and_label_boundaries() {
        run(&[
            (EX, "example.org", EX),
            (EX, "foo.example.org", EX),
            (EX, "a.b.example.org", EX),
            (EX, "badexample.org", &[]),
            (EX, "example.org.evil.com", &[]),
            (EX, "org", &[]),
            (EX, "example.com", &[]),
            (EX, "", &[]),
            (EX, ".", &[]),
            (EX, ".example.org", EX),
        ]);
    }

    #[test]
    fn case_and_trailing_dots() {
        run(&[
            (EX, "EXAMPLE.ORG", EX),
            (EX, "Foo.Example.Org", EX),
            (EX, "example.org.", EX),
            (EX, "foo.example.org.", EX),
            (EX, "example.org..", &[]),
            (&["Example.ORG."], "example.org", EX),
            (&["  example.org\t"], "www.example.org", EX),
        ]);
    }

    #[test]
    fn wildcard_prefix_is_stripped_from_entries() {
        run(&[
            (&["*.example.org"], "example.org", EX),
            (&["*.example.org"], "www.example.org", EX),
            (&["*.Example.org."], "a.b.example.org", EX),
        ]);
    }

    #[test]
    fn unicode_entries_and_names() {
        const IDN: &[&str] = &["xn--bcher-kva.example"];
        run(&[
            (&["bücher.example"], "xn--bcher-kva.example", IDN),
            (&["bücher.example"], "www.xn--bcher-kva.example", IDN),
            (&["BÜCHER.example"], "bücher.example", IDN),
            (&["xn--bcher-kva.example"], "www.Bücher.Example.", IDN),
            (&["bücher.example"], "buecher.example", &[]),
            // A non-ASCII label under an ASCII entry matches in both forms but
            // is reported once.
            (EX, "bücher.example.org", EX),
            (EX, "ü..example.org", EX),
            (EX, "exämple.org", &[]),
        ]);
    }

    #[test]
    fn wildcard_names() {
        run(&[
            // The suffix rule applies to X in `*.X`.
            (EX, "*.example.org", EX),
            (EX, "*.foo.example.org", EX),
            (EX, "*.EXAMPLE.org.", EX),
            // An entry exactly one label below X matches.
            (&["foo.example.org"], "*.example.org", &["foo.example.org"]),
            (&["foo.example.org"], "*.Example.Org.", &["foo.example.org"]),
            (&["example.org"], "*.org", EX),
            // Two labels below X does not.
            (&["a.b.example.org"], "*.example.org", &[]),
            (&["foo.example.org"], "*.org", &[]),
            // A sibling of X does not.
            (&["foo.example.org"], "*.bar.example.org", &[]),
            (&["foo.example.org"], "*.example.com", &[]),
            // A U-label wildcard covers an IDN entry in both directions.
            (
                &["shop.bücher.example"],
                "*.bücher.example",
                &["shop.xn--bcher-kva.example"],
            ),
            (
                &["bücher.example"],
                "*.bücher.example",
                &["xn--bcher-kva.example"],
            ),
            // Degenerate wildcards match nothing unless under a watched suffix.
            (EX, "*", &[]),
            (EX, "*.", &[]),
            (EX, "*..", &[]),
            (EX, "foo.*.example.org", EX),
        ]);
    }

    #[test]
    fn ip_names_never_match() {
        run(&[
            (&["3.4"], "1.2.3.4", &[]),
            (&["4"], "1.2.3.4", &[]),
            (&["4"], "1.2.3.4.", &[]),
            (&["2.3.4"], "::ffff:1.2.3.4", &[]),
            (&["3.4"], "１.２.３.４", &[]),
            (&["1"], "::1", &[]),
            // Digits that are not an address still match.
            (&["3.4"], "1.2.3.4.5.3.4", &["3.4"]),
            (&["3.4"], "999.2.3.4", &["3.4"]),
        ]);
    }

    #[test]
    fn malformed_names_under_a_watched_suffix_match() {
        let long = format!("{}.example.org", "a".repeat(70));
        let very_long = format!("{}example.org", "abc.".repeat(100));
        run(&[
            (EX, "foo..example.org", EX),
            (EX, "bad_char$.example.org", EX),
            (EX, "foo bar.example.org", EX),
            (EX, &long, EX),
            (EX, &very_long, EX),
            (EX, "UPPER.Example.ORG.", EX),
            (EX, "-.example.org", EX),
            (EX, "\u{0}.example.org", EX),
            (EX, "foo:8443.example.org", EX),
            // Not on a label boundary, so still no match.
            (EX, "foo$example.org", &[]),
            (EX, " example.org", &[]),
        ]);
    }

    #[test]
    fn several_entries_match_at_once() {
        let both: &[&str] = &["example.org", "foo.example.org"];
        run(&[
            (both, "foo.example.org", both),
            (both, "x.foo.example.org", both),
            (both, "bar.example.org", EX),
            (both, "*.example.org", both),
            (both, "*.foo.example.org", both),
            (
                &["org", "example.org", "foo.example.org"],
                "a.foo.example.org",
                &["example.org", "foo.example.org", "org"],
            ),
        ]);
    }

    #[test]
    fn single_label_entry() {
        run(&[
            (&["org"], "org", &["org"]),
            (&["org"], "example.org", &["org"]),
            (&["org"], "*.org", &["org"]),
            (&["org"], "*.example.org", &["org"]),
            (&["org"], "borg", &[]),
            (&["org"], "org.com", &[]),
        ]);
    }

    #[test]
    fn empty_watch_list_matches_nothing() {
        run(&[
            (&[], "example.org", &[]),
            (&[], "*.example.org", &[]),
            (&[], "", &[]),
        ]);
        let list = WatchList::default();
        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
        assert_eq!(format!("{list:?}"), "WatchList { len: 0, .. }");
    }

    #[test]
    fn duplicates_after_normalization_share_an_id() {
        let (list, invalid) = WatchList::build([
            "example.org",
            "EXAMPLE.org.",
            "*.example.org",
            " example.org ",
            "foo.example.org",
            "*.foo.example.org",
        ]);
        assert!(invalid.is_empty());
        assert_eq!(list.len(), 2);
        assert_eq!(format!("{list:?}"), "WatchList { len: 2, .. }");
        let mut out = Vec::new();
        assert!(list.matches("x.foo.example.org", &mut out));
        assert_eq!(out.len(), 2);
        let mut out = Vec::new();
        assert!(list.matches("*.example.org", &mut out));
        assert_eq!(out.len(), 2);
        check(
            &["example.org", "Example.Org", "*.example.org."],
            "a.example.org",
            EX,
        );
    }

    #[test]
    fn matches_skips_ids_already_in_out() {
        let (list, _) = WatchList::build(["example.org", "foo.example.org"]);
        let mut out = Vec::new();
        assert!(list.matches("foo.example.org", &mut out));
        assert_eq!(out.len(), 2);
        // Every id is already there, so nothing is appended.
        assert!(!list.matches("a.foo.example.org", &mut out));
        assert_eq!(out.len(), 2);
        // A second name adds only what is new.
        let mut out = Vec::new();
        assert!(list.matches("example.org", &mut out));
        assert_eq!(out.len(), 1);
        assert!(list.matches("foo.example.org", &mut out));
        assert_eq!(out.len(), 2);
        assert!(!list.matches("example.org", &mut out));
        assert!(!list.matches("nothing.example.com", &mut out));
        assert_eq!(out.len(), 2);
        // Ids that were already there before the call are left untouched.
        let mut out = vec![99];
        assert!(list.matches("example.org", &mut out));
        assert_eq!(out[0], 99);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn normalize_entry_accepts_and_rewrites() {
        for (raw, want) in [
            ("example.org", "example.org"),
            ("  Example.ORG.\n", "example.org"),
            ("*.example.org", "example.org"),
            ("*.example.org.", "example.org"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("Bücher.Example.", "xn--bcher-kva.example"),
            ("bücher。example", "xn--bcher-kva.example"),
            ("bücher.example。", "xn--bcher-kva.example"),
            ("org", "org"),
            ("_dmarc.example.org", "_dmarc.example.org"),
            ("x-1.example.org", "x-1.example.org"),
            ("1.2.3.4.5", "1.2.3.4.5"),
            ("999.2.3.4", "999.2.3.4"),
        ] {
            assert_eq!(normalize_entry(raw).as_deref(), Ok(want), "raw {raw:?}");
        }
        let label63 = format!("{}.org", "a".repeat(63));
        assert_eq!(normalize_entry(&label63), Ok(label63.clone()));
        let total253 = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
        assert_eq!(total253.len(), 253);
        assert_eq!(normalize_entry(&total253), Ok(total253.clone()));
    }

    #[test]
    fn invalid_entries_are_reported_with_reasons() {
        let label64 = format!("{}.org", "a".repeat(64));
        let total254 = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(62));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            (".", "empty"),
            ("*.", "empty"),
            ("*..", "empty"),
            ("1.2.3.4", "ip address"),
            ("1.2.3.4.", "ip address"),
            ("::1", "ip address"),
            ("2001:db8::1", "ip address"),
            ("[2001:db8::1]", "ip address"),
            ("１.２.３.４", "ip address"),
            ("a..b", "empty label"),
            (".example.org", "empty label"),
            ("example.org..", "empty label"),
            ("bücher.example..", "empty label"),
            ("foo.*.bar", "wildcard not at start"),
            ("*", "wildcard not at start"),
            ("*.*.example.org", "wildcard not at start"),
            ("foo*.example.org", "wildcard not at start"),
            (&label64, "label too long"),
            (&total254, "name too long"),
            ("exa mple.org", "invalid character"),
            ("example.org/path", "invalid character"),
            ("example.org:443", "invalid character"),
            ("[example.org]", "invalid character"),
        ];
        let (list, invalid) =
            WatchList::build(cases.iter().map(|&(raw, _)| raw).chain(["example.org"]));
        assert_eq!(list.len(), 1);
        let got: Vec<(&str, &str)> = invalid.iter().map(|e| (e.raw.as_str(), e.reason)).collect();
        assert_eq!(got, cases);
        check(&["example.org"], "www.example.org", EX);
    }
}
