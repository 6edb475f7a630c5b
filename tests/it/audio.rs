//! Audio reactivity (docs/design.md §12): the band-pass design and filter against scipy
//! (fixtures from scripts/reference/gen_audio_fixtures.py), the per-frame band
//! values, decoding and resampling with FFmpeg, the errors, and the MP4's AAC
//! soundtrack.

use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::SafeTensors;
use serde::Deserialize;
use zoetrope::audio::filter::{butter_bandpass, sosfilt, Section};
use zoetrope::audio::{AudioReactivity, FilterSpec};
use zoetrope::ErrorKind;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

fn f64s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[derive(Deserialize)]
struct Design {
    order: usize,
    lo: f64,
    hi: f64,
}

struct Filters {
    signal: Vec<f64>,
    stride: usize,
    designs: Vec<(Design, Vec<Section>, Vec<f64>)>,
}

fn load_filters() -> Filters {
    let bytes = std::fs::read(fixtures().join("filters.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let designs: Vec<Design> = serde_json::from_str(&meta["designs"]).unwrap();
    let stride: usize = meta["stride"].parse().unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let signal: Vec<f64> = st
        .tensor("signal")
        .unwrap()
        .data()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
        .collect();
    let designs = designs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let sos = st.tensor(&format!("sos_{i}")).unwrap();
            assert_eq!(sos.shape(), [d.order, 6]);
            let sos: Vec<Section> = f64s(sos.data())
                .chunks_exact(6)
                .map(|c| c.try_into().unwrap())
                .collect();
            let out = f64s(st.tensor(&format!("out_{i}")).unwrap().data());
            (d, sos, out)
        })
        .collect();
    Filters {
        signal,
        stride,
        designs,
    }
}

/// Reads a 16-bit PCM mono WAV (as Python's `wave` writes it) as integers.
fn read_wav_i16(path: &Path) -> Vec<i16> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..12], b"WAVE");
    let mut i = 12;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            return b[i + 8..i + 8 + len]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + len + len % 2;
    }
    panic!("no data chunk in {}", path.display());
}

fn pulse_samples() -> Vec<f32> {
    read_wav_i16(&fixtures().join("pulse.wav"))
        .into_iter()
        .map(|v| v as f32 / 32768.0)
        .collect()
}

fn spec(name: &str, f_center: f64, f_width: f64, order: u32) -> FilterSpec {
    FilterSpec {
        variable_name: name.into(),
        f_center,
        f_width,
        order,
    }
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Every coefficient of every section equals scipy's, relative to the
/// largest coefficient of its half (b or a) of that section: the gain makes
/// the first section's b tiny for narrow low bands, and exact zeros (b1 of
/// `[1, 0, −1]`) have no relative error of their own.
#[test]
fn filter_designs_match_scipy_section_by_section() {
    let fx = load_filters();
    let mut worst = 0.0f64;
    for (d, want, _) in &fx.designs {
        let got = butter_bandpass(d.order, d.lo, d.hi, 44100.0);
        assert_eq!(got.len(), want.len(), "order {} {}-{}", d.order, d.lo, d.hi);
        for (si, (g, w)) in got.iter().zip(want).enumerate() {
            for half in [0..3, 3..6] {
                let scale = w[half.clone()].iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for j in half {
                    let err = (g[j] - w[j]).abs() / scale;
                    worst = worst.max(err);
                    assert!(
                        err < 1e-6,
                        "order {} {}-{} Hz, section {si}, coefficient {j}: {} vs scipy {} \
                         (sections {got:?} vs {want:?})",
                        d.order,
                        d.lo,
                        d.hi,
                        g[j],
                        w[j]
                    );
                }
            }
        }
    }
    println!("sos: largest relative error vs scipy {worst:.3e}");
}

/// sosfilt of the fixture signal with scipy's sections and with ours, both
/// against scipy's sosfilt output, relative to the output's peak.
#[test]
fn sosfilt_matches_scipy() {
    let fx = load_filters();
    let (mut worst_theirs, mut worst_ours) = (0.0f64, 0.0f64);
    for (d, sos, want) in &fx.designs {
        let ours = butter_bandpass(d.order, d.lo, d.hi, 44100.0);
        let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(peak > 1.0, "the signal reaches every band");
        for (which, s, worst) in [
            ("scipy's", sos, &mut worst_theirs),
            ("our", &ours, &mut worst_ours),
        ] {
            let y = sosfilt(s, &fx.signal);
            assert_eq!(y.len(), fx.signal.len());
            for (k, w) in want.iter().enumerate() {
                let err = (y[k * fx.stride] - w).abs() / peak;
                *worst = worst.max(err);
                assert!(
                    err < 1e-6,
                    "{which} sections, order {} {}-{} Hz, sample {}: {} vs scipy {w}",
                    d.order,
                    d.lo,
                    d.hi,
                    k * fx.stride,
                    y[k * fx.stride]
                );
            }
        }
    }
    println!(
        "sosfilt: largest error relative to peak vs scipy: {worst_theirs:.3e} with scipy's \
         sections, {worst_ours:.3e} with ours"
    );
}

#[derive(Deserialize)]
struct Bands {
    fps: f64,
    offset: f64,
    window: usize,
    starts: Vec<usize>,
    filters: Vec<FilterSpec>,
    values: std::collections::HashMap<String, Vec<f64>>,
}

fn load_bands() -> Bands {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("pulse_bands.json")).unwrap())
        .unwrap()
}

#[test]
fn band_values_match_the_scipy_reference() {
    let b = load_bands();
    let r = AudioReactivity::from_samples(pulse_samples(), b.offset, b.fps, &b.filters).unwrap();
    assert_eq!(r.window_samples(), b.window);
    assert_eq!(r.frames_with_audio(), b.starts.len());
    for (f, s) in b.starts.iter().enumerate() {
        assert_eq!(zoetrope::audio::window_start(b.offset, b.fps, f), *s);
    }
    let mut worst = 0.0f64;
    for (j, spec) in b.filters.iter().enumerate() {
        assert_eq!(r.names()[j], spec.variable_name);
        for (f, want) in b.values[&spec.variable_name].iter().enumerate() {
            let err = (r.values(f)[j] - want).abs();
            worst = worst.max(err);
            assert!(
                err < 1e-9,
                "{} frame {f}: {} vs {want}",
                spec.variable_name,
                r.values(f)[j]
            );
        }
    }
    println!("band values: largest error vs scipy {worst:.3e}");
}

#[test]
fn the_pulse_drives_the_bass_band_and_not_the_hiss() {
    let fps = 12.0;
    let offset = 0.25;
    let filters = [spec("bass", 60.0, 40.0, 4), spec("hiss", 3000.0, 1000.0, 6)];
    let r = AudioReactivity::from_samples(pulse_samples(), offset, fps, &filters).unwrap();
    let n = r.frames_with_audio();
    assert_eq!(n, 21); // (2 s − 0.25 s) · 12 = 21 whole windows
                       // The 60 Hz amplitude envelope, 0.45·(1 − cos 2π·2t)/2, at each window's peak.
    let w = r.window_samples();
    let envelope: Vec<f64> = (0..n)
        .map(|f| {
            let s0 = zoetrope::audio::window_start(offset, fps, f);
            (s0..s0 + w)
                .map(|i| {
                    let t = i as f64 / 44100.0;
                    0.45 * (1.0 - (2.0 * std::f64::consts::PI * 2.0 * t).cos()) / 2.0
                })
                .fold(0.0, f64::max)
        })
        .collect();
    let bass: Vec<f64> = (0..n).map(|f| r.values(f)[0]).collect();
    let hiss: Vec<f64> = (0..n).map(|f| r.values(f)[1]).collect();
    let corr = pearson(&bass, &envelope);
    let hiss_min = hiss.iter().copied().fold(f64::INFINITY, f64::min);
    println!("bass–pulse correlation {corr:.4}; hiss range {hiss_min:.4}..1");
    assert!(corr > 0.8, "bass {bass:?} vs pulse {envelope:?}");
    assert!(hiss_min > 0.95, "hiss should stay flat: {hiss:?}");
    // Normalised: each filter's loudest frame is exactly 1, none above.
    for j in 0..2 {
        let max = (0..n).map(|f| r.values(f)[j]).fold(0.0, f64::max);
        assert_eq!(max, 1.0);
        assert!((0..n).all(|f| r.values(f)[j] >= 0.0));
    }
    // After the track: 0 (also far after).
    for f in [n, n + 1, 10_000] {
        assert_eq!(r.values(f), &[0.0, 0.0]);
    }
    assert!((r.duration() - 2.0).abs() < 1e-12);
    assert_eq!(r.soundtrack().samples().len(), 88200 - 11025);
}

#[test]
fn filters_outside_the_band_or_empty_are_refused() {
    let samples = pulse_samples();
    let cases = [
        (spec("lo", 10.0, 40.0, 4), "-10 to 30 Hz"),
        (spec("edge", 20.0, 40.0, 4), "0 to 40 Hz"),
        (spec("hi", 22000.0, 200.0, 4), "21900 to 22100 Hz"),
        (spec("flat", 1000.0, 0.0, 4), "f_width = 0"),
        (spec("neg", 1000.0, -10.0, 4), "f_width = -10"),
        (spec("zero_order", 1000.0, 100.0, 0), "order = 0"),
        (spec("big_order", 1000.0, 100.0, 17), "order = 17"),
        (spec("nan", f64::NAN, 100.0, 2), "f_center = NaN"),
    ];
    for (f, needle) in cases {
        let e = AudioReactivity::from_samples(samples.clone(), 0.0, 12.0, std::slice::from_ref(&f))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("input_audio_filters"), "{e}");
        assert!(e.message.contains(&format!("`{}`", f.variable_name)), "{e}");
        assert!(e.message.contains(needle), "{needle:?} not in: {e}");
    }
    // Just inside the limits is fine.
    AudioReactivity::from_samples(samples, 0.0, 12.0, &[spec("ok", 11025.0, 22049.0, 8)]).unwrap();
}

#[test]
fn offsets_past_the_end_or_negative_are_refused() {
    let samples = pulse_samples(); // 2 s
    for offset in [2.0, 2.5, 1.95, 1e9] {
        let e = AudioReactivity::from_samples(
            samples.clone(),
            offset,
            12.0,
            &[spec("a", 60.0, 40.0, 2)],
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.message.contains("input_audio_offset"), "{e}");
        assert!(e.message.contains("lasts 2.000 s"), "{e}");
    }
    for offset in [-0.1, f64::NAN, f64::INFINITY] {
        let e = AudioReactivity::from_samples(samples.clone(), offset, 12.0, &[]).unwrap_err();
        assert!(e.message.contains("input_audio_offset"), "{e}");
    }
    // The last whole window: 2 s − 1/12 s.
    let r = AudioReactivity::from_samples(samples, 2.0 - 3675.0 / 44100.0, 12.0, &[]).unwrap();
    assert_eq!(r.frames_with_audio(), 1);
    assert!(r.values(0).is_empty());
}

/// A 5-minute track at 24 fps with four filters (orders 4–8): 7 200 frames.
#[test]
fn five_minutes_at_24_fps_is_quick() {
    let n = 300 * 44100;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let samples: Vec<f32> = (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let t = i as f32 / 44100.0;
            0.3 * (2.0 * std::f32::consts::PI * 80.0 * t).sin() + 0.2 * noise
        })
        .collect();
    let filters = [
        spec("kick", 60.0, 40.0, 6),
        spec("bass", 200.0, 200.0, 4),
        spec("mid", 1000.0, 500.0, 6),
        spec("high", 8000.0, 4000.0, 8),
    ];
    let t0 = Instant::now();
    let r = AudioReactivity::from_samples(samples, 0.0, 24.0, &filters).unwrap();
    let dt = t0.elapsed();
    println!(
        "5 min at 24 fps, {} frames × {} filters: {:.3} s",
        r.frames_with_audio(),
        filters.len(),
        dt.as_secs_f64()
    );
    assert_eq!(r.frames_with_audio(), 7200);
    assert!(dt.as_secs_f64() < 60.0);
}

#[cfg(feature = "video")]
mod ffmpeg {
    use super::*;
    use zoetrope::audio::{decode_mono_44k, Soundtrack};

    /// A 16-bit PCM WAV with interleaved `channels`.
    fn write_wav(path: &Path, rate: u32, channels: u16, interleaved: &[i16]) {
        let data_len = (interleaved.len() * 2) as u32;
        let mut b = Vec::with_capacity(44 + data_len as usize);
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // PCM
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for v in interleaved {
            b.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn a_44k_mono_wav_decodes_to_its_samples() {
        let got = decode_mono_44k(&fixtures().join("pulse.wav")).unwrap();
        let want = pulse_samples();
        assert_eq!(got.len(), 88200);
        assert_eq!(got, want, "s16 → f32 is exact: v / 32768");
        // load() = decode + from_samples.
        let b = load_bands();
        let r = AudioReactivity::load(&fixtures().join("pulse.wav"), b.offset, b.fps, &b.filters)
            .unwrap();
        let s = AudioReactivity::from_samples(want, b.offset, b.fps, &b.filters).unwrap();
        for f in 0..=r.frames_with_audio() {
            assert_eq!(r.values(f), s.values(f));
        }
    }

    #[test]
    fn a_48k_stereo_wav_is_resampled_to_44k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo 48k.wav");
        // 1.5 s: 440 Hz, the right channel at half the left's amplitude.
        let n = 72_000;
        let mut inter = Vec::with_capacity(2 * n);
        for i in 0..n {
            let v = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48000.0).sin();
            inter.push((v * 16000.0).round() as i16);
            inter.push((v * 8000.0).round() as i16);
        }
        write_wav(&path, 48000, 2, &inter);
        let got = decode_mono_44k(&path).unwrap();
        // 1.5 s at 44.1 kHz, give or take the resampler's edge.
        assert!(
            (got.len() as i64 - 66_150).abs() <= 2,
            "{} samples",
            got.len()
        );
        // The down-mix is (L + R)/2 (as the CLI's): amplitude 12000/32768; the
        // same 440 Hz sine, not delayed.
        let want: Vec<f64> = (0..got.len())
            .map(|i| {
                (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 44100.0).sin() * 12000.0 / 32768.0
            })
            .collect();
        let mid = 1000..got.len() - 1000;
        let err = got[mid.clone()]
            .iter()
            .zip(&want[mid])
            .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
        println!("48 kHz stereo → 44.1 kHz mono: largest error {err:.2e} (amplitude 0.366)");
        assert!(err < 1e-3, "{err}");
    }

    #[test]
    fn unreadable_files_are_input_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.mp3");
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "this is not audio at all\n".repeat(20)).unwrap();
        let png = dir.path().join("picture.png");
        image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 30]))
            .save(&png)
            .unwrap();
        for (path, needle) in [
            (&missing, "does not exist"),
            (&dir.path().to_path_buf(), "is not a file"),
            (&text, "could not read"),
            (&png, "has no audio stream"),
        ] {
            let e = decode_mono_44k(path).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Input, "{e}");
            assert_eq!(e.exit_code(), 2);
            assert!(e.message.contains(&path.display().to_string()), "{e}");
            assert!(e.message.contains("input_audio"), "{e}");
            assert!(e.message.contains(needle), "{needle:?} not in: {e}");
            let e =
                AudioReactivity::load(path, 0.0, 12.0, &[spec("a", 60.0, 40.0, 2)]).unwrap_err();
            assert!(e.message.contains(needle), "{e}");
        }
        // The offset is named with the file.
        let e = AudioReactivity::load(&fixtures().join("pulse.wav"), 3.0, 12.0, &[]).unwrap_err();
        assert!(e.message.contains("input_audio_offset = 3"), "{e}");
        assert!(e.message.contains("pulse.wav"), "{e}");
    }

    mod mp4 {
        use super::*;
        use image::RgbImage;
        use zoetrope::output::video::{
            audio_streams, read_mp4, write_mp4_from_pngs_with_soundtrack, Mp4Writer,
        };

        fn frames(n: u32) -> Vec<RgbImage> {
            (0..n)
                .map(|k| {
                    RgbImage::from_fn(32, 16, |x, y| {
                        image::Rgb([(x * 8) as u8, (y * 16) as u8, (k * 20) as u8])
                    })
                })
                .collect()
        }

        /// Best normalised correlation of `got` with `want` over lags
        /// −max_lag..=max_lag (got[i + lag] against want[i]); returns it and the lag.
        fn best_correlation(got: &[f32], want: &[f32], max_lag: i64) -> (f64, i64) {
            let mut best = (f64::NEG_INFINITY, 0);
            for lag in -max_lag..=max_lag {
                let pairs: Vec<(f64, f64)> = (0..want.len() as i64)
                    .filter_map(|i| {
                        let j = i + lag;
                        (j >= 0 && (j as usize) < got.len())
                            .then(|| (got[j as usize] as f64, want[i as usize] as f64))
                    })
                    .collect();
                let (a, b): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
                let c = pearson(&a, &b);
                if c > best.0 {
                    best = (c, lag);
                }
            }
            best
        }

        fn check_soundtrack(path: &Path, source: &[f32], seconds: f64) {
            let streams = audio_streams(path).unwrap();
            assert_eq!(streams.len(), 1, "{streams:?}");
            let s = &streams[0];
            assert_eq!(s.codec, "aac");
            assert_eq!((s.sample_rate, s.channels), (44100, 1));
            let got = decode_mono_44k(path).unwrap();
            let want_len = (seconds * 44100.0).round() as usize;
            println!(
                "{}: stream duration {:?} s, {} decoded samples (want {want_len})",
                path.display(),
                s.duration,
                got.len()
            );
            if let Some(d) = s.duration {
                assert!((d - seconds).abs() <= 1024.0 / 44100.0, "duration {d}");
            }
            assert!(
                (got.len() as i64 - want_len as i64).abs() <= 1024,
                "{}",
                got.len()
            );
            let (corr, lag) = best_correlation(&got, &source[..want_len], 1100);
            println!("  correlation with the source segment {corr:.4} at lag {lag}");
            assert!(corr > 0.95, "{corr} at lag {lag}");
            assert!(lag.abs() <= 2, "the soundtrack is shifted by {lag} samples");
        }

        #[test]
        fn the_soundtrack_is_aac_from_the_offset_cut_to_the_video() {
            let dir = tempfile::tempdir().unwrap();
            let samples = pulse_samples();
            let track = Soundtrack::new(samples.clone().into(), 0.5);
            assert_eq!(track.samples().len(), 88200 - 22050);
            let path = dir.path().join("with sound.mp4");
            let mut w = Mp4Writer::create_with_soundtrack(
                &path,
                32,
                16,
                12.0,
                &[("comment", "pulse")],
                Some(&track),
            )
            .unwrap();
            assert!(w.has_soundtrack());
            for f in frames(12) {
                w.push_frame(&f).unwrap();
            }
            w.finish().unwrap();
            check_soundtrack(&path, &samples[22050..], 1.0);
            let video = read_mp4(&path).unwrap();
            assert_eq!(video.frames.len(), 12);
            assert_eq!(video.comment.as_deref(), Some("pulse"));

            // Rebuilt from PNG frames (what --resume does), 18 frames = 1.5 s.
            let pngs: Vec<PathBuf> = frames(18)
                .iter()
                .enumerate()
                .map(|(k, f)| {
                    let p = dir.path().join(format!("frame_{:05}.png", k + 1));
                    f.save(&p).unwrap();
                    p
                })
                .collect();
            let rebuilt = dir.path().join("rebuilt.mp4");
            write_mp4_from_pngs_with_soundtrack(&pngs, &rebuilt, 12.0, "r", Some(&track)).unwrap();
            check_soundtrack(&rebuilt, &samples[22050..], 1.5);
            assert_eq!(read_mp4(&rebuilt).unwrap().frames.len(), 18);
        }

        #[test]
        fn a_short_track_ends_early_and_no_track_adds_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let samples = pulse_samples();
            // 1.5 s of sound from 0.5 s under a 3 s video.
            let track = Soundtrack::new(samples.clone().into(), 0.5);
            let path = dir.path().join("long.mp4");
            let mut w =
                Mp4Writer::create_with_soundtrack(&path, 32, 16, 12.0, &[], Some(&track)).unwrap();
            for f in frames(36) {
                w.push_frame(&f).unwrap();
            }
            w.finish().unwrap();
            check_soundtrack(&path, &samples[22050..], 1.5);
            assert_eq!(read_mp4(&path).unwrap().frames.len(), 36);

            // An empty soundtrack (offset at the end) and None: video only.
            for track in [Some(Soundtrack::new(samples.clone().into(), 2.0)), None] {
                let path = dir.path().join("silent.mp4");
                let mut w =
                    Mp4Writer::create_with_soundtrack(&path, 32, 16, 12.0, &[], track.as_ref())
                        .unwrap();
                assert!(!w.has_soundtrack());
                for f in frames(3) {
                    w.push_frame(&f).unwrap();
                }
                w.finish().unwrap();
                assert!(audio_streams(&path).unwrap().is_empty());
                assert_eq!(read_mp4(&path).unwrap().frames.len(), 3);
            }
        }

        #[test]
        fn an_interrupted_render_keeps_the_sound_up_to_its_last_frame() {
            let dir = tempfile::tempdir().unwrap();
            let samples = pulse_samples();
            let track = Soundtrack::new(samples.clone().into(), 0.0);
            let path = dir.path().join("stopped.mp4");
            let mut w =
                Mp4Writer::create_with_soundtrack(&path, 32, 16, 24.0, &[], Some(&track)).unwrap();
            for f in frames(10) {
                w.push_frame(&f).unwrap();
            }
            // Dropped without finish: the .part file is closed properly.
            drop(w);
            let part = dir.path().join("stopped.mp4.part");
            check_soundtrack(&part, &samples, 10.0 / 24.0);
        }
    }
}
