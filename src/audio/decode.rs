//! Reading any audio FFmpeg reads as 44.1 kHz mono samples.
//!
//! [`decode_mono_44k`] opens the file with libavformat, decodes its best audio
//! stream (a sound file's, or a video's soundtrack) with libavcodec and
//! converts every decoded frame with libswresample to packed 32-bit float,
//! mono, 44 100 Hz: no external `ffmpeg` binary is run. pytti pipes the same
//! conversion out of the `ffmpeg` CLI as 16-bit integers (`-f s16le -ar 44100
//! -ac 1`); zoetrope keeps f32 because the band values are ratios (the scale
//! cancels) and float keeps what lossy decoders and the resampler compute
//! (no 16-bit quantisation, no clipping of over-full mixes). The resampler is
//! libswresample's default, as in the CLI, and the down-mix matrix is
//! normalised as the CLI's 16-bit output has it (`rematrix_maxval = 1`:
//! stereo → mono is `(L + R)/2`), so `samples × 32768` is pytti's input up to
//! that rounding.
//!
//! Decoded frames whose format, channel layout or rate changes mid-stream get
//! a new resampler (the old one flushed first). Packets the decoder rejects
//! are skipped, as the CLI does; a stream that yields no sample at all is an
//! error.
//!
//! Decoding needs FFmpeg's libraries, so it is part of the `video` feature;
//! without it [`decode_mono_44k`] returns an error that says so.

use std::path::Path;

use crate::error::{Error, Result};

/// The sample rate of every decoded track (pytti's `SAMPLERATE`).
pub const SAMPLE_RATE: u32 = 44_100;

/// The audio of `path` as 44.1 kHz mono f32 samples (roughly −1..1 for
/// integer sources). Errors (exit code 2) name the file and say what to do.
pub fn decode_mono_44k(path: &Path) -> Result<Vec<f32>> {
    if !path.is_file() {
        let what = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        return Err(Error::input(format!(
            "the audio file {} (input_audio) {what}; check the path, or leave input_audio empty \
             for a render without sound",
            path.display()
        )));
    }
    imp::decode(path)
}

#[cfg(not(feature = "video"))]
mod imp {
    use super::*;

    pub fn decode(path: &Path) -> Result<Vec<f32>> {
        Err(Error::input(format!(
            "cannot read the audio file {} (input_audio): this zoetrope was built without \
             FFmpeg (the `video` feature); use a build with default features, or leave \
             input_audio empty",
            path.display()
        )))
    }
}

#[cfg(feature = "video")]
mod imp {
    use super::*;
    use crate::media::{init, utf8_path};
    use ffmpeg::software::resampling;
    use ffmpeg::util::format::sample::{Sample, Type};
    use ffmpeg::{codec, format, frame, media, ChannelLayout};
    use ffmpeg_next as ffmpeg;

    /// What a resampler was built for: sample format, channel layout bits, rate.
    type Input = (Sample, u64, u32);

    struct Resampler {
        ctx: resampling::Context,
        input: Input,
    }

    impl Resampler {
        fn new(input: Input) -> std::result::Result<Self, ffmpeg::Error> {
            let (format, layout, rate) = input;
            // Float output would leave the down-mix matrix unnormalised
            // (stereo → mono as (L + R)/√2); the CLI's s16 output, pytti's,
            // normalises it to (L + R)/2. Ask for the same.
            let mut opts = ffmpeg::Dictionary::new();
            opts.set("rematrix_maxval", "1.0");
            let ctx = resampling::Context::get_with(
                format,
                ChannelLayout::from_bits_truncate(layout),
                rate,
                Sample::F32(Type::Packed),
                ChannelLayout::MONO,
                SAMPLE_RATE,
                opts,
            )?;
            Ok(Resampler { ctx, input })
        }

        /// Converts `frame` (or, with `None`, what the resampler still
        /// holds) and appends the result to `out`.
        fn convert(
            &mut self,
            frame: Option<&frame::Audio>,
            out: &mut Vec<f32>,
        ) -> std::result::Result<(), ffmpeg::Error> {
            let in_count = frame.map_or(0, |f| f.samples() as libc::c_int);
            loop {
                // SAFETY: the context is initialised; `cap` is FFmpeg's upper
                // bound for the output of `in_count` more samples, and `out`
                // has room for `cap` more f32 (mono packed: one plane). The
                // input pointers are the frame's own planes, `in_count` long.
                unsafe {
                    let ctx = self.ctx.as_mut_ptr();
                    let cap = ffmpeg::ffi::swr_get_out_samples(ctx, in_count);
                    if cap < 0 {
                        return Err(ffmpeg::Error::from(cap));
                    }
                    let old = out.len();
                    out.reserve(cap as usize + 1);
                    let mut out_ptr = out.as_mut_ptr().add(old) as *mut u8;
                    let in_ptr = frame.map_or(std::ptr::null_mut(), |f| {
                        (*f.as_ptr()).extended_data as *mut *const u8
                    });
                    let n = ffmpeg::ffi::swr_convert(ctx, &mut out_ptr, cap, in_ptr, in_count);
                    if n < 0 {
                        return Err(ffmpeg::Error::from(n));
                    }
                    out.set_len(old + n as usize);
                    // A frame is consumed in one call; a flush repeats until
                    // nothing is left.
                    if frame.is_some() || n == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn frame_input(f: &frame::Audio) -> Input {
        let mut layout = f.channel_layout().bits();
        if layout == 0
            || ChannelLayout::from_bits_truncate(layout).channels() != f.channels() as i32
        {
            layout = ChannelLayout::default(i32::from(f.channels())).bits();
        }
        (f.format(), layout, f.rate())
    }

    pub fn decode(path: &Path) -> Result<Vec<f32>> {
        init()?;
        let name = path.display();
        let mut ictx = format::input(utf8_path(path)?).map_err(|e| {
            Error::input(format!(
                "could not read {name} as audio (input_audio): {e}; use a file FFmpeg reads \
                 (WAV, MP3, FLAC, Ogg, AAC/M4A, or a video with a soundtrack)"
            ))
        })?;
        let (index, params) = {
            let stream = ictx.streams().best(media::Type::Audio).ok_or_else(|| {
                Error::input(format!(
                    "{name} (input_audio) has no audio stream; use a sound file or a video \
                     with a soundtrack"
                ))
            })?;
            (stream.index(), stream.parameters())
        };
        let mut decoder = codec::context::Context::from_parameters(params)
            .and_then(|c| c.decoder().audio())
            .map_err(|e| {
                Error::input(format!(
                    "the FFmpeg libraries found cannot decode the audio of {name} \
                     (input_audio): {e}; convert it to WAV or FLAC"
                ))
            })?;

        let mut out: Vec<f32> = Vec::new();
        let mut resampler: Option<Resampler> = None;
        let mut decoded = frame::Audio::empty();
        let failed = |e: ffmpeg::Error| {
            Error::input(format!(
                "could not convert the audio of {name} (input_audio) to 44.1 kHz mono: {e}"
            ))
        };
        let mut drain = |decoder: &mut ffmpeg::decoder::Audio,
                         resampler: &mut Option<Resampler>,
                         out: &mut Vec<f32>|
         -> Result<()> {
            while decoder.receive_frame(&mut decoded).is_ok() {
                if decoded.samples() == 0 || decoded.channels() == 0 {
                    continue;
                }
                let input = frame_input(&decoded);
                if resampler.as_ref().is_none_or(|r| r.input != input) {
                    if let Some(old) = resampler.as_mut() {
                        old.convert(None, out).map_err(failed)?;
                    }
                    *resampler = Some(Resampler::new(input).map_err(failed)?);
                }
                if let Some(r) = resampler.as_mut() {
                    r.convert(Some(&decoded), out).map_err(failed)?;
                }
            }
            Ok(())
        };
        for (stream, packet) in ictx.packets() {
            if stream.index() != index {
                continue;
            }
            // A packet the decoder rejects is skipped (the CLI warns and
            // goes on); what it could decode is kept.
            if decoder.send_packet(&packet).is_ok() {
                drain(&mut decoder, &mut resampler, &mut out)?;
            }
        }
        if decoder.send_eof().is_ok() {
            drain(&mut decoder, &mut resampler, &mut out)?;
        }
        if let Some(r) = resampler.as_mut() {
            r.convert(None, &mut out).map_err(failed)?;
        }
        if out.is_empty() {
            return Err(Error::input(format!(
                "{name} (input_audio) holds no sound: its audio stream decoded to no samples"
            )));
        }
        Ok(out)
    }
}
