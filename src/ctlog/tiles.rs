//! static-ct-api (C2SP, "tlog-tiles" for CT): data and hash tile paths, which
//! tiles cover an index range at a given tree size, `TileLeaf` and hash tile
//! decoding, and the checkpoint's note text (its signature is checked by
//! `tree_head`). Pure, no I/O; run on the threads that read logs.

use super::rfc6962::{
    Chain, DecodeError, LogEntry, MAX_CHAIN, Reader, SignedEntry, read_timestamped_entry,
};
use std::ops::Range;

/// Entries (hashes) in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// Largest checkpoint accepted, in bytes (a note with a few witness signatures
/// is well under 1 KiB).
pub const MAX_CHECKPOINT_BYTES: usize = 16 << 10;

/// One data tile: tile `index` (entries from `index * 256`) with `width`
/// entries, 256 for a full tile and 1 to 255 for the partial tile at the right
/// edge of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataTile {
    pub index: u64,
    pub width: u16,
}

impl DataTile {
    /// The full tile with the same index.
    pub fn full(index: u64) -> DataTile {
        DataTile {
            index,
            width: TILE_WIDTH as u16,
        }
    }

    /// Index of the tile's first entry.
    pub fn start(self) -> u64 {
        self.index.saturating_mul(TILE_WIDTH)
    }

    /// Index one past the tile's last entry.
    pub fn end(self) -> u64 {
        self.start().saturating_add(u64::from(self.width))
    }

    pub fn is_partial(self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// The path under the monitoring prefix: `tile/data/x001/x234/067`, with
    /// `.p/<width>` for a partial tile.
    pub fn path(self) -> String {
        let mut path = format!("tile/data/{}", tile_index_path(self.index));
        if self.is_partial() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }
}

/// One Merkle tree tile: tile `index` of `level` (level 0 holds leaf hashes, level
/// `l` the roots of full tiles at level `l - 1`) with `width` hashes, 256 for a
/// full tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashTile {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

impl HashTile {
    /// The tile of `level` holding node `node` (the `node`-th hash of that level) in
    /// a tree of `tree_size` entries: full, or the partial one the spec says the
    /// log serves at that size (`floor(size / 256^level) mod 256` hashes).
    pub fn holding(level: u8, node: u64, tree_size: u64) -> HashTile {
        let index = node / TILE_WIDTH;
        let nodes_at_level = tree_size >> (8 * u32::from(level));
        let width = if (index + 1).saturating_mul(TILE_WIDTH) <= nodes_at_level {
            TILE_WIDTH
        } else {
            nodes_at_level % TILE_WIDTH
        };
        HashTile {
            level,
            index,
            width: width as u16,
        }
    }

    pub fn is_partial(self) -> bool {
        u64::from(self.width) < TILE_WIDTH
    }

    /// The path under the monitoring prefix: `tile/<level>/x001/x234/067`, with
    /// `.p/<width>` for a partial tile.
    pub fn path(self) -> String {
        let mut path = format!("tile/{}/{}", self.level, tile_index_path(self.index));
        if self.is_partial() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// The full tile with the same level and index.
    pub fn full(self) -> HashTile {
        HashTile {
            width: TILE_WIDTH as u16,
            ..self
        }
    }
}

/// A hash tile's body as hashes: `width` (or, for the full tile fetched in place
/// of a partial one, 256) times 32 bytes, nothing else.
pub fn decode_hash_tile(body: &[u8], tile: HashTile) -> Result<Vec<[u8; 32]>, DecodeError> {
    let widths = [usize::from(tile.width), TILE_WIDTH as usize];
    if !body.len().is_multiple_of(32) || !widths.contains(&(body.len() / 32)) {
        return Err(DecodeError::Truncated { what: "hash tile" });
    }
    Ok(body
        .chunks_exact(32)
        .map(|h| h.try_into().expect("32 bytes"))
        .collect())
}

/// A tile index as path elements of three zero-padded digits, all but the
/// last prefixed with `x`: 1234067 -> `x001/x234/067`, 5 -> `005`.
pub fn tile_index_path(mut n: u64) -> String {
    let mut groups = vec![n % 1000];
    n /= 1000;
    while n > 0 {
        groups.push(n % 1000);
        n /= 1000;
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The data tiles holding `range` in a tree of `tree_size` entries, in order:
/// full tiles, then the partial tile at the right edge when the range reaches
/// into it. Indices at or past `tree_size` are not covered (they do not exist yet).
pub fn data_tiles(range: Range<u64>, tree_size: u64) -> DataTiles {
    let end = range.end.min(tree_size);
    let next = range.start / TILE_WIDTH;
    let last = if range.start < end {
        (end - 1) / TILE_WIDTH + 1
    } else {
        next
    };
    DataTiles {
        next,
        last,
        tree_size,
    }
}

/// Iterator returned by [`data_tiles`]; holds no list, so a range of any length
/// costs nothing up front.
#[derive(Clone, Debug)]
pub struct DataTiles {
    next: u64,
    last: u64,
    tree_size: u64,
}

impl Iterator for DataTiles {
    type Item = DataTile;

    fn next(&mut self) -> Option<DataTile> {
        if self.next >= self.last {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let available = self.tree_size - index * TILE_WIDTH;
        Some(DataTile {
            index,
            width: available.min(TILE_WIDTH) as u16,
        })
    }
}

/// Decodes a data tile: exactly `tile.width` `TileLeaf`s, each carrying a
/// `leaf_index` extension equal to its position in the log.
pub fn decode_data_tile(data: &[u8], tile: DataTile) -> Result<Vec<LogEntry<'_>>, DecodeError> {
    Ok(decode_data_tile_hashed(data, tile)?
        .into_iter()
        .map(|(_, entry)| entry)
        .collect())
}

/// [`decode_data_tile`], each entry with its Merkle leaf hash: the hash of the
/// `MerkleTreeLeaf` (version v1, leaf type timestamped_entry, then the
/// `TimestampedEntry` as the tile holds it), as the level-0 tile and the log's
/// root commit to it.
pub fn decode_data_tile_hashed(
    data: &[u8],
    tile: DataTile,
) -> Result<Vec<([u8; 32], LogEntry<'_>)>, DecodeError> {
    use sha2::{Digest, Sha256};
    let mut r = Reader::new(data);
    let mut entries = Vec::with_capacity(usize::from(tile.width));
    for index in tile.start()..tile.end() {
        let before = r.remaining();
        let timestamped = read_timestamped_entry(&mut r)?;
        let leaf = &before[..before.len() - r.remaining().len()];
        let mut hasher = Sha256::new();
        hasher.update([0u8, 0, 0]);
        hasher.update(leaf);
        let leaf_hash: [u8; 32] = hasher.finalize().into();
        let found = leaf_index(timestamped.extensions)?;
        if found != Some(index) {
            return Err(DecodeError::LeafIndex {
                expected: index,
                found,
            });
        }
        let pre_certificate = match timestamped.signed_entry {
            SignedEntry::X509 { .. } => None,
            SignedEntry::Precert { .. } => Some(r.non_empty_vec(3, "pre_certificate")?),
        };
        let fingerprints = r.vec(2, "certificate_chain")?;
        if fingerprints.len() % 32 != 0 {
            return Err(DecodeError::Truncated {
                what: "certificate_chain fingerprint",
            });
        }
        let chain = fingerprints
            .chunks_exact(32)
            .take(MAX_CHAIN)
            .map(|fp| fp.try_into().expect("chunks of 32"))
            .collect();
        entries.push((
            leaf_hash,
            LogEntry {
                timestamped,
                pre_certificate,
                chain: Chain::Fingerprints(chain),
            },
        ));
    }
    r.finish("data tile")?;
    Ok(entries)
}

/// The `leaf_index` (type 0, a 40-bit big-endian integer) of static-ct
/// `CtExtensions`; other extension types are skipped, a repeated type or a
/// malformed list is an error.
pub fn leaf_index(extensions: &[u8]) -> Result<Option<u64>, DecodeError> {
    let mut r = Reader::new(extensions);
    let mut seen = [false; 256];
    let mut index = None;
    while !r.is_empty() {
        let kind = r
            .u8("extension_type")
            .map_err(|_| DecodeError::Extensions)?;
        let data = r
            .vec(2, "extension_data")
            .map_err(|_| DecodeError::Extensions)?;
        if std::mem::replace(&mut seen[usize::from(kind)], true) {
            return Err(DecodeError::Extensions);
        }
        if kind == 0 {
            if data.len() != 5 {
                return Err(DecodeError::Extensions);
            }
            index = Some(data.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        }
    }
    Ok(index)
}

/// What certwatch reads from a checkpoint (C2SP tlog-checkpoint): the origin,
/// the tree size and the root hash. Signatures are not verified (module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
}

/// Parses a checkpoint body: origin line, decimal tree size, base64 root hash,
/// optional extension lines, a blank line, then signature lines.
pub fn parse_checkpoint(body: &[u8]) -> Result<Checkpoint, DecodeError> {
    use base64::Engine;
    if body.len() > MAX_CHECKPOINT_BYTES {
        return Err(DecodeError::TooMany {
            what: "checkpoint bytes",
            limit: MAX_CHECKPOINT_BYTES,
        });
    }
    let text =
        std::str::from_utf8(body).map_err(|_| DecodeError::Checkpoint { what: "not utf-8" })?;
    let Some((note, _signatures)) = text.split_once("\n\n") else {
        return Err(DecodeError::Checkpoint {
            what: "no signature block",
        });
    };
    let mut lines = note.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or(DecodeError::Checkpoint { what: "no origin" })?;
    let size = lines.next().unwrap_or("");
    let canonical = !size.is_empty()
        && size.bytes().all(|b| b.is_ascii_digit())
        && (size == "0" || !size.starts_with('0'));
    let tree_size = canonical
        .then(|| size.parse::<u64>().ok())
        .flatten()
        .filter(|size| *size <= super::MAX_INDEX)
        .ok_or(DecodeError::Checkpoint { what: "tree size" })?;
    let root_hash = lines
        .next()
        .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or(DecodeError::Checkpoint { what: "root hash" })?;
    Ok(Checkpoint {
        origin: origin.to_string(),
        tree_size,
        root_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths() {
        for (n, path) in [
            (0, "000"),
            (5, "005"),
            (999, "999"),
            (1000, "x001/000"),
            (1_234_067, "x001/x234/067"),
            (1_000_000_000, "x001/x000/x000/000"),
        ] {
            assert_eq!(tile_index_path(n), path, "{n}");
        }
        assert_eq!(DataTile::full(1_234_067).path(), "tile/data/x001/x234/067");
        assert_eq!(
            DataTile {
                index: 3,
                width: 17
            }
            .path(),
            "tile/data/003.p/17"
        );
        // The spec's example: a tree of 70,000 has 273 full level-0 tiles, a
        // partial level-0 tile of 112, a full level-1 tile, a partial level-1 tile
        // of 17 and a partial level-2 tile of 1.
        let at = |level, node| HashTile::holding(level, node, 70_000);
        assert_eq!(at(0, 272 * 256).path(), "tile/0/272");
        assert_eq!(at(0, 273 * 256).path(), "tile/0/273.p/112");
        assert_eq!(at(1, 0).path(), "tile/1/000");
        assert_eq!(at(1, 256).path(), "tile/1/001.p/17");
        assert_eq!(at(2, 0).path(), "tile/2/000.p/1");
        assert_eq!(at(1, 256).full().path(), "tile/1/001");
        let tile = at(1, 256);
        assert_eq!(decode_hash_tile(&[7u8; 17 * 32], tile).unwrap().len(), 17);
        assert_eq!(decode_hash_tile(&[7u8; 256 * 32], tile).unwrap().len(), 256);
        assert!(decode_hash_tile(&[7u8; 16 * 32], tile).is_err());
        assert!(decode_hash_tile(&[7u8; 17 * 32 + 1], tile).is_err());
    }

    fn tiles(range: Range<u64>, size: u64) -> Vec<(u64, u16)> {
        data_tiles(range, size)
            .map(|t| (t.index, t.width))
            .collect()
    }

    #[test]
    fn tiles_for_ranges() {
        assert_eq!(tiles(0..1, 1000), vec![(0, 256)]);
        assert_eq!(tiles(255..257, 1000), vec![(0, 256), (1, 256)]);
        assert_eq!(tiles(700..1000, 1000), vec![(2, 256), (3, 232)]);
        // Past the tree: clamped; wholly past: nothing.
        assert_eq!(tiles(990..5000, 1000), vec![(3, 232)]);
        assert_eq!(tiles(1000..1200, 1000), vec![]);
        assert_eq!(tiles(5..5, 1000), vec![]);
        assert_eq!(tiles(0..512, 512), vec![(0, 256), (1, 256)]);
        assert_eq!(tiles(0..10, 0), vec![]);
        // A huge range is an iterator, not a list.
        assert_eq!(
            data_tiles(0..u64::MAX, u64::MAX)
                .nth(1_000_000)
                .unwrap()
                .index,
            1_000_000
        );
    }

    fn tile_leaf(index: u64, precert: bool) -> Vec<u8> {
        let mut leaf = 1_000u64.to_be_bytes().to_vec();
        leaf.extend_from_slice(&[0, u8::from(precert)]);
        if precert {
            leaf.extend_from_slice(&[9; 32]);
        }
        leaf.extend_from_slice(&[0, 0, 3, b't', b'b', b's']);
        leaf.extend_from_slice(&[0, 8, 0, 0, 5]);
        leaf.extend_from_slice(&index.to_be_bytes()[3..]);
        if precert {
            leaf.extend_from_slice(&[0, 0, 2, b'p', b'c']);
        }
        leaf.extend_from_slice(&[0, 64]);
        leaf.extend_from_slice(&[1; 32]);
        leaf.extend_from_slice(&[2; 32]);
        leaf
    }

    #[test]
    fn decodes_tile_leaves() {
        let tile = DataTile { index: 2, width: 3 };
        let data = [
            tile_leaf(512, false),
            tile_leaf(513, true),
            tile_leaf(514, false),
        ]
        .concat();
        let entries = decode_data_tile(&data, tile).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].pre_certificate, Some(&b"pc"[..]));
        assert_eq!(
            entries[0].chain,
            Chain::Fingerprints(vec![&[1; 32], &[2; 32]])
        );
        // The wrong position, a short tile, a long tile, every truncation.
        let wrong = DataTile { index: 0, width: 3 };
        assert_eq!(
            decode_data_tile(&data, wrong),
            Err(DecodeError::LeafIndex {
                expected: 0,
                found: Some(512)
            })
        );
        assert!(decode_data_tile(&data, DataTile { index: 2, width: 4 }).is_err());
        assert!(decode_data_tile(&data, DataTile { index: 2, width: 2 }).is_err());
        for cut in 0..data.len() {
            assert!(
                decode_data_tile(&data[..cut], tile).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(leaf_index(&[]), Ok(None));
        assert_eq!(leaf_index(&[0, 0, 5, 0, 0, 0, 1, 2]), Ok(Some(258)));
        assert_eq!(
            leaf_index(&[7, 0, 1, 9, 0, 0, 5, 0, 0, 0, 0, 1]),
            Ok(Some(1))
        );
        assert_eq!(
            leaf_index(&[0, 0, 4, 0, 0, 1, 2]),
            Err(DecodeError::Extensions)
        );
        assert_eq!(
            leaf_index(&[0, 0, 5, 0, 0, 0, 1, 2, 0, 0, 5, 0, 0, 0, 1, 2]),
            Err(DecodeError::Extensions)
        );
        assert_eq!(leaf_index(&[0, 0, 9, 0]), Err(DecodeError::Extensions));
    }

    #[test]
    fn checkpoints() {
        let body = b"log.example/2026h1\n70000\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n\n\xe2\x80\x94 log.example/2026h1 AAAA\n";
        let cp = parse_checkpoint(body).unwrap();
        assert_eq!(cp.origin, "log.example/2026h1");
        assert_eq!(cp.tree_size, 70_000);
        assert_eq!(cp.root_hash[0], 0x3a);
        for bad in [
            &b""[..],
            b"origin\n10\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n",
            b"origin\n010\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n\n",
            b"origin\n-1\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n\n",
            b"origin\n99999999999999999999\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n\n",
            b"origin\n10\nAAAA\n\n",
            b"\n10\nOrHvvEw2bGK8sbbZyT/JH/t0BxJr/kE0F9IiqO4MGdE=\n\n",
            b"origin\n\xff\n\n",
        ] {
            assert!(parse_checkpoint(bad).is_err(), "{bad:?}");
        }
        let huge = vec![b'a'; MAX_CHECKPOINT_BYTES + 1];
        assert!(parse_checkpoint(&huge).is_err());
    }
}
