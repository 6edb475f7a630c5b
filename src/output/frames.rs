//! PNG frames and image files: tensor ↔ RGB conversions, atomic PNG writes,
//! and loading user images (`init_image`, image prompts) as tensors.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use tch::{Device, Kind, Tensor};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// The file name of video frame `index` (1-based): `frame_00001.png`.
/// Five digits sort correctly up to 99 999 frames; longer runs get more digits.
pub fn frame_file_name(index: usize) -> String {
    format!("frame_{index:05}.png")
}

/// Parses a name written by [`frame_file_name`] back to its index.
pub fn parse_frame_file_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("frame_")?.strip_suffix(".png")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Converts an image tensor `[3, H, W]` or `[1, 3, H, W]` with values in
/// `[0, 1]` (any float kind, any device) to an 8-bit RGB image, enlarged by
/// `pixel_size` with nearest-neighbour (each pixel becomes a
/// `pixel_size × pixel_size` block). Values are clamped, NaN becomes 0, and
/// rounding is to the nearest level.
pub fn tensor_to_rgb(image: &Tensor, pixel_size: u32) -> Result<RgbImage> {
    let size = image.size();
    let chw = match size[..] {
        [3, _, _] => image.shallow_clone(),
        [1, 3, _, _] => image.f_squeeze_dim(0)?,
        _ => {
            return Err(Error::internal(format!(
                "expected an RGB image tensor [3, H, W] or [1, 3, H, W], got shape {size:?}"
            )))
        }
    };
    if !chw.is_floating_point() {
        return Err(Error::internal(format!(
            "expected a floating-point image tensor, got {:?}",
            chw.kind()
        )));
    }
    let (h, w) = (chw.size()[1], chw.size()[2]);
    let bytes = chw
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_nan_to_num(0.0, 1.0, 0.0)?
        .f_clamp(0.0, 1.0)?
        .f_mul_scalar(255.0)?
        .f_round()?
        .f_to_kind(Kind::Uint8)?
        .f_permute([1, 2, 0])?
        .f_contiguous()?
        .f_flatten(0, -1)?;
    let bytes = Vec::<u8>::try_from(&bytes)?;
    let img = RgbImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| Error::internal("image buffer size mismatch"))?;
    Ok(upscale_nearest(&img, pixel_size))
}

/// Enlarges an image by an integer factor with nearest-neighbour (`pixel_size`
/// in scene files); factors 0 and 1 return a copy.
pub fn upscale_nearest(img: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return img.clone();
    }
    RgbImage::from_fn(img.width() * factor, img.height() * factor, |x, y| {
        *img.get_pixel(x / factor, y / factor)
    })
}

/// Converts an RGB image to a `[1, 3, H, W]` float tensor in `[0, 1]` on the CPU.
pub fn rgb_to_tensor(img: &RgbImage) -> Result<Tensor> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    Ok(Tensor::f_from_slice(img.as_raw())?
        .f_view([h, w, 3])?
        .f_permute([2, 0, 1])?
        .f_to_kind(Kind::Float)?
        .f_unsqueeze(0)?
        .f_div_scalar(255.0)?)
}

/// Encodes `img` as PNG and writes it to `path` atomically.
pub fn write_png_atomic(path: &Path, img: &RgbImage) -> Result<()> {
    let mut buf = Vec::new();
    img.write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
        .map_err(|e| Error::io(format!("could not encode {}", path.display()), e))?;
    write_atomic(path, &buf)
}

/// Writes video frame `index` (1-based) into `dir` as `frame_NNNNN.png`
/// atomically, returning its path.
pub fn write_frame(dir: &Path, index: usize, img: &RgbImage) -> Result<PathBuf> {
    let path = dir.join(frame_file_name(index));
    write_png_atomic(&path, img)?;
    Ok(path)
}

/// Reads an image file (PNG or JPEG; alpha is dropped) as 8-bit RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::input(format!("could not open image {}: {e}", path.display())))?
        .with_guessed_format()
        .map_err(|e| Error::input(format!("could not read image {}: {e}", path.display())))?
        .decode()
        .map_err(|e| {
            Error::input(format!(
                "could not decode image {}: {e} (zoetrope reads PNG and JPEG files)",
                path.display()
            ))
        })?;
    Ok(img.to_rgb8())
}

/// Loads an image file resized to exactly `width × height` (Lanczos, as pytti
/// resizes init images with PIL's LANCZOS; aspect ratio is not preserved, the
/// image is stretched to the frame) as a `[1, 3, H, W]` float tensor in
/// `[0, 1]` on the CPU. Used for `init_image` and image prompts; the error
/// names the file when it cannot be read.
pub fn load_image(path: &Path, width: u32, height: u32) -> Result<Tensor> {
    if width == 0 || height == 0 {
        return Err(Error::internal(format!(
            "cannot resize {} to an empty {width}×{height} frame",
            path.display()
        )));
    }
    let img = read_rgb(path)?;
    let img = if img.dimensions() == (width, height) {
        img
    } else {
        image::imageops::resize(&img, width, height, FilterType::Lanczos3)
    };
    rgb_to_tensor(&img)
}
/// The image crate's failures keep an OS error as the cause.
impl crate::error::IoFailure for image::ImageError {
    fn into_cause(self) -> Option<crate::error::Cause> {
        match self {
            image::ImageError::IoError(e) => Some(e.into()),
            _ => None,
        }
    }
}
