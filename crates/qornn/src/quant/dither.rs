//! Stochastic rounding's offsets (`act_train_rounding = "stochastic"`): a uniform `r` in
//! `[0, 1)` per activation, drawn by a counter-based hash of the run's seed, the training
//! step and the activation's place in the batch, so that the backward pass, the fused
//! kernels (`cells/fused/quant.rs`, the same hash in 32-bit lanes) and a resumed
//! run draw the same `r` without storing it.

/// SplitMix64's finaliser (Steele et al. 2014): a bijective mix of the 64 bits.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Stochastic rounding's key for training step `step` of a run seeded `seed`.
pub fn dither_key(seed: u64, step: u64) -> u32 {
    (mix64(mix64(seed) ^ step) >> 32) as u32
}

/// The offset `r` in `[0, 1)` of stochastic rounding for the activation at `index` under
/// `key`: the top 24 bits (exact in `f32`) of a 32-bit mix of the pair (C. Wellons'
/// "lowbias32"), in 32-bit lanes so that the loops that draw it vectorise.
#[inline(always)]
pub fn dither_offset(key: u32, index: u32) -> f64 {
    let mut x = key ^ index.wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^= x >> 16;
    (x >> 8) as f64 / (1u32 << 24) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets lie in [0, 1), average 1/2, and differ by index and by key.
    #[test]
    fn offsets_are_uniform_and_keyed() {
        let offsets: Vec<f64> = (0..1000)
            .map(|i| dither_offset(dither_key(1, 2), i))
            .collect();
        assert!(offsets.iter().all(|r| (0.0..1.0).contains(r)));
        let mean = offsets.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "mean offset {mean}");
        assert_ne!(
            dither_offset(dither_key(1, 2), 5),
            dither_offset(dither_key(1, 3), 5)
        );
    }
}
