//! Butterworth band-pass filters as scipy designs and runs them.
//!
//! [`butter_bandpass`] is `scipy.signal.butter(order, [lo/nyq, hi/nyq], btype='bandpass',
//! output='sos')`, step by step as scipy 1.17 computes it:
//!
//! 1. `buttap(N)`: the analog low-pass prototype, no zeros, poles
//!    `−exp(iπm/(2N))` for `m = −N+1, −N+3, …, N−1`, gain 1;
//! 2. pre-warping (`fs = 2`): `w = 4·tan(π·Wn/2)` for both band edges;
//! 3. `lp2bp_zpk(wo = √(w_lo·w_hi), bw = w_hi − w_lo)`: each pole `p` becomes
//!    `p·bw/2 ± √((p·bw/2)² − wo²)`, N zeros at the origin, gain `bw^N`;
//! 4. `bilinear_zpk(fs = 2)`: `z → (4 + z)/(4 − z)`; the N zeros at the origin
//!    land on +1 and N zeros from infinity on −1, gain
//!    `k·Re(∏(4 − z)/∏(4 − p))`;
//! 5. `zpk2sos(pairing='nearest')`: conjugate pairs grouped by `_cplxreal`,
//!    then sections built from the last to the first, each from the pole
//!    closest to the unit circle, its conjugate (or the next real pole) and the
//!    zero(s) nearest to it; the whole gain goes into the first section's
//!    numerator.
//!
//! [`zpk2sos`] follows scipy's general (digital, `nearest`) algorithm,
//! including its special cases, so the sections come out in scipy's order and
//! pairing, not merely as an equivalent filter; `tests/it/audio.rs` compares them
//! section by section with scipy's on `tests/fixtures/audio/`.
//!
//! [`sosfilt`] is `scipy.signal.sosfilt` with zero initial state: a cascade of
//! direct-form-II-transposed biquads in f64, and [`peak_abs`] /
//! [`peak_abs_lanes`] the same recursion returning only `max |y|` (what the
//! band values need).

use nalgebra::Complex;

type C = Complex<f64>;

/// One second-order section `[b0, b1, b2, a0, a1, a2]` (scipy's layout, `a0 = 1`).
pub type Section = [f64; 6];

/// Second-order sections of a digital Butterworth band-pass of prototype
/// order `order` (so `2·order` poles and `order` sections) passing
/// `lo_hz..hi_hz` at `sample_rate`; scipy's
/// `butter(order, [lo, hi], btype='bandpass', output='sos', fs=sample_rate)`.
///
/// The caller checks `0 < lo_hz < hi_hz < sample_rate/2` and `order ≥ 1`
/// (see [`super::FilterSpec::validate`]); outside that the result is
/// meaningless (scipy raises).
pub fn butter_bandpass(order: usize, lo_hz: f64, hi_hz: f64, sample_rate: f64) -> Vec<Section> {
    let nyq = sample_rate / 2.0;
    let (z, p, k) = butter_bandpass_zpk(order, lo_hz / nyq, hi_hz / nyq);
    zpk2sos(&z, &p, k)
}

/// Zeros, poles and gain of the digital band-pass for normalised edges
/// `wn_lo`, `wn_hi` (fractions of Nyquist), before `zpk2sos`.
pub fn butter_bandpass_zpk(order: usize, wn_lo: f64, wn_hi: f64) -> (Vec<C>, Vec<C>, f64) {
    let n = order as f64;
    // buttap: m = arange(-N+1, N, 2); p = -exp(1j*pi*m/(2N))
    let proto: Vec<C> = (0..order)
        .map(|i| {
            let m = -n + 1.0 + 2.0 * i as f64;
            let theta = std::f64::consts::PI * m / (2.0 * n);
            -C::new(theta.cos(), theta.sin())
        })
        .collect();
    // iirfilter, digital: fs = 2, warped = 2*fs*tan(pi*Wn/fs)
    let fs = 2.0;
    let warp = |w: f64| 2.0 * fs * (std::f64::consts::PI * w / fs).tan();
    let (w0, w1) = (warp(wn_lo), warp(wn_hi));
    let bw = w1 - w0;
    let wo = (w0 * w1).sqrt();

    // lp2bp_zpk (no prototype zeros, so degree = N)
    let degree = order as i32;
    let wo2 = C::new(wo * wo, 0.0);
    let p_lp: Vec<C> = proto.iter().map(|p| p * (bw / 2.0)).collect();
    let mut p_bp: Vec<C> = p_lp.iter().map(|p| p + (p * p - wo2).sqrt()).collect();
    p_bp.extend(p_lp.iter().map(|p| p - (p * p - wo2).sqrt()));
    let z_bp: Vec<C> = vec![C::new(0.0, 0.0); order];
    let k_bp = bw.powi(degree);

    // bilinear_zpk(fs = 2): fs2 = 4
    let fs2 = C::new(2.0 * fs, 0.0);
    let mut z_z: Vec<C> = z_bp.iter().map(|z| (fs2 + z) / (fs2 - z)).collect();
    z_z.extend(std::iter::repeat_n(C::new(-1.0, 0.0), order));
    let p_z: Vec<C> = p_bp.iter().map(|p| (fs2 + p) / (fs2 - p)).collect();
    let num = z_bp.iter().fold(C::new(1.0, 0.0), |acc, z| acc * (fs2 - z));
    let den = p_bp.iter().fold(C::new(1.0, 0.0), |acc, p| acc * (fs2 - p));
    let k_z = k_bp * (num / den).re;
    (z_z, p_z, k_z)
}

fn is_real(c: &C) -> bool {
    c.im == 0.0
}

fn cmp(a: f64, b: f64) -> std::cmp::Ordering {
    a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
}

/// scipy's `_cplxreal`: the complex values with positive imaginary part (one
/// of each conjugate pair, averaged with its partner) and the real values,
/// each in scipy's order. `None` when a complex value has no conjugate.
fn cplxreal(z: &[C]) -> Option<(Vec<C>, Vec<f64>)> {
    if z.is_empty() {
        return Some((Vec::new(), Vec::new()));
    }
    let tol = 100.0 * f64::EPSILON;
    // lexsort((abs(z.imag), z.real)): by real part, then |imag|; stable.
    let mut z = z.to_vec();
    z.sort_by(|a, b| cmp(a.re, b.re).then(cmp(a.im.abs(), b.im.abs())));
    let real = |c: &C| c.im.abs() <= tol * c.norm();
    let zr: Vec<f64> = z.iter().filter(|c| real(c)).map(|c| c.re).collect();
    if zr.len() == z.len() {
        return Some((Vec::new(), zr));
    }
    let zc: Vec<C> = z.into_iter().filter(|c| !real(c)).collect();
    let mut zp: Vec<C> = zc.iter().copied().filter(|c| c.im > 0.0).collect();
    let mut zn: Vec<C> = zc.iter().copied().filter(|c| c.im < 0.0).collect();
    if zp.len() != zn.len() {
        return None;
    }
    // Runs of (nearly) the same real part, each sorted by |imag|.
    let same: Vec<bool> = zp
        .windows(2)
        .map(|w| w[1].re - w[0].re <= tol * w[0].norm())
        .collect();
    let mut i = 0;
    while i < same.len() {
        if !same[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < same.len() && same[i] {
            i += 1;
        }
        let range = start..=i; // elements start..=i share a real part
        for chunk in [&mut zp[range.clone()], &mut zn[range]] {
            chunk.sort_by(|a, b| cmp(a.im.abs(), b.im.abs()));
        }
    }
    if zp
        .iter()
        .zip(&zn)
        .any(|(p, n)| (p - n.conj()).norm() > tol * n.norm())
    {
        return None;
    }
    let zc = zp
        .iter()
        .zip(&zn)
        .map(|(p, n)| (p + n.conj()) / 2.0)
        .collect();
    Some((zc, zr))
}

/// Index of the value closest to the unit circle (numpy's `argmin`: the first
/// of equals).
fn idx_worst(p: &[C]) -> usize {
    let mut best = 0;
    let mut best_d = f64::INFINITY;
    for (i, c) in p.iter().enumerate() {
        let d = (1.0 - c.norm()).abs();
        if d < best_d {
            best = i;
            best_d = d;
        }
    }
    best
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Real,
    Complex,
    Any,
}

/// scipy's `_nearest_real_complex_idx`: the index of the value of `fro`
/// nearest to `to` among the real, complex or any values.
fn nearest(fro: &[C], to: C, which: Which) -> Option<usize> {
    let mut order: Vec<usize> = (0..fro.len()).collect();
    order.sort_by(|&a, &b| cmp((fro[a] - to).norm(), (fro[b] - to).norm()));
    order.into_iter().find(|&i| match which {
        Which::Any => true,
        Which::Real => is_real(&fro[i]),
        Which::Complex => !is_real(&fro[i]),
    })
}

/// numpy's `poly`: the monic polynomial with these roots, highest power
/// first, as convolutions of `[1, −r]`; the real part (scipy keeps it).
fn poly(roots: &[C]) -> Vec<f64> {
    let mut a = vec![C::new(1.0, 0.0)];
    for r in roots {
        let mut next = vec![C::new(0.0, 0.0); a.len() + 1];
        for (i, c) in a.iter().enumerate() {
            next[i] += c;
            next[i + 1] += c * -r;
        }
        a = next;
    }
    a.into_iter().map(|c| c.re).collect()
}

/// scipy's `_single_zpksos(z, p, 1)`: b and a right-aligned in their halves.
fn single_section(z: &[C], p: &[C]) -> Section {
    let mut sos = [0.0; 6];
    let b = poly(z);
    let a = poly(p);
    sos[3 - b.len()..3].copy_from_slice(&b);
    sos[6 - a.len()..6].copy_from_slice(&a);
    sos
}

/// scipy's `zpk2sos(z, p, k, pairing='nearest')` for a digital filter whose
/// complex zeros and poles come in conjugate pairs.
pub fn zpk2sos(z: &[C], p: &[C], k: f64) -> Vec<Section> {
    if z.is_empty() && p.is_empty() {
        return vec![[k, 0.0, 0.0, 1.0, 0.0, 0.0]];
    }
    let zero = C::new(0.0, 0.0);
    let mut p = p.to_vec();
    let mut z = z.to_vec();
    let len = p.len().max(z.len());
    p.resize(len, zero);
    z.resize(len, zero);
    let n_sections = len.div_ceil(2);
    if len % 2 == 1 {
        p.push(zero);
        z.push(zero);
    }
    let split = |v: &[C]| {
        let (c, r) = cplxreal(v).expect("complex zeros and poles come in conjugate pairs");
        c.into_iter()
            .chain(r.into_iter().map(|x| C::new(x, 0.0)))
            .collect::<Vec<C>>()
    };
    let mut z = split(&z);
    let mut p = split(&p);

    let mut sos = vec![[0.0; 6]; n_sections];
    let real_count = |v: &[C]| v.iter().filter(|c| is_real(c)).count();
    let take = |v: &mut Vec<C>, i: Option<usize>| v.remove(i.expect("a zero of the needed kind"));
    for si in (0..n_sections).rev() {
        let p1 = p.remove(idx_worst(&p));
        if is_real(&p1) && real_count(&p) == 0 {
            // Special case (1): the last remaining real pole.
            let i = nearest(&z, p1, Which::Real);
            let z1 = take(&mut z, i);
            sos[si] = single_section(&[z1, zero], &[p1, zero]);
        } else if p.len() + 1 == z.len()
            && !is_real(&p1)
            && real_count(&p) == 1
            && real_count(&z) == 1
        {
            // Special case (2): one real pole and one real zero left; pair
            // this complex pole with a complex zero.
            let i = nearest(&z, p1, Which::Complex);
            let z1 = take(&mut z, i);
            sos[si] = single_section(&[z1, z1.conj()], &[p1, p1.conj()]);
        } else {
            let p2 = if is_real(&p1) {
                let reals: Vec<usize> = (0..p.len()).filter(|&i| is_real(&p[i])).collect();
                let sub: Vec<C> = reals.iter().map(|&i| p[i]).collect();
                p.remove(reals[idx_worst(&sub)])
            } else {
                p1.conj()
            };
            if z.is_empty() {
                sos[si] = single_section(&[], &[p1, p2]);
            } else {
                let i = nearest(&z, p1, Which::Any);
                let z1 = take(&mut z, i);
                if !is_real(&z1) {
                    sos[si] = single_section(&[z1, z1.conj()], &[p1, p2]);
                } else if !z.is_empty() {
                    let i = nearest(&z, p1, Which::Real);
                    let z2 = take(&mut z, i);
                    sos[si] = single_section(&[z1, z2], &[p1, p2]);
                } else {
                    sos[si] = single_section(&[z1], &[p1, p2]);
                }
            }
        }
    }
    for c in &mut sos[0][..3] {
        *c *= k;
    }
    sos
}

/// `scipy.signal.sosfilt(sos, x)` with zero initial state, in f64.
pub fn sosfilt(sos: &[Section], x: &[f64]) -> Vec<f64> {
    let mut state = vec![[0.0f64; 2]; sos.len()];
    x.iter()
        .map(|&v| {
            let mut cur = v;
            for (s, zi) in sos.iter().zip(state.iter_mut()) {
                let new = s[0] * cur + zi[0];
                zi[0] = s[1] * cur - s[4] * new + zi[1];
                zi[1] = s[2] * cur - s[5] * new;
                cur = new;
            }
            cur
        })
        .collect()
}

/// The most sections the fixed-size filter state holds (order 16).
const MAX_SECTIONS: usize = 16;

/// `max |sosfilt(sos, x)|` (zero initial state) without storing the output;
/// 0 for an empty `x`.
pub fn peak_abs(sos: &[Section], x: &[f32]) -> f64 {
    peak_abs_lanes::<1>(sos, [x])[0]
}

/// [`peak_abs`] of `L` windows of equal length at once, each lane
/// computed exactly as alone (same operations in the same order), but the
/// lanes' independent recursions fill the CPU's pipelines and vector units:
/// eight lanes are about four times faster than one. Uses AVX (not FMA,
/// which would round differently) where the CPU has it.
pub fn peak_abs_lanes<const L: usize>(sos: &[Section], x: [&[f32]; L]) -> [f64; L] {
    let n = x.first().map_or(0, |w| w.len());
    if sos.len() > MAX_SECTIONS || x.iter().any(|w| w.len() != n) {
        return x.map(|w| {
            let w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
            sosfilt(sos, &w).iter().fold(0.0f64, |m, y| m.max(y.abs()))
        });
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked just now).
        return unsafe { peak_lanes_avx(sos, x) };
    }
    peak_lanes(sos, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn peak_lanes_avx<const L: usize>(sos: &[Section], x: [&[f32]; L]) -> [f64; L] {
    peak_lanes(sos, x)
}

/// The recursion of [`sosfilt`] over `L` lanes; `sos.len() ≤ MAX_SECTIONS`
/// and every lane as long as the first.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `i` indexes every lane's window
fn peak_lanes<const L: usize>(sos: &[Section], x: [&[f32]; L]) -> [f64; L] {
    let mut z0 = [[0.0f64; L]; MAX_SECTIONS];
    let mut z1 = [[0.0f64; L]; MAX_SECTIONS];
    let mut peak = [0.0f64; L];
    let n = x.first().map_or(0, |w| w.len());
    for i in 0..n {
        let mut cur: [f64; L] = std::array::from_fn(|l| f64::from(x[l][i]));
        for ((s, a), b) in sos.iter().zip(&mut z0).zip(&mut z1) {
            for l in 0..L {
                let new = s[0] * cur[l] + a[l];
                a[l] = s[1] * cur[l] - s[4] * new + b[l];
                b[l] = s[2] * cur[l] - s[5] * new;
                cur[l] = new;
            }
        }
        for l in 0..L {
            peak[l] = peak[l].max(cur[l].abs());
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy 1.17: butter(1, [40/22050, 80/22050], btype='bandpass', output='sos').
    #[test]
    fn first_order_band_matches_scipy() {
        let sos = butter_bandpass(1, 40.0, 80.0, 44100.0);
        assert_eq!(sos.len(), 1);
        let want = [0.00284143, 0.0, -0.00284143, 1.0, -1.99425237, 0.99431714];
        for (a, b) in sos[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-8, "{:?}", sos[0]);
        }
    }

    #[test]
    fn sections_are_stable_and_pass_the_centre() {
        for order in 1..=8 {
            for (lo, hi) in [(40.0, 80.0), (300.0, 3400.0), (15000.0, 21000.0)] {
                let sos = butter_bandpass(order, lo, hi, 44100.0);
                assert_eq!(sos.len(), order);
                for s in &sos {
                    assert_eq!(s[3], 1.0);
                    // Poles inside the unit circle: |a2| < 1 and |a1| < 1 + a2.
                    assert!(s[5].abs() < 1.0 && s[4].abs() < 1.0 + s[5], "{s:?}");
                }
                // A long sine at the centre (the digital frequency that the
                // bilinear transform maps to √(w_lo·w_hi)) comes out at unit gain.
                let t = |f: f64| (std::f64::consts::PI * f / 44100.0).tan();
                let fc = 44100.0 / std::f64::consts::PI * (t(lo) * t(hi)).sqrt().atan();
                let x: Vec<f64> = (0..44100)
                    .map(|i| (2.0 * std::f64::consts::PI * fc * i as f64 / 44100.0).sin())
                    .collect();
                let y = sosfilt(&sos, &x);
                let tail = y[22050..].iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!((tail - 1.0).abs() < 0.02, "order {order} {lo}-{hi}: {tail}");
            }
        }
    }

    #[test]
    fn peak_matches_sosfilt() {
        let sos = butter_bandpass(6, 70.0, 90.0, 44100.0);
        let x: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 201) as f32 - 100.0)
            .collect();
        let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let want = sosfilt(&sos, &xf)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert_eq!(peak_abs(&sos, &x), want);
        assert_eq!(peak_abs(&sos, &[]), 0.0);
        // Lanes are computed exactly as alone.
        let windows: [&[f32]; 8] = std::array::from_fn(|l| &x[l * 300..l * 300 + 2000]);
        let lanes = peak_abs_lanes(&sos, windows);
        for (l, w) in windows.iter().enumerate() {
            assert_eq!(lanes[l], peak_abs(&sos, w));
        }
    }

    #[test]
    fn cplxreal_groups_pairs_like_scipy() {
        // scipy: _cplxreal([1, 3+2j, 3-2j, 3+1j, 3-1j, -2]) ->
        // ([3+1j, 3+2j], [-2, 1])
        let z = [
            C::new(1.0, 0.0),
            C::new(3.0, 2.0),
            C::new(3.0, -2.0),
            C::new(3.0, 1.0),
            C::new(3.0, -1.0),
            C::new(-2.0, 0.0),
        ];
        let (c, r) = cplxreal(&z).unwrap();
        assert_eq!(c, vec![C::new(3.0, 1.0), C::new(3.0, 2.0)]);
        assert_eq!(r, vec![-2.0, 1.0]);
        assert!(cplxreal(&[C::new(1.0, 1.0)]).is_none());
    }
}
