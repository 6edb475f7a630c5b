//! Audio reactivity (docs/design.md §12): per-frame band levels of a soundtrack.
//!
//! [`AudioReactivity::load`] decodes `input_audio` to 44.1 kHz mono
//! ([`decode::decode_mono_44k`]), designs one Butterworth band-pass per entry
//! of `input_audio_filters` ([`filter::butter_bandpass`], scipy's design) and
//! computes every frame's value of every filter up front:
//!
//! - frame `f` (0-based, the expressions' `f`) reads the
//!   window of `W = ⌊44100 / frames_per_second⌋` samples (pytti's
//!   `int(1/fps · 44100)`: 3675 at 12 fps, 1837 at 24) starting at sample
//!   `⌊44100 · (input_audio_offset + f / frames_per_second)⌋`;
//! - the window is filtered on its own from zero state (scipy's `sosfilt`,
//!   no taper, as pytti) and the filter's raw level is `max |filtered|`;
//! - a frame has audio only when its whole window lies inside the track;
//! - each filter's value is its raw level divided by the largest raw level of
//!   that filter over all frames that have audio, so values lie in 0..1 and
//!   the loudest frame is exactly 1 (a filter that never passes anything is 0
//!   everywhere rather than 0/0);
//! - frames without audio (past the end, including a last, partial window)
//!   have the value 0.
//!
//! The floors take a 10⁻⁶-sample allowance for floating-point error, so that
//! e.g. 30 fps windows start at exact multiples of 1470 samples.
//!
//! # Differences from pytti (deliberate, following docs/design.md §12)
//!
//! pytti-core's `SpectralAudioParser` (`src/pytti/AudioParse.py`, merged in
//! its PR #140):
//! - finds each band's maximum by scanning `int((duration − offset) · fps)`
//!   windows at `linspace(0, steps, steps)/fps` seconds from the *start of the
//!   file*, ignoring the offset and at slightly irregular spacing, so its
//!   values are not exactly the frames' and can exceed 1; zoetrope's maximum is
//!   over exactly the windows the frames read, from the offset on;
//! - keeps the last values once the track has ended (the variables are never
//!   reset; its docstring says 0); zoetrope's values are 0 after the end, and
//!   a last partial window counts as ended in both;
//! - reads 16-bit integers from the `ffmpeg` CLI; zoetrope decodes to f32 with
//!   the FFmpeg libraries (the scale cancels in the ratio);
//! - fails with a `NameError` for an offset past the end and accepts an empty
//!   track; zoetrope says which setting is wrong ([`AudioReactivity::load`]);
//! - leaves its variables undefined before the first frame boundary (an
//!   expression using one during pre-animation steps fails); here every frame
//!   index has values;
//! - ignores `input_audio` entirely when `input_audio_filters` is empty; here
//!   an empty list loads (no values; the [`Soundtrack`] is still there);
//! - also defines `<name>_prev`, which its update order makes equal to the
//!   current value; zoetrope has no such variable.
//!
//! [`Soundtrack`] is the same audio from the offset on, for the MP4's AAC
//! stream (`output::video`).

pub mod decode;
pub mod filter;

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use decode::{decode_mono_44k, SAMPLE_RATE};

use crate::error::{Error, Result};

/// The highest Butterworth prototype order accepted (pytti's default is 6).
pub const MAX_ORDER: u32 = 16;

/// Half the sample rate: every band must lie below it.
pub const NYQUIST_HZ: f64 = SAMPLE_RATE as f64 / 2.0;

/// Allowance for floating-point error in the sample positions.
const EPS_SAMPLES: f64 = 1e-6;

/// Frames filtered together ([`filter::peak_abs_lanes`]).
const LANES: usize = 8;

/// One entry of `input_audio_filters` (pytti's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// The expression variable that carries this band's value.
    pub variable_name: String,
    /// Centre of the band in Hz.
    pub f_center: f64,
    /// Width of the band in Hz: it passes `f_center ± f_width/2`.
    pub f_width: f64,
    /// Butterworth prototype order (the band-pass has `2·order` poles).
    pub order: u32,
}

impl FilterSpec {
    /// The band's edges in Hz, `(f_center − f_width/2, f_center + f_width/2)`.
    pub fn band(&self) -> (f64, f64) {
        (
            self.f_center - self.f_width / 2.0,
            self.f_center + self.f_width / 2.0,
        )
    }

    /// Checks the order and that `0 < low edge < high edge < 22 050 Hz`;
    /// errors (exit code 2) name the filter and the setting.
    pub fn validate(&self) -> Result<()> {
        let who = format!("input_audio_filters: the filter `{}`", self.variable_name);
        if !(1..=MAX_ORDER).contains(&self.order) {
            return Err(Error::input(format!(
                "{who} has order = {}; use 1 to {MAX_ORDER} (pytti's default is 6)",
                self.order
            )));
        }
        for (key, v) in [("f_center", self.f_center), ("f_width", self.f_width)] {
            if !v.is_finite() {
                return Err(Error::input(format!(
                    "{who} has {key} = {v}; use a number of Hz"
                )));
            }
        }
        let (lo, hi) = self.band();
        let band = format!(
            "f_center = {} and f_width = {} make the band {lo} to {hi} Hz",
            self.f_center, self.f_width
        );
        if self.f_width <= 0.0 || lo >= hi {
            return Err(Error::input(format!(
                "{who}: f_width = {} leaves no band (its low edge must be below its high edge); \
                 use a positive f_width",
                self.f_width
            )));
        }
        if lo <= 0.0 || hi >= NYQUIST_HZ {
            return Err(Error::input(format!(
                "{who}: {band}, which must lie strictly inside 0 to {NYQUIST_HZ} Hz (half the \
                 44.1 kHz sample rate); move f_center or narrow f_width"
            )));
        }
        Ok(())
    }

    /// The filter's second-order sections (scipy's `butter(..., output='sos')`).
    pub fn sos(&self) -> Vec<filter::Section> {
        let (lo, hi) = self.band();
        filter::butter_bandpass(self.order as usize, lo, hi, f64::from(SAMPLE_RATE))
    }
}

/// `⌊x + ε⌋` for a non-negative sample position.
fn floor_samples(x: f64) -> usize {
    (x + EPS_SAMPLES).floor().max(0.0) as usize
}

/// The window length in samples at `fps`: pytti's `int(44100 / fps)`.
pub fn window_samples(fps: f64) -> usize {
    floor_samples(f64::from(SAMPLE_RATE) / fps)
}

/// The first sample of frame `f`'s window (0-based `f`).
pub fn window_start(offset: f64, fps: f64, f: usize) -> usize {
    let sr = f64::from(SAMPLE_RATE);
    floor_samples(sr * offset + sr * f as f64 / fps)
}

fn check_timing(offset: f64, fps: f64) -> Result<()> {
    if !(offset.is_finite() && offset >= 0.0) {
        return Err(Error::input(format!(
            "input_audio_offset = {offset} cannot be used; use a number of seconds from 0 up"
        )));
    }
    if !(fps.is_finite() && fps > 0.0) || window_samples(fps) == 0 {
        return Err(Error::input(format!(
            "frames_per_second = {fps} cannot be used with input_audio; use a positive number \
             up to {SAMPLE_RATE}"
        )));
    }
    Ok(())
}

/// A decoded track's audio from an offset on (44.1 kHz mono), for the MP4.
#[derive(Debug, Clone)]
pub struct Soundtrack {
    samples: Arc<[f32]>,
    start: usize,
}

impl Soundtrack {
    /// The track `samples` (44.1 kHz mono) from `offset` seconds on (its first
    /// sample is frame 1's first, [`window_start`]); an offset at or past the
    /// end leaves it empty.
    pub fn new(samples: Arc<[f32]>, offset: f64) -> Self {
        let start = window_start(offset.max(0.0), 1.0, 0).min(samples.len());
        Soundtrack { samples, start }
    }

    /// The samples from the offset to the end of the track.
    pub fn samples(&self) -> &[f32] {
        &self.samples[self.start..]
    }

    /// The sample rate (44 100 Hz).
    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    /// Seconds from the offset to the end of the track.
    pub fn duration(&self) -> f64 {
        self.samples().len() as f64 / f64::from(SAMPLE_RATE)
    }
}

/// Every frame's band values of a track; see the module documentation.
#[derive(Debug, Clone)]
pub struct AudioReactivity {
    names: Vec<String>,
    samples: Arc<[f32]>,
    offset: f64,
    fps: f64,
    window: usize,
    /// Frames with a whole window.
    frames: usize,
    /// `frames × filters`, frame-major.
    values: Vec<f64>,
    /// Each filter's largest raw level (the divisor).
    maxima: Vec<f64>,
    zeros: Vec<f64>,
}

impl AudioReactivity {
    /// Decodes `path` and computes the values of `filters` for every frame
    /// at `fps` from `offset` seconds into the track.
    ///
    /// Errors (exit code 2): a filter's order or band
    /// ([`FilterSpec::validate`]), a negative or non-finite offset, an
    /// unreadable file or one without sound ([`decode_mono_44k`]), an offset
    /// that leaves less than one frame (`1/fps` s) of the track.
    pub fn load(path: &Path, offset: f64, fps: f64, filters: &[FilterSpec]) -> Result<Self> {
        check_timing(offset, fps)?;
        for f in filters {
            f.validate()?;
        }
        let samples = decode_mono_44k(path)?;
        Self::compute(
            samples.into(),
            offset,
            fps,
            filters,
            &path.display().to_string(),
        )
    }

    /// Like [`AudioReactivity::load`] for an already decoded 44.1 kHz mono
    /// track.
    pub fn from_samples(
        samples: impl Into<Arc<[f32]>>,
        offset: f64,
        fps: f64,
        filters: &[FilterSpec],
    ) -> Result<Self> {
        check_timing(offset, fps)?;
        for f in filters {
            f.validate()?;
        }
        Self::compute(samples.into(), offset, fps, filters, "the audio track")
    }

    fn compute(
        samples: Arc<[f32]>,
        offset: f64,
        fps: f64,
        filters: &[FilterSpec],
        label: &str,
    ) -> Result<Self> {
        let window = window_samples(fps);
        let n = samples.len();
        let fits = |f: usize| window_start(offset, fps, f) + window <= n;
        if !fits(0) {
            let duration = n as f64 / f64::from(SAMPLE_RATE);
            let last = (n.saturating_sub(window)) as f64 / f64::from(SAMPLE_RATE);
            return Err(Error::input(format!(
                "input_audio_offset = {offset} s is past the end of {label}, which lasts \
                 {duration:.3} s: the first frame needs 1/frames_per_second = {:.4} s of audio \
                 from the offset; use an offset of at most {:.3} s",
                window as f64 / f64::from(SAMPLE_RATE),
                (last * 1000.0).floor() / 1000.0
            )));
        }
        // Frames with a whole window: starts grow with f, so count up to the
        // first that does not fit (the estimate is refined by a step or two).
        let estimate = (((n - window) as f64 / f64::from(SAMPLE_RATE) - offset) * fps).max(0.0);
        let mut frames = (estimate as usize).saturating_add(1);
        while frames > 1 && !fits(frames - 1) {
            frames -= 1;
        }
        while fits(frames) {
            frames += 1;
        }
        let sections: Vec<Vec<filter::Section>> = filters.iter().map(FilterSpec::sos).collect();
        let nf = filters.len();
        let mut values = vec![0.0f64; frames * nf];
        if nf > 0 {
            // LANES frames at a time (the last group repeats its last frame).
            values
                .par_chunks_mut(nf * LANES)
                .enumerate()
                .for_each(|(c, rows)| {
                    let windows: [&[f32]; LANES] = std::array::from_fn(|l| {
                        let s0 = window_start(offset, fps, (c * LANES + l).min(frames - 1));
                        &samples[s0..s0 + window]
                    });
                    for (j, sos) in sections.iter().enumerate() {
                        let peaks = filter::peak_abs_lanes(sos, windows);
                        for (row, p) in rows.chunks_mut(nf).zip(peaks) {
                            row[j] = p;
                        }
                    }
                });
        }
        let mut maxima = vec![0.0f64; nf];
        for row in values.chunks(nf.max(1)) {
            for (m, v) in maxima.iter_mut().zip(row) {
                *m = m.max(*v);
            }
        }
        for row in values.chunks_mut(nf.max(1)) {
            for (v, m) in row.iter_mut().zip(&maxima) {
                *v = if *m > 0.0 { *v / m } else { 0.0 };
            }
        }
        Ok(AudioReactivity {
            names: filters.iter().map(|f| f.variable_name.clone()).collect(),
            samples,
            offset,
            fps,
            window,
            frames,
            values,
            maxima,
            zeros: vec![0.0; nf],
        })
    }

    /// The values of frame `f` (0-based, the expressions' `f`), one per
    /// filter in the order given; all 0 once the track has ended.
    pub fn values(&self, f: usize) -> &[f64] {
        let nf = self.names.len();
        if f < self.frames {
            &self.values[f * nf..(f + 1) * nf]
        } else {
            &self.zeros
        }
    }

    /// The filters' variable names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The whole track's duration in seconds (from its start, not the offset).
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / f64::from(SAMPLE_RATE)
    }

    /// How many frames (from `f = 0`) have audio; later frames read 0.
    pub fn frames_with_audio(&self) -> usize {
        self.frames
    }

    /// Each filter's largest raw level (`max |filtered|` of its loudest
    /// frame, in units of full scale), in filter order.
    pub fn maxima(&self) -> &[f64] {
        &self.maxima
    }

    /// Samples per window (`⌊44100 / fps⌋`).
    pub fn window_samples(&self) -> usize {
        self.window
    }

    /// The offset in seconds.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// The frame rate the values were computed for.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The decoded track (44.1 kHz mono, from its start).
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// The track from the offset on, for the MP4's soundtrack.
    pub fn soundtrack(&self) -> Soundtrack {
        Soundtrack::new(self.samples.clone(), self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, fc: f64, fw: f64, order: u32) -> FilterSpec {
        FilterSpec {
            variable_name: name.into(),
            f_center: fc,
            f_width: fw,
            order,
        }
    }

    #[test]
    fn windows_follow_pytti_lengths_and_exact_starts() {
        assert_eq!(window_samples(12.0), 3675);
        assert_eq!(window_samples(24.0), 1837);
        assert_eq!(window_samples(30.0), 1470);
        assert_eq!(window_samples(29.97), 1471);
        for f in 0..10_000 {
            assert_eq!(window_start(0.0, 30.0, f), 1470 * f);
            assert_eq!(window_start(0.3, 30.0, f), 13230 + 1470 * f);
        }
        assert_eq!(window_start(0.0, 24.0, 1), 1837);
        assert_eq!(window_start(0.0, 24.0, 2), 3675);
    }

    #[test]
    fn frame_count_is_every_whole_window() {
        let fs = [spec("a", 1000.0, 200.0, 2)];
        // 1 s at 12 fps from 0: 12 whole windows of 3675.
        let r = AudioReactivity::from_samples(vec![0.1f32; 44100], 0.0, 12.0, &fs).unwrap();
        assert_eq!(r.frames_with_audio(), 12);
        // One sample short: the last window is partial.
        let r = AudioReactivity::from_samples(vec![0.1f32; 44099], 0.0, 12.0, &fs).unwrap();
        assert_eq!(r.frames_with_audio(), 11);
        // Exactly one window after the offset.
        let r = AudioReactivity::from_samples(vec![0.1f32; 3675 + 22050], 0.5, 12.0, &fs).unwrap();
        assert_eq!(r.frames_with_audio(), 1);
        let e =
            AudioReactivity::from_samples(vec![0.1f32; 3674 + 22050], 0.5, 12.0, &fs).unwrap_err();
        assert!(e.message.contains("input_audio_offset = 0.5"), "{e}");
    }

    #[test]
    fn silence_is_zero_not_nan() {
        let fs = [spec("a", 1000.0, 200.0, 2)];
        let r = AudioReactivity::from_samples(vec![0.0f32; 44100], 0.0, 12.0, &fs).unwrap();
        assert!(r.values(0).iter().all(|v| *v == 0.0));
        assert_eq!(r.maxima(), &[0.0]);
    }
}
