//! Seeded random streams and the few distributions the simulator draws from.
//!
//! Every stream is a ChaCha8 generator keyed by the run's seed and selected by `(topic, a, b)`
//! (e.g. baseline traffic of account 17 on day 9), so one account's day does not change when
//! another account or a scenario draws more or fewer numbers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One random stream.
pub(crate) struct Rng64(ChaCha8Rng);

/// SplitMix64 finaliser: spreads nearby inputs over the whole key space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng64 {
    /// The stream `(topic, a)` of `seed`, at position `b`.
    pub(crate) fn new(seed: u64, topic: u64, a: u64) -> Rng64 {
        Rng64::sub(seed, topic, a, 0)
    }

    /// The stream `(topic, a, b)` of `seed`.
    pub(crate) fn sub(seed: u64, topic: u64, a: u64, b: u64) -> Rng64 {
        let mut r = ChaCha8Rng::seed_from_u64(mix(seed ^ mix(topic)));
        r.set_stream(mix(a.wrapping_mul(0x1_0000_0001) ^ mix(b ^ (topic << 48))));
        Rng64(r)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        self.0.random_range(lo..=hi)
    }

    /// Uniform in `lo..=hi` (u32).
    pub(crate) fn range32(&mut self, lo: u32, hi: u32) -> u32 {
        self.range(lo as i64, hi as i64) as u32
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and shape.
    pub(crate) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with mean `lambda` (normal approximation above 30).
    pub(crate) fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            let x = lambda + lambda.sqrt() * self.normal();
            return x.round().max(0.0) as u32;
        }
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }

    /// An index drawn by cumulative weights (`cum` ascending, last > 0).
    pub(crate) fn pick_cum(&mut self, cum: &[f64]) -> usize {
        let total = cum[cum.len() - 1];
        let x = self.unit() * total;
        cum.partition_point(|&c| c <= x).min(cum.len() - 1)
    }

    /// An element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `k` distinct indices of `0..n`, in the order drawn (`k <= n`).
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below((n - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }
}

/// Cumulative sums of `w`.
pub(crate) fn cumulative(w: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut s = 0.0;
    w.into_iter()
        .map(|x| {
            s += x;
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng64::sub(7, 1, 2, 3).below(1 << 40)).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng64::sub(7, 1, 2, 3);
        let mut y = Rng64::sub(7, 1, 2, 4);
        let mut z = Rng64::sub(8, 1, 2, 3);
        let (xs, ys, zs): (Vec<u64>, Vec<u64>, Vec<u64>) = (0..8)
            .map(|_| (x.below(1000), y.below(1000), z.below(1000)))
            .fold((vec![], vec![], vec![]), |(mut a, mut b, mut c), (p, q, r)| {
                a.push(p);
                b.push(q);
                c.push(r);
                (a, b, c)
            });
        assert_ne!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn poisson_and_lognormal_means() {
        let mut r = Rng64::new(1, 0, 0);
        let n = 20_000;
        let small: f64 = (0..n).map(|_| r.poisson(3.0) as f64).sum::<f64>() / n as f64;
        assert!((small - 3.0).abs() < 0.1, "{small}");
        let big: f64 = (0..n).map(|_| r.poisson(200.0) as f64).sum::<f64>() / n as f64;
        assert!((big - 200.0).abs() < 1.0, "{big}");
        let mut v: Vec<f64> = (0..n).map(|_| r.lognormal(90.0, 1.0)).collect();
        v.sort_by(f64::total_cmp);
        let median = v[n / 2];
        assert!((80.0..100.0).contains(&median), "{median}");
    }

    #[test]
    fn pick_cum_respects_weights() {
        let mut r = Rng64::new(3, 0, 0);
        let cum = cumulative([1.0, 0.0, 3.0]);
        let mut counts = [0; 3];
        for _ in 0..4000 {
            counts[r.pick_cum(&cum)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > 2 * counts[0]);
    }
}
