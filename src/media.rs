//! FFmpeg plumbing shared by the audio decoder and the MP4 writer/reader:
//! one-time library initialisation and the UTF-8 file names FFmpeg needs.
//!
//! It sits below both `audio` and `output`, so neither imports the other for
//! these.

use std::path::Path;
use std::sync::OnceLock;

use ffmpeg_next as ffmpeg;

use crate::error::{Error, Result};

/// Initialises FFmpeg once per process and limits its log to errors.
pub(crate) fn init() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error);
        Ok(())
    })
    .clone()
    .map_err(|e| Error::internal(format!("could not initialise FFmpeg: {e}")))
}

/// `path` as UTF-8, which FFmpeg's file-name arguments need.
pub(crate) fn utf8_path(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        Error::input(format!(
            "FFmpeg needs UTF-8 file names; {} is not valid UTF-8",
            path.display()
        ))
    })
}
