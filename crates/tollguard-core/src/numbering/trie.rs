//! A digit trie: longest-prefix lookup over `0-9` with no allocation and no hashing.
//!
//! Nodes live in one vector; each has ten child indexes (0 = none; the root is node 0 and never
//! anybody's child). Values are kept beside the nodes. A lookup walks the digits until the trie
//! ends and returns the deepest node on the way that carries a value.

/// A trie from digit strings to values of type `V`.
#[derive(Clone, Debug)]
pub struct DigitTrie<V> {
    children: Vec<[u32; 10]>,
    values: Vec<Option<V>>,
}

impl<V> Default for DigitTrie<V> {
    fn default() -> Self {
        DigitTrie { children: vec![[0; 10]], values: vec![None] }
    }
}

impl<V> DigitTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes (including the root).
    pub fn node_count(&self) -> usize {
        self.children.len()
    }

    /// The node for `prefix`, created as needed. `prefix` must be ASCII digits.
    pub fn node_mut(&mut self, prefix: &[u8]) -> &mut Option<V> {
        let mut node = 0usize;
        for &c in prefix {
            debug_assert!(c.is_ascii_digit());
            let d = (c - b'0') as usize;
            let next = self.children[node][d];
            node = if next == 0 {
                let id = self.children.len();
                self.children.push([0; 10]);
                self.values.push(None);
                self.children[node][d] = id as u32;
                id
            } else {
                next as usize
            };
        }
        &mut self.values[node]
    }

    /// Sets the value for `prefix`, returning the one it replaces.
    pub fn insert(&mut self, prefix: &[u8], value: V) -> Option<V> {
        self.node_mut(prefix).replace(value)
    }

    /// The value of the longest prefix of `digits` that has one, and that prefix's length.
    /// Stops at the first byte that is not a digit.
    #[inline]
    pub fn longest(&self, digits: &[u8]) -> Option<(&V, usize)> {
        let mut node = 0usize;
        let mut best = self.values[0].as_ref().map(|v| (v, 0));
        for (i, &c) in digits.iter().enumerate() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            let next = self.children[node][d as usize];
            if next == 0 {
                break;
            }
            node = next as usize;
            if let Some(v) = &self.values[node] {
                best = Some((v, i + 1));
            }
        }
        best
    }

    /// Every value on the path of `digits`, shortest prefix first, with its prefix length;
    /// written into `out` (which is cleared), so callers can fall back to shorter prefixes.
    pub fn path(&self, digits: &[u8], out: &mut [(u32, u8)]) -> usize {
        let mut n = 0;
        let mut node = 0usize;
        if self.values[0].is_some() && n < out.len() {
            out[n] = (0, 0);
            n += 1;
        }
        for (i, &c) in digits.iter().enumerate() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            let next = self.children[node][d as usize];
            if next == 0 {
                break;
            }
            node = next as usize;
            if self.values[node].is_some() && n < out.len() {
                out[n] = (node as u32, (i + 1) as u8);
                n += 1;
            }
        }
        n
    }

    /// The value stored at a node id returned by [`DigitTrie::path`].
    pub fn value_at(&self, node: u32) -> Option<&V> {
        self.values.get(node as usize).and_then(Option::as_ref)
    }

    /// A trie of the same prefixes with each value computed from the root down: `f` gets what
    /// the nearest ancestor with a value passed on (`root` above the first) and the node's own
    /// value, and returns the new value and what to pass on to the node's descendants. No
    /// recursion, no prefix built: a node's children are always made after it, so its id is
    /// lower than theirs.
    pub fn map_down<S: Copy, W>(&self, root: S, mut f: impl FnMut(S, &V) -> (W, S)) -> DigitTrie<W> {
        let mut passed = vec![root; self.children.len()];
        let mut values = Vec::with_capacity(self.values.len());
        for (node, (children, value)) in self.children.iter().zip(&self.values).enumerate() {
            let here = passed[node];
            let (value, on) = match value {
                Some(v) => {
                    let (w, on) = f(here, v);
                    (Some(w), on)
                }
                None => (None, here),
            };
            values.push(value);
            for &c in children.iter().filter(|&&c| c != 0) {
                debug_assert!(c as usize > node, "a child is made after its parent");
                passed[c as usize] = on;
            }
        }
        DigitTrie { children: self.children.clone(), values }
    }

    /// Visits every (prefix, value) in depth-first, digit order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &V)) {
        let mut prefix = Vec::new();
        self.walk(0, &mut prefix, &mut f);
    }

    fn walk(&self, node: usize, prefix: &mut Vec<u8>, f: &mut impl FnMut(&[u8], &V)) {
        if let Some(v) = &self.values[node] {
            f(prefix, v);
        }
        for d in 0..10u8 {
            let c = self.children[node][d as usize];
            if c != 0 {
                prefix.push(b'0' + d);
                self.walk(c as usize, prefix, f);
                prefix.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = DigitTrie::new();
        t.insert(b"31", "nl");
        t.insert(b"316", "nl-mobile");
        t.insert(b"670", "tl");
        assert_eq!(t.longest(b"31612345678"), Some((&"nl-mobile", 3)));
        assert_eq!(t.longest(b"31201234567"), Some((&"nl", 2)));
        assert_eq!(t.longest(b"3"), None);
        assert_eq!(t.longest(b"44"), None);
        assert_eq!(t.longest(b"6701"), Some((&"tl", 3)));
    }

    proptest! {
        /// The trie agrees with a naive scan over the same prefixes.
        #[test]
        fn agrees_with_a_naive_scan(
            deck in proptest::collection::vec("[0-9]{1,6}", 1..60),
            numbers in proptest::collection::vec("[0-9]{0,12}", 1..40),
        ) {
            let mut t = DigitTrie::new();
            for (i, p) in deck.iter().enumerate() {
                t.insert(p.as_bytes(), i);
            }
            for n in &numbers {
                // naive: the longest matching prefix; for equal prefixes the last insert wins
                let mut best: Option<(usize, usize)> = None;
                for (i, p) in deck.iter().enumerate() {
                    if n.starts_with(p.as_str()) && best.is_none_or(|(_, len)| p.len() >= len) {
                        best = Some((i, p.len()));
                    }
                }
                let got = t.longest(n.as_bytes()).map(|(v, len)| (*v, len));
                prop_assert_eq!(got, best);
            }
        }

        /// `map_down` passes each value what its nearest ancestor with a value passed on, as a
        /// scan over the prefixes finds it, and keeps the trie's lookups.
        #[test]
        fn map_down_passes_on_from_the_nearest_ancestor(
            deck in proptest::collection::vec("[0-9]{1,5}", 1..60),
            numbers in proptest::collection::vec("[0-9]{0,8}", 1..40),
        ) {
            let mut t = DigitTrie::new();
            for (i, p) in deck.iter().enumerate() {
                t.insert(p.as_bytes(), i);
            }
            let m = t.map_down(usize::MAX, |above, &own| ((above, own), own));
            // the value of a prefix: the last insert of it
            let value = |p: &str| deck.iter().rposition(|q| q == p);
            for p in &deck {
                let above = (0..p.len()).rev().find_map(|k| value(&p[..k])).unwrap_or(usize::MAX);
                let got = m.longest(p.as_bytes()).map(|(v, len)| (*v, len));
                prop_assert_eq!(got, Some(((above, value(p).unwrap()), p.len())));
            }
            for n in &numbers {
                let got = m.longest(n.as_bytes()).map(|(v, len)| (v.1, len));
                prop_assert_eq!(got, t.longest(n.as_bytes()).map(|(v, len)| (*v, len)));
            }
        }
    }
}
