//! MP4 output (H.264 in yuv420p through FFmpeg's libx264) and MP4 reading.
//!
//! [`Mp4Writer`] writes `<name>.mp4.part` while frames arrive and renames it
//! to `<name>.mp4` in [`Mp4Writer::finish`], so a half-written video never
//! replaces a good one. `finish` may be called at any time, e.g. by the
//! caller's Ctrl-C handling, and closes a valid MP4 holding the frames pushed
//! so far. A writer dropped without `finish` (an error or a panic unwinding)
//! still flushes the encoder and writes the MP4 trailer, but into the `.part`
//! file, which is kept for inspection and not renamed.
//!
//! Following FFmpeg's muxing example (doc/examples/mux.c): the encoder gets the
//! `GLOBAL_HEADER` flag before it is opened when the MP4 muxer asks for it,
//! the stream parameters are copied from the opened encoder, the stream time
//! base is read after `write_header` (the muxer may change it), pts increase by
//! one per frame in the encoder's `1/fps` time base and are rescaled per
//! packet, and closing flushes the encoder and writes the trailer.
//!
//! yuv420p needs even dimensions: odd widths and heights are padded by one
//! column/row that duplicates the last column/row (no black line appears at
//! the edge; players show the padded size). Colour conversion is BT.601
//! limited range (swscale's default) and the stream is tagged so.
//!
//! FFmpeg's own log is limited to errors, so libx264's informational lines do
//! not interleave with the progress display.
//!
//! A soundtrack ([`Mp4Writer::create_with_soundtrack`], docs/design.md §12) adds an AAC
//! stream (FFmpeg's native `aac` encoder, 44.1 kHz mono, 128 kbit/s) holding
//! the track from its offset on, cut to the video's length: as frames arrive
//! the writer encodes the audio up to the end of the last frame pushed
//! (`frames / fps` seconds, in whole 1024-sample AAC frames), and closing
//! encodes the rest up to that point exactly, so an interrupted render's video
//! has sound up to its last frame. A track shorter than the video simply ends
//! early (no padding). Without a soundtrack nothing changes: one H.264
//! stream, as before.

use std::fs;
use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::format::sample::{Sample, Type as SampleType};
use ffmpeg::{codec, encoder, format, frame, media, ChannelLayout, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use crate::audio::{Soundtrack, SAMPLE_RATE};
use crate::error::{Error, ErrorKind, Result};
use crate::media::{init, utf8_path};

/// The soundtrack's AAC bit rate (mono).
const AAC_BIT_RATE: usize = 128_000;

/// x264 quality settings: CRF 18 is visually near-lossless, which keeps the
/// fine VQGAN texture; `medium` is x264's default speed/size trade-off.
const X264_OPTIONS: [(&str, &str); 2] = [("crf", "18"), ("preset", "medium")];

/// `fps` as an exact rational when it is a whole number or a common NTSC
/// rate, else FFmpeg's best rational approximation.
fn fps_rational(fps: f64) -> Rational {
    if (fps - fps.round()).abs() < 1e-9 {
        return Rational::new(fps.round() as i32, 1);
    }
    let ntsc = fps * 1.001;
    if (ntsc - ntsc.round()).abs() < 1e-6 {
        return Rational::new(ntsc.round() as i32 * 1000, 1001);
    }
    Rational::from(fps)
}

/// Rejects sizes and frame rates the encoder cannot take, before anything is
/// created on disk.
fn check_video_args(path: &Path, width: u32, height: u32, fps: f64) -> Result<()> {
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(Error::input(format!(
            "cannot write a {width}×{height} video to {}: sizes must be 1 to 16384 pixels",
            path.display()
        )));
    }
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return Err(Error::input(format!(
            "frames_per_second = {fps} cannot be used for {}; use a positive number up to 1000",
            path.display()
        )));
    }
    Ok(())
}

/// Adds the H.264 stream to `octx` and opens its libx264 encoder for the
/// (even) encoded size `enc` at `rate`; returns the encoder, the stream index
/// and whether the muxer wants global headers.
fn add_video_stream(
    octx: &mut format::context::Output,
    (enc_w, enc_h): (u32, u32),
    rate: Rational,
    fps: f64,
    io_err: &dyn Fn(&str, ffmpeg::Error) -> Error,
) -> Result<(encoder::Video, usize, bool)> {
    let time_base = rate.invert();
    let codec = encoder::find_by_name("libx264").ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "the FFmpeg libraries found have no libx264 H.264 encoder; install FFmpeg with \
             libx264 (Debian/Ubuntu: libavcodec with x264 support) or build without the \
             `video` feature",
        )
    })?;
    let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
    let stream_index = octx
        .add_stream(codec)
        .map_err(|e| io_err("could not add a video stream to", e))?
        .index();

    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| Error::internal(format!("libx264 is not a video encoder: {e}")))?;
    enc.set_width(enc_w);
    enc.set_height(enc_h);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(rate));
    enc.set_colorspace(ffmpeg::color::Space::SMPTE170M);
    enc.set_color_range(ffmpeg::color::Range::MPEG);
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut opts = Dictionary::new();
    for (k, v) in X264_OPTIONS {
        opts.set(k, v);
    }
    let encoder = enc.open_with(opts).map_err(|e| {
        Error::internal(format!(
            "could not open the libx264 encoder for {enc_w}×{enc_h} at {fps} fps: {e}"
        ))
    })?;
    let mut ost = octx
        .stream_mut(stream_index)
        .ok_or_else(|| Error::internal("the new video stream disappeared"))?;
    ost.set_parameters(&encoder);
    ost.set_time_base(time_base);
    ost.set_avg_frame_rate(rate);
    ost.set_rate(rate);
    Ok((encoder, stream_index, global_header))
}

/// The RGB24 → YUV420P converter for `enc_w × enc_h` frames (BT.601 limited
/// range, swscale's default).
fn rgb_to_yuv_scaler(enc_w: u32, enc_h: u32) -> Result<scaling::Context> {
    scaling::Context::get(
        Pixel::RGB24,
        enc_w,
        enc_h,
        Pixel::YUV420P,
        enc_w,
        enc_h,
        scaling::Flags::BICUBIC | scaling::Flags::ACCURATE_RND,
    )
    .map_err(|e| Error::internal(format!("could not set up RGB→YUV conversion: {e}")))
}

/// Writes RGB frames into an H.264 MP4; see the module documentation.
pub struct Mp4Writer {
    final_path: PathBuf,
    part_path: PathBuf,
    width: u32,
    height: u32,
    octx: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    rgb: frame::Video,
    yuv: frame::Video,
    stream_index: usize,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    /// The frame rate as used for the time base (cuts the soundtrack).
    rate: Rational,
    next_pts: i64,
    audio: Option<AudioOut>,
    closed: bool,
}

/// The AAC stream of a video with a soundtrack.
struct AudioOut {
    encoder: encoder::Audio,
    stream_index: usize,
    stream_time_base: Rational,
    track: Soundtrack,
    /// Samples of `track` sent to the encoder so far.
    sent: usize,
    /// Samples per AAC frame (1024).
    frame_size: usize,
}

impl Mp4Writer {
    /// Opens `<path>.part` for a `width × height` video at `fps` frames per
    /// second, with `comment` (the prompts) in the MP4 metadata.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64, comment: &str) -> Result<Self> {
        Self::create_with_metadata(path, width, height, fps, &[("comment", comment)])
    }

    /// Like [`Mp4Writer::create`] with arbitrary metadata entries (`comment`,
    /// `title`, …), written to the MP4's `udta` box.
    pub fn create_with_metadata(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        metadata: &[(&str, &str)],
    ) -> Result<Self> {
        Self::create_with_soundtrack(path, width, height, fps, metadata, None)
    }

    /// Like [`Mp4Writer::create_with_metadata`], with `soundtrack` (when given
    /// and not empty) as an AAC stream cut to the video's length; see the
    /// module documentation.
    pub fn create_with_soundtrack(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        metadata: &[(&str, &str)],
        soundtrack: Option<&Soundtrack>,
    ) -> Result<Self> {
        check_video_args(path, width, height, fps)?;
        init()?;
        let final_path = path.to_path_buf();
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part_path = PathBuf::from(part);
        let part_str = utf8_path(&part_path)?;
        let io_err =
            |what: &str, e: ffmpeg::Error| Error::io(format!("{what} {}", part_path.display()), e);

        let (enc_w, enc_h) = (width + width % 2, height + height % 2);
        let rate = fps_rational(fps);
        let time_base = rate.invert();

        let mut octx = format::output_as(part_str, "mp4")
            .map_err(|e| io_err("could not create the video file", e))?;
        let (encoder, stream_index, global_header) =
            add_video_stream(&mut octx, (enc_w, enc_h), rate, fps, &io_err)?;
        let audio = match soundtrack {
            Some(track) if !track.samples().is_empty() => Some(add_audio_stream(
                &mut octx,
                track,
                global_header,
                &part_path,
            )?),
            _ => None,
        };
        let mut dict = Dictionary::new();
        for (k, v) in metadata {
            dict.set(k, v);
        }
        octx.set_metadata(dict);
        octx.write_header()
            .map_err(|e| io_err("could not write the MP4 header of", e))?;
        // The muxer chooses the stream time base in write_header.
        let stream_time_base = octx
            .stream(stream_index)
            .map(|s| s.time_base())
            .ok_or_else(|| Error::internal("the video stream disappeared"))?;
        let audio = match audio {
            Some((encoder, index)) => Some(AudioOut {
                frame_size: (encoder.frame_size() as usize).max(1),
                encoder,
                stream_index: index,
                stream_time_base: octx
                    .stream(index)
                    .map(|s| s.time_base())
                    .ok_or_else(|| Error::internal("the audio stream disappeared"))?,
                track: soundtrack.cloned().expect("a soundtrack was given"),
                sent: 0,
            }),
            None => None,
        };

        let scaler = rgb_to_yuv_scaler(enc_w, enc_h)?;
        Ok(Mp4Writer {
            final_path,
            part_path,
            width,
            height,
            octx,
            encoder,
            scaler,
            rgb: frame::Video::new(Pixel::RGB24, enc_w, enc_h),
            yuv: frame::Video::new(Pixel::YUV420P, enc_w, enc_h),
            stream_index,
            encoder_time_base: time_base,
            stream_time_base,
            rate,
            next_pts: 0,
            audio,
            closed: false,
        })
    }

    /// Whether the video has an AAC soundtrack.
    pub fn has_soundtrack(&self) -> bool {
        self.audio.is_some()
    }

    /// The path the finished video will have.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// The file being written until [`Mp4Writer::finish`].
    pub fn part_path(&self) -> &Path {
        &self.part_path
    }

    /// How many frames were pushed so far.
    pub fn frames_written(&self) -> u64 {
        self.next_pts as u64
    }

    /// Appends one frame; it must have the size given to `create`.
    pub fn push_frame(&mut self, image: &RgbImage) -> Result<()> {
        if image.dimensions() != (self.width, self.height) {
            return Err(Error::internal(format!(
                "frame of {}×{} pushed to the {}×{} video {}",
                image.width(),
                image.height(),
                self.width,
                self.height,
                self.final_path.display()
            )));
        }
        self.push_rgb(image.as_raw())
    }

    /// Appends one frame given as packed RGB bytes, row by row
    /// (`width · height · 3` bytes).
    pub fn push_rgb(&mut self, rgb: &[u8]) -> Result<()> {
        if self.closed {
            return Err(Error::internal(format!(
                "frame pushed to the already closed video {}",
                self.final_path.display()
            )));
        }
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            return Err(Error::internal(format!(
                "{} RGB bytes pushed to the {w}×{h} video {} (expected {})",
                rgb.len(),
                self.final_path.display(),
                w * h * 3
            )));
        }
        // Copy into the (possibly one larger) RGB frame, duplicating the last
        // column and row into the padding.
        let (enc_w, enc_h) = (self.rgb.width() as usize, self.rgb.height() as usize);
        let stride = self.rgb.stride(0);
        let data = self.rgb.data_mut(0);
        for y in 0..enc_h {
            let src = &rgb[y.min(h - 1) * w * 3..][..w * 3];
            let dst = &mut data[y * stride..][..enc_w * 3];
            dst[..w * 3].copy_from_slice(src);
            if enc_w > w {
                let last = [src[w * 3 - 3], src[w * 3 - 2], src[w * 3 - 1]];
                dst[w * 3..].copy_from_slice(&last);
            }
        }
        // The encoder may still hold a reference to the previous frame's
        // buffers; get private ones before overwriting them.
        // SAFETY: `yuv` owns a valid AVFrame allocated by frame::Video::new.
        let r = unsafe { ffmpeg::ffi::av_frame_make_writable(self.yuv.as_mut_ptr()) };
        if r < 0 {
            return Err(Error::internal(format!(
                "FFmpeg could not allocate a frame: {}",
                ffmpeg::Error::from(r)
            )));
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| Error::internal(format!("RGB→YUV conversion failed: {e}")))?;
        self.yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| self.encode_error(e))?;
        self.write_packets()?;
        self.write_audio(false)
    }

    /// Samples of soundtrack that `frames` frames last: `frames / fps`
    /// seconds at 44.1 kHz, rounded to the nearest sample.
    fn audio_samples_for(&self, frames: i64) -> usize {
        let (num, den) = (
            i128::from(self.rate.numerator()),
            i128::from(self.rate.denominator()),
        );
        let n = i128::from(frames) * i128::from(SAMPLE_RATE) * den;
        ((n + num / 2) / num).max(0) as usize
    }

    /// Encodes the soundtrack up to the end of the frames pushed so far: in
    /// whole AAC frames while rendering, exactly (then the encoder flushed)
    /// when `last`.
    fn write_audio(&mut self, last: bool) -> Result<()> {
        let target = self.audio_samples_for(self.next_pts);
        let Some(a) = self.audio.as_mut() else {
            return Ok(());
        };
        let track = a.track.clone(); // an Arc: `a` stays free to borrow
        let samples = track.samples();
        let end = target.min(samples.len());
        while a.sent < end {
            let n = a.frame_size.min(end - a.sent);
            if n < a.frame_size && !last {
                break;
            }
            let mut frame =
                frame::Audio::new(Sample::F32(SampleType::Planar), n, ChannelLayout::MONO);
            frame.set_rate(SAMPLE_RATE);
            frame.plane_mut::<f32>(0)[..n].copy_from_slice(&samples[a.sent..a.sent + n]);
            frame.set_pts(Some(a.sent as i64));
            a.sent += n;
            a.encoder
                .send_frame(&frame)
                .map_err(|e| audio_error(&self.part_path, e))?;
            drain_audio(a, &mut self.octx, &self.part_path)?;
        }
        if last {
            a.encoder
                .send_eof()
                .map_err(|e| audio_error(&self.part_path, e))?;
            drain_audio(a, &mut self.octx, &self.part_path)?;
        }
        Ok(())
    }

    /// Flushes the encoder, writes the MP4 trailer and renames
    /// `<name>.mp4.part` to `<name>.mp4`. Safe to call after an interruption:
    /// the video holds the frames pushed so far. Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        let frames = self.next_pts;
        self.close()?;
        if frames == 0 {
            let _ = fs::remove_file(&self.part_path);
            return Err(Error::internal(format!(
                "no frames were rendered, so no video was written to {}",
                self.final_path.display()
            )));
        }
        fs::rename(&self.part_path, &self.final_path).map_err(|e| {
            Error::io(
                format!(
                    "could not rename {} to {}",
                    self.part_path.display(),
                    self.final_path.display()
                ),
                e,
            )
        })?;
        Ok(self.final_path.clone())
    }

    /// Closes the video properly but keeps the `.part` name (for an aborted
    /// run whose partial video should not replace anything). Returns its path.
    pub fn close_partial(mut self) -> Result<PathBuf> {
        self.close()?;
        Ok(self.part_path.clone())
    }

    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.encoder.send_eof().map_err(|e| self.encode_error(e))?;
        self.write_packets()?;
        self.write_audio(true)?;
        self.octx.write_trailer().map_err(|e| {
            Error::io(
                format!("could not finish the video {}", self.part_path.display()),
                e,
            )
        })
    }

    fn write_packets(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    packet.set_stream(self.stream_index);
                    packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
                    packet.write_interleaved(&mut self.octx).map_err(|e| {
                        Error::io(
                            format!("could not write to {}", self.part_path.display()),
                            e,
                        )
                    })?;
                }
                Err(ffmpeg::Error::Eof) => return Ok(()),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                    return Ok(())
                }
                Err(e) => return Err(self.encode_error(e)),
            }
        }
    }

    fn encode_error(&self, e: ffmpeg::Error) -> Error {
        Error::internal(format!(
            "H.264 encoding failed for {}: {e}",
            self.part_path.display()
        ))
    }
}

/// Adds the AAC stream for `track` to `octx` (before its header is
/// written) and opens its encoder; returns the encoder and the stream index.
fn add_audio_stream(
    octx: &mut format::context::Output,
    track: &Soundtrack,
    global_header: bool,
    part_path: &Path,
) -> Result<(encoder::Audio, usize)> {
    let codec = encoder::find_by_name("aac").ok_or_else(|| {
        Error::internal(
            "the FFmpeg libraries found have no AAC encoder (`aac`) for the soundtrack; install \
             FFmpeg's libavcodec with its native encoders",
        )
    })?;
    let index = octx
        .add_stream(codec)
        .map_err(|e| {
            Error::io(
                format!("could not add an audio stream to {}", part_path.display()),
                e,
            )
        })?
        .index();
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(|e| Error::internal(format!("`aac` is not an audio encoder: {e}")))?;
    let time_base = Rational::new(1, track.sample_rate() as i32);
    enc.set_rate(track.sample_rate() as i32);
    enc.set_channel_layout(ChannelLayout::MONO);
    enc.set_format(Sample::F32(SampleType::Planar));
    enc.set_bit_rate(AAC_BIT_RATE);
    enc.set_time_base(time_base);
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let encoder = enc
        .open_as(codec)
        .map_err(|e| Error::internal(format!("could not open the AAC encoder: {e}")))?;
    let mut ost = octx
        .stream_mut(index)
        .ok_or_else(|| Error::internal("the new audio stream disappeared"))?;
    ost.set_parameters(&encoder);
    ost.set_time_base(time_base);
    Ok((encoder, index))
}

fn audio_error(part_path: &Path, e: ffmpeg::Error) -> Error {
    Error::internal(format!(
        "AAC encoding of the soundtrack failed for {}: {e}",
        part_path.display()
    ))
}

/// Writes the AAC packets the encoder has ready.
fn drain_audio(
    a: &mut AudioOut,
    octx: &mut format::context::Output,
    part_path: &Path,
) -> Result<()> {
    let mut packet = Packet::empty();
    loop {
        match a.encoder.receive_packet(&mut packet) {
            Ok(()) => {
                packet.set_stream(a.stream_index);
                packet.rescale_ts(a.encoder.time_base(), a.stream_time_base);
                packet.write_interleaved(octx).map_err(|e| {
                    Error::io(format!("could not write to {}", part_path.display()), e)
                })?;
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                return Ok(())
            }
            Err(e) => return Err(audio_error(part_path, e)),
        }
    }
}

impl Drop for Mp4Writer {
    /// Leaves a playable `.part` file behind when the writer is abandoned.
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.close();
        }
    }
}

/// Encodes existing PNG frames (in order) into `path`, e.g. to rebuild the
/// video of a resumed run from the frames on disk. All frames must have the
/// size of the first; the result replaces `path` only once complete.
pub fn write_mp4_from_pngs(
    frames: &[PathBuf],
    path: &Path,
    fps: f64,
    comment: &str,
) -> Result<PathBuf> {
    write_mp4_from_pngs_with_soundtrack(frames, path, fps, comment, None)
}

/// [`write_mp4_from_pngs`] with an optional soundtrack (see
/// [`Mp4Writer::create_with_soundtrack`]), e.g. for a resumed audio-reactive
/// run.
pub fn write_mp4_from_pngs_with_soundtrack(
    frames: &[PathBuf],
    path: &Path,
    fps: f64,
    comment: &str,
    soundtrack: Option<&Soundtrack>,
) -> Result<PathBuf> {
    let first = frames.first().ok_or_else(|| {
        Error::internal(format!(
            "no frames to encode into {}; render at least one frame",
            path.display()
        ))
    })?;
    let img = crate::output::frames::read_rgb(first)?;
    let mut writer = Mp4Writer::create_with_soundtrack(
        path,
        img.width(),
        img.height(),
        fps,
        &[("comment", comment)],
        soundtrack,
    )?;
    writer.push_frame(&img)?;
    for frame in &frames[1..] {
        let img = crate::output::frames::read_rgb(frame)?;
        if img.dimensions() != (writer.width, writer.height) {
            return Err(Error::input(format!(
                "{} is {}×{} but the earlier frames are {}×{}; every frame of a video must \
                 have the same size",
                frame.display(),
                img.width(),
                img.height(),
                writer.width,
                writer.height
            )));
        }
        writer.push_frame(&img)?;
    }
    writer.finish()
}

/// A decoded video (see [`read_mp4`]).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Coded width (even: includes the padding column of odd-sized renders).
    pub width: u32,
    /// Coded height (even).
    pub height: u32,
    /// Average frame rate of the video stream.
    pub fps: f64,
    /// Every frame, in order, as RGB.
    pub frames: Vec<RgbImage>,
    /// The `comment` metadata entry, if any.
    pub comment: Option<String>,
    /// FFmpeg's name of the codec (`h264` for zoetrope's videos).
    pub codec: String,
    /// FFmpeg's name of the decoded pixel format (`yuv420p`).
    pub pixel_format: String,
}

/// Decodes every frame of the best video stream of `path` to RGB, with the
/// stream's frame rate and the file's `comment` metadata.
pub fn read_mp4(path: &Path) -> Result<Decoded> {
    init()?;
    let bad = |what: &str, e: ffmpeg::Error| {
        Error::input(format!(
            "could not {what} the video {}: {e}",
            path.display()
        ))
    };
    let mut ictx = format::input(utf8_path(path)?).map_err(|e| bad("open", e))?;
    let comment = ictx.metadata().get("comment").map(str::to_string);
    let (stream_index, fps, params) = {
        let stream = ictx
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| Error::input(format!("{} has no video stream", path.display())))?;
        let mut rate = stream.avg_frame_rate();
        if rate.numerator() == 0 || rate.denominator() == 0 {
            rate = stream.rate();
        }
        (stream.index(), f64::from(rate), stream.parameters())
    };
    let mut decoder = codec::context::Context::from_parameters(params)
        .and_then(|c| c.decoder().video())
        .map_err(|e| bad("set up a decoder for", e))?;

    let mut frames = Vec::new();
    let mut scaler: Option<scaling::Context> = None;
    let mut decoded = frame::Video::empty();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video, frames: &mut Vec<RgbImage>| {
        while decoder.receive_frame(&mut decoded).is_ok() {
            let (w, h) = (decoded.width(), decoded.height());
            let s = match &mut scaler {
                Some(s) => s,
                None => scaler.insert(
                    scaling::Context::get(
                        decoded.format(),
                        w,
                        h,
                        Pixel::RGB24,
                        w,
                        h,
                        scaling::Flags::BICUBIC | scaling::Flags::ACCURATE_RND,
                    )
                    .map_err(|e| bad("convert", e))?,
                ),
            };
            let mut rgb = frame::Video::empty();
            s.run(&decoded, &mut rgb).map_err(|e| bad("convert", e))?;
            let stride = rgb.stride(0);
            let data = rgb.data(0);
            let mut bytes = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h as usize {
                bytes.extend_from_slice(&data[y * stride..][..w as usize * 3]);
            }
            let img = RgbImage::from_raw(w, h, bytes)
                .ok_or_else(|| Error::internal("decoded frame size mismatch"))?;
            frames.push(img);
        }
        Ok::<(), Error>(())
    };
    for (stream, packet) in ictx.packets() {
        if stream.index() == stream_index {
            decoder.send_packet(&packet).map_err(|e| bad("decode", e))?;
            receive(&mut decoder, &mut frames)?;
        }
    }
    decoder.send_eof().map_err(|e| bad("decode", e))?;
    receive(&mut decoder, &mut frames)?;
    let (width, height) = (decoder.width(), decoder.height());
    let codec = decoder
        .codec()
        .map(|c| c.name().to_string())
        .unwrap_or_default();
    let pixel_format = decoder
        .format()
        .descriptor()
        .map(|d| d.name().to_string())
        .unwrap_or_default();
    Ok(Decoded {
        width,
        height,
        fps,
        frames,
        comment,
        codec,
        pixel_format,
    })
}

/// One audio stream of a media file (see [`audio_streams`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStreamInfo {
    /// The stream's index in the file.
    pub index: usize,
    /// FFmpeg's name of the codec (`aac` for zoetrope's soundtracks).
    pub codec: String,
    /// Samples per second.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: u16,
    /// The stream's duration in seconds, when the file records one.
    pub duration: Option<f64>,
}

/// The audio streams of `path`, in file order.
pub fn audio_streams(path: &Path) -> Result<Vec<AudioStreamInfo>> {
    init()?;
    let ictx = format::input(utf8_path(path)?)
        .map_err(|e| Error::input(format!("could not open the video {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for stream in ictx.streams() {
        let params = stream.parameters();
        if params.medium() != media::Type::Audio {
            continue;
        }
        let (sample_rate, channels) = match codec::context::Context::from_parameters(params)
            .and_then(|c| c.decoder().audio())
        {
            Ok(d) => (d.rate(), d.channels()),
            Err(_) => (0, 0),
        };
        let codec = ffmpeg::decoder::find(stream.parameters().id())
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        let duration = (stream.duration() > 0)
            .then(|| stream.duration() as f64 * f64::from(stream.time_base()));
        out.push(AudioStreamInfo {
            index: stream.index(),
            codec,
            sample_rate,
            channels,
            duration,
        });
    }
    Ok(out)
}
/// FFmpeg's errors from the OS (`Other { errno }`: a full disk, a denied
/// write) keep their code as an [`std::io::Error`] cause.
impl crate::error::IoFailure for ffmpeg::Error {
    fn into_cause(self) -> Option<crate::error::Cause> {
        match self {
            ffmpeg::Error::Other { errno } => Some(std::io::Error::from_raw_os_error(errno).into()),
            _ => None,
        }
    }
}
