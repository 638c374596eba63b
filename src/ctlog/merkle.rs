//! RFC 6962 Merkle trees as a monitor needs them, pure: leaf and node hashes
//! (RFC 6962 §2.1), the compact range of a tree (its frontier: the roots of the
//! perfect subtrees its size decomposes into, at most 64 hashes, O(log n)),
//! extended leaf by leaf and folded into the tree's root; inclusion and
//! consistency proofs checked as RFC 9162 §2.1.3.2 and §2.1.4.2 say; and the
//! frontier of a tree recovered from an inclusion proof of its last leaf, so that
//! reading can start at a signed head other than 0 (RFC 6962 logs).

use sha2::{Digest, Sha256};

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `MTH({d})` of a one-entry tree: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// The hash of an inner node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The frontier of a tree of `size` leaves: the roots of the perfect subtrees its
/// size decomposes into, largest (leftmost) first, one per set bit of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// A frontier as stored: `None` unless it has exactly one hash per set bit of
    /// `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<CompactRange> {
        (hashes.len() == size.count_ones() as usize).then_some(CompactRange { size, hashes })
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier's hashes, largest subtree first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends the next leaf (its leaf hash). `false`, and nothing changed, at
    /// `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> bool {
        if self.size == u64::MAX {
            return false;
        }
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing one bit of the size is a perfect subtree of the same height
        // as the one being carried: merge them.
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.hashes.push(hash);
        self.size += 1;
        true
    }

    /// Appends a whole perfect subtree of `2^height` leaves (its root), as
    /// `2^height` pushes would. `false`, and nothing changed, unless the size is a
    /// multiple of `2^height` with room for it.
    pub fn push_subtree(&mut self, root: Hash, height: u32) -> bool {
        let Some(span) = 1u64.checked_shl(height) else {
            return false;
        };
        if !self.size.is_multiple_of(span) || self.size.checked_add(span).is_none() {
            return false;
        }
        let mut hash = root;
        let mut size = self.size >> height;
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.hashes.push(hash);
        self.size += span;
        true
    }

    /// This range extended to `size` leaves with the log's hash tiles (static-ct):
    /// `[self.size, size)` split into aligned perfect subtrees, each read from one
    /// tile as in [`from_tiles`](CompactRange::from_tiles). Its root against the
    /// signed root of `size` shows the leaves read so far to be the first
    /// `self.size` of that tree. `None` when a tile is too short.
    pub fn extended_by_tiles<E>(
        &self,
        size: u64,
        mut fetch: impl FnMut(super::tiles::HashTile) -> Result<Vec<Hash>, E>,
    ) -> Result<Option<CompactRange>, E> {
        let mut out = self.clone();
        let mut fetch = once_each(&mut fetch);
        while out.size < size {
            let mut height = out.size.trailing_zeros().min(63);
            while (1u64 << height) > size - out.size {
                height -= 1;
            }
            let Some(root) = subtree_root(out.size, height, size, &mut fetch)? else {
                return Ok(None);
            };
            out.push_subtree(root, height);
        }
        Ok(Some(out))
    }

    /// The tree's root: the frontier folded from the right.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }

    /// The frontier of a tree of `size` leaves from the leaf hash of its last leaf
    /// (index `size - 1`) and that leaf's inclusion proof in the tree (RFC 6962
    /// `get-proof-by-hash`): its nodes are all left siblings, and after the ones
    /// inside the last perfect subtree each is the root of the next subtree to its
    /// left. `None` when the proof has the wrong length. The caller checks the
    /// result's `root()` against the signed root: only then is it the tree's.
    pub fn from_last_leaf_proof(size: u64, leaf: Hash, proof: &[Hash]) -> Option<CompactRange> {
        if size == 0 {
            return None;
        }
        let inside = size.trailing_zeros() as usize;
        if proof.len() != inside + size.count_ones() as usize - 1 {
            return None;
        }
        let last = proof[..inside]
            .iter()
            .fold(leaf, |right, left| node_hash(left, &right));
        let mut hashes: Vec<Hash> = proof[inside..].iter().rev().copied().collect();
        hashes.push(last);
        Some(CompactRange { size, hashes })
    }
}

impl CompactRange {
    /// The frontier of a tree of `size` leaves from its hash tiles (static-ct-api):
    /// each perfect subtree of height `h` is `2^(h mod 8)` consecutive hashes of
    /// one tile at level `h / 8` (the tile the log serves at that size, `fetch`
    /// given its level, index and width), hashed up `h mod 8` times. The caller
    /// checks the result's `root()` against the signed root.
    pub fn from_tiles<E>(
        size: u64,
        mut fetch: impl FnMut(super::tiles::HashTile) -> Result<Vec<Hash>, E>,
    ) -> Result<Option<CompactRange>, E> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut fetch = once_each(&mut fetch);
        let mut start = 0u64;
        for height in (0..64u32).rev() {
            if size & (1 << height) == 0 {
                continue;
            }
            let Some(root) = subtree_root(start, height, size, &mut fetch)? else {
                return Ok(None);
            };
            hashes.push(root);
            start += 1 << height;
        }
        Ok(Some(CompactRange { size, hashes }))
    }
}

/// `fetch` asked at most once per tile: several subtrees of one call often lie
/// in the same tile (one per set bit of the size at each level), and a tile is
/// at most 8 KiB, so one call keeps what it read (at most 64 tiles).
fn once_each<E>(
    fetch: &mut impl FnMut(super::tiles::HashTile) -> Result<Vec<Hash>, E>,
) -> impl FnMut(super::tiles::HashTile) -> Result<Vec<Hash>, E> + '_ {
    let mut read: Vec<(super::tiles::HashTile, Vec<Hash>)> = Vec::new();
    move |tile| {
        if let Some((_, nodes)) = read.iter().find(|(t, _)| *t == tile) {
            return Ok(nodes.clone());
        }
        let nodes = fetch(tile)?;
        read.push((tile, nodes.clone()));
        Ok(nodes)
    }
}

/// The root of the perfect subtree of `2^height` leaves from `start` (aligned to
/// its size) in the tree of `size`, from the one hash tile that holds its nodes at
/// level `height / 8`. `None` when the tile is too short.
fn subtree_root<E>(
    start: u64,
    height: u32,
    size: u64,
    fetch: &mut impl FnMut(super::tiles::HashTile) -> Result<Vec<Hash>, E>,
) -> Result<Option<Hash>, E> {
    let level = (height / 8) as u8;
    let node = start >> (8 * u32::from(level));
    let tile = super::tiles::HashTile::holding(level, node, size);
    let nodes = fetch(tile)?;
    let offset = (node % super::tiles::TILE_WIDTH) as usize;
    let Some(slice) = nodes.get(offset..offset + (1usize << (height % 8))) else {
        return Ok(None);
    };
    let mut layer = slice.to_vec();
    while layer.len() > 1 {
        layer = layer
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    Ok(Some(layer[0]))
}

/// Whether `proof` shows the leaf `leaf` at `index` in the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// Whether `proof` shows the tree of `new_size` leaves with root `new_root` to
/// extend the tree of `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut proof = proof.to_vec();
    if old_size.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Hash {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// The eight leaves of the RFC 6962 test tree (certificate-transparency's
    /// reference vectors), as hex.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// The roots of the first 1..=8 leaves, computed independently of this module
    /// from RFC 6962 §2.1 with Python's hashlib (`mth(d)`: `sha256(b"")` for none,
    /// `sha256(b"\x00" + d[0])` for one, else `sha256(b"\x01" + mth(d[:k]) +
    /// mth(d[k:]))` with `k` the largest power of two below `len(d)`); they are also
    /// the roots certificate-transparency's reference tests publish.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaf(i: usize) -> Hash {
        let bytes: Vec<u8> = (0..LEAVES[i].len())
            .step_by(2)
            .map(|j| u8::from_str_radix(&LEAVES[i][j..j + 2], 16).unwrap())
            .collect();
        leaf_hash(&bytes)
    }

    /// `MTH` of `leaves[start..end]`, by the recursive definition (the model).
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = (n as u64 - 1).ilog2();
                let k = 1usize << k;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_compact_range_gives_the_reference_roots() {
        assert_eq!(
            CompactRange::new().root(),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let mut range = CompactRange::new();
        for (i, root) in ROOTS.iter().enumerate() {
            assert!(range.push(leaf(i)));
            assert_eq!(range.size(), i as u64 + 1);
            assert_eq!(range.hashes().len(), range.size().count_ones() as usize);
            assert_eq!(range.root(), hex(root), "{} leaves", i + 1);
        }
    }

    #[test]
    fn the_compact_range_matches_the_recursive_definition() {
        let leaves: Vec<Hash> = (0u32..1100).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        for (i, l) in leaves.iter().enumerate() {
            range.push(*l);
            if i < 70 || i % 97 == 0 || i == leaves.len() - 1 {
                assert_eq!(range.root(), mth(&leaves[..=i]), "{} leaves", i + 1);
            }
        }
        let stored = CompactRange::from_parts(range.size(), range.hashes().to_vec()).unwrap();
        assert_eq!(stored, range);
        assert!(CompactRange::from_parts(range.size() + 1, range.hashes().to_vec()).is_none());
    }

    /// The inclusion proof of `index` in `leaves`, by the recursive definition of
    /// RFC 6962 §2.1.1 `PATH`.
    fn path(index: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return Vec::new();
        }
        let k = 1usize << (leaves.len() as u64 - 1).ilog2();
        if index < k {
            let mut p = path(index, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(index - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    /// RFC 6962 §2.1.2 `PROOF(m, D[n])`.
    fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        fn sub(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
            let n = leaves.len();
            if m == n {
                return if complete {
                    Vec::new()
                } else {
                    vec![mth(leaves)]
                };
            }
            let k = 1usize << (n as u64 - 1).ilog2();
            if m <= k {
                let mut p = sub(m, &leaves[..k], complete);
                p.push(mth(&leaves[k..]));
                p
            } else {
                let mut p = sub(m - k, &leaves[k..], false);
                p.push(mth(&leaves[..k]));
                p
            }
        }
        sub(m, leaves, true)
    }

    #[test]
    fn inclusion_and_consistency_proofs_check_and_tampering_fails() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 1..=leaves.len() {
            let root = mth(&leaves[..size]);
            for index in 0..size {
                let proof = path(index, &leaves[..size]);
                let (i, s) = (index as u64, size as u64);
                assert!(verify_inclusion(i, s, &leaves[index], &proof, &root));
                assert!(!verify_inclusion(
                    i,
                    s,
                    &leaves[(index + 1) % 40],
                    &proof,
                    &root
                ));
                if size > 1 {
                    let elsewhere = (i + 1) % s;
                    assert!(!verify_inclusion(
                        elsewhere,
                        s,
                        &leaves[index],
                        &proof,
                        &root
                    ));
                }
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(i, s, &leaves[index], &bad, &root));
                    assert!(!verify_inclusion(i, s, &leaves[index], &proof[1..], &root));
                }
            }
            for old in 1..=size {
                let proof = consistency(old, &leaves[..size]);
                let old_root = mth(&leaves[..old]);
                let (o, n) = (old as u64, size as u64);
                assert!(
                    verify_consistency(o, n, &old_root, &root, &proof),
                    "{old} -> {size}"
                );
                let other = node_hash(&old_root, &old_root);
                assert!(!verify_consistency(o, n, &other, &root, &proof));
                if !proof.is_empty() {
                    assert!(!verify_consistency(o, n, &old_root, &root, &proof[1..]));
                }
            }
        }
        assert!(!verify_inclusion(5, 5, &leaves[0], &[], &leaves[0]));
        assert!(!verify_consistency(6, 5, &leaves[0], &leaves[0], &[]));
    }

    /// The tiles a static-ct log serves for a tree, from the recursive
    /// definition: level `l` tile `n` is `MTH` of each of its 256 blocks of
    /// `256^l` leaves.
    fn tiles_of(leaves: &[Hash]) -> std::collections::HashMap<(u8, u64), Vec<Hash>> {
        let mut out = std::collections::HashMap::new();
        for level in 0u8..3 {
            let block = 256usize.pow(u32::from(level));
            let nodes = leaves.len() / block;
            for n in 0..nodes.div_ceil(256) {
                let hashes: Vec<Hash> = (n * 256..((n + 1) * 256).min(nodes))
                    .map(|i| mth(&leaves[i * block..(i + 1) * block]))
                    .collect();
                out.insert((level, n as u64), hashes);
            }
        }
        out
    }

    #[test]
    fn the_frontier_is_recovered_from_hash_tiles() {
        let leaves: Vec<Hash> = (0u32..70_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let tiles = tiles_of(&leaves);
        let mut range = CompactRange::new();
        let mut fetched = 0;
        for size in 1..=leaves.len() {
            range.push(leaves[size - 1]);
            if !(size < 600 || size % 4099 == 0 || size == 65_536 || size == 70_000) {
                continue;
            }
            let from_tiles = CompactRange::from_tiles(size as u64, |tile| {
                fetched += 1;
                let hashes = &tiles[&(tile.level, tile.index)];
                // What the log serves at this size: the tile's first `width`.
                assert!(
                    usize::from(tile.width) <= hashes.len(),
                    "{tile:?} at {size}"
                );
                Ok::<_, ()>(hashes[..usize::from(tile.width)].to_vec())
            })
            .unwrap()
            .expect("the tiles hold the nodes");
            assert_eq!(from_tiles, range, "{size} leaves");
        }
        assert!(fetched > 0);
        // One call asks for each tile once, however many subtrees it holds: at
        // 439 leaves, subtrees of 256, 128, 32, 16, 4, 2 and 1 in two tiles.
        let mut asked = Vec::new();
        CompactRange::from_tiles(439, |tile| {
            asked.push(tile);
            Ok::<_, ()>(tiles[&(tile.level, tile.index)][..usize::from(tile.width)].to_vec())
        })
        .unwrap()
        .expect("the tiles hold the nodes");
        let mut distinct = asked.clone();
        distinct.dedup();
        assert_eq!(asked, distinct, "a tile asked twice: {asked:?}");
        assert_eq!(
            super::super::tiles::HashTile::holding(1, 273, 70_000),
            super::super::tiles::HashTile {
                level: 1,
                index: 1,
                width: 17
            },
            "the spec's example: 70,000 entries, a partial level-1 tile of 17"
        );
    }

    #[test]
    fn a_prefix_extended_by_tiles_has_the_trees_root() {
        let leaves: Vec<Hash> = (0u32..5000).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tiles = tiles_of(&leaves);
        let mut full = CompactRange::new();
        let mut at = Vec::new();
        for l in &leaves {
            at.push(full.clone());
            full.push(*l);
        }
        at.push(full.clone());
        let fetch = |tile: super::super::tiles::HashTile| {
            Ok::<_, ()>(tiles[&(tile.level, tile.index)][..usize::from(tile.width)].to_vec())
        };
        for (read, size) in [
            (0, 1),
            (256, 300),
            (512, 4999),
            (1, 5000),
            (4096, 5000),
            (777, 778),
        ] {
            let extended = at[read].extended_by_tiles(size, fetch).unwrap().unwrap();
            assert_eq!(extended, at[size as usize], "{read} -> {size}");
            assert_eq!(extended.root(), mth(&leaves[..size as usize]));
        }
        // A prefix that is not the tree's gives another root.
        let mut wrong = at[256].clone();
        wrong.push(leaf_hash(b"not this log's"));
        let extended = wrong.extended_by_tiles(4999, fetch).unwrap().unwrap();
        assert_ne!(extended.root(), mth(&leaves[..4999]));
        let mut pair = CompactRange::new();
        assert!(pair.push_subtree(node_hash(&leaves[0], &leaves[1]), 1));
        assert_eq!(pair, at[2], "a subtree of two is two pushes");
        let mut odd = at[3].clone();
        assert!(!odd.push_subtree(leaves[0], 1), "3 is not a multiple of 2");
    }

    #[test]
    fn the_frontier_is_recovered_from_the_last_leafs_proof() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::new();
        for size in 1..=leaves.len() {
            range.push(leaves[size - 1]);
            let proof = path(size - 1, &leaves[..size]);
            let recovered =
                CompactRange::from_last_leaf_proof(size as u64, leaves[size - 1], &proof)
                    .expect("right length");
            assert_eq!(recovered, range, "{size} leaves");
            // Extending the recovered frontier gives the same roots from here on.
            if size % 37 == 0 {
                let mut cont = recovered.clone();
                for l in &leaves[size..(size + 20).min(leaves.len())] {
                    cont.push(*l);
                }
                assert_eq!(cont.root(), mth(&leaves[..(size + 20).min(leaves.len())]));
            }
            if proof.len() > 1 {
                assert!(
                    CompactRange::from_last_leaf_proof(size as u64, leaves[size - 1], &proof[1..])
                        .is_none()
                );
            }
        }
    }
}
