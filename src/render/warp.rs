//! The 2D warp applied between frames (`animation_mode = "2D"`).
//!
//! pytti users describe motion per frame in pixels and degrees; this module
//! turns those numbers into one affine map and resamples the image once, so a
//! frame is never blurred by several successive interpolations.
//!
//! # Units and directions (docs/design.md §5)
//!
//! Coordinates are continuous pixel coordinates: x grows to the right, y grows
//! downwards, pixel `(i, j)` covers `[i, i+1) × [j, j+1)` and its centre is
//! `(i + ½, j + ½)`. The image centre is `(W/2, H/2)`.
//!
//! - `zoom_x_2d = z`: the source window is `W − z` pixels wide and is stretched
//!   to fill `W`, i.e. content is magnified by `W / (W − z)` horizontally about
//!   the centre; a negative `z` zooms out. `zoom_y_2d` does the same with `H`.
//!   A window of zero or negative width is an error naming the setting.
//! - `translate_x = +d` moves content `d` pixels to the right;
//!   `translate_y = +d` moves content `d` pixels **up** (pytti's convention).
//! - `rotate_2d = +a` rotates content `a` degrees counter-clockwise as seen on
//!   screen: a point right of the centre moves up. The rotation acts on pixel
//!   coordinates, so a non-square frame is not sheared (pytti rotates in
//!   normalised coordinates and shears; this is a deliberate fix).
//!
//! The three compose as `content' = c + t + R · S · (content − c)`: zoom first,
//! then rotation, both about the centre `c`, then translation in screen
//! space. Each output pixel centre is mapped back through the inverse and the
//! input is sampled there.
//!
//! # Infill
//!
//! Output pixels whose source lies outside the frame are filled by
//! [`InfillMode`]: `black` (zeros), `smear` (the nearest edge pixel), `mirror`
//! (reflection about the frame border, the edge pixel repeated once, like
//! PyTorch's `reflection` padding which pytti uses) and `wrap` (the frame tiles
//! the plane). Wrap is done by wrapping the sampling coordinates modulo the
//! frame size and sampling a copy of the frame padded circularly by two
//! pixels, so bilinear and bicubic kernels that straddle the border read the
//! opposite side and no seam appears.
//!
//! Bicubic sampling (Keys' cubic, `a = −0.75`, as PyTorch) may overshoot the
//! input range slightly near sharp edges; the warp does not clamp, the caller
//! decides (the render loop re-encodes or clamps the result anyway).

use nalgebra::Matrix3;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

pub use crate::scene::{InfillMode, SamplingMode};
pub use crate::schedule::Motion;

impl SamplingMode {
    /// `interpolation_mode` of `torch.grid_sampler`.
    fn torch_mode(self) -> i64 {
        match self {
            Self::Bilinear => 0,
            Self::Nearest => 1,
            Self::Bicubic => 2,
        }
    }
}

impl InfillMode {
    /// `padding_mode` of `torch.grid_sampler` (wrap samples a circularly
    /// padded copy, where border clamping is never reached).
    fn torch_padding(self) -> i64 {
        match self {
            Self::Black => 0,
            Self::Smear | Self::Wrap => 1,
            Self::Mirror => 2,
        }
    }
}

impl Motion {
    /// The same motion measured in units `factor` times larger: lengths
    /// (translations and zoom windows) are divided by `factor`, the angle is
    /// kept. Used to move a latent grid whose cells are `factor` pixels wide.
    pub fn in_units_of(&self, factor: f64) -> Motion {
        Motion {
            translate_x: self.translate_x / factor,
            translate_y: self.translate_y / factor,
            rotate_2d: self.rotate_2d,
            zoom_x_2d: self.zoom_x_2d / factor,
            zoom_y_2d: self.zoom_y_2d / factor,
        }
    }

    /// The forward content map for a `width × height` frame, in homogeneous
    /// continuous pixel coordinates: a content point at `p` in the input is at
    /// `M · p` in the output.
    ///
    /// Errors when a value is not finite or a zoom leaves no source window.
    pub fn forward_matrix(&self, width: f64, height: f64) -> Result<Matrix3<f64>> {
        self.check(width, height)?;
        let sx = width / (width - self.zoom_x_2d);
        let sy = height / (height - self.zoom_y_2d);
        let (cx, cy) = (width / 2.0, height / 2.0);
        let (sin, cos) = self.rotate_2d.to_radians().sin_cos();
        // y points down, so a counter-clockwise turn on screen is
        // x' = cos·x + sin·y, y' = −sin·x + cos·y.
        let rotate = Matrix3::new(cos, sin, 0.0, -sin, cos, 0.0, 0.0, 0.0, 1.0);
        let scale = Matrix3::new(sx, 0.0, 0.0, 0.0, sy, 0.0, 0.0, 0.0, 1.0);
        let to_origin = Matrix3::new(1.0, 0.0, -cx, 0.0, 1.0, -cy, 0.0, 0.0, 1.0);
        let back = Matrix3::new(
            1.0,
            0.0,
            cx + self.translate_x,
            0.0,
            1.0,
            cy - self.translate_y,
            0.0,
            0.0,
            1.0,
        );
        Ok(back * rotate * scale * to_origin)
    }

    /// The inverse of [`Motion::forward_matrix`]: where each output pixel
    /// samples the input.
    pub fn source_matrix(&self, width: f64, height: f64) -> Result<Matrix3<f64>> {
        self.forward_matrix(width, height)?
            .try_inverse()
            .ok_or_else(|| Error::internal(format!("motion {self:?} is not invertible")))
    }
}

/// Pixels of circular padding around the frame for `wrap`: enough for the
/// 4×4 bicubic footprint of any wrapped coordinate.
const WRAP_PAD: i64 = 2;

/// Warps an image batch `[B, C, H, W]` (floating point, any device) by one
/// frame's `motion`, sampling once with `sampling` and filling uncovered pixels
/// by `infill`. The result has the input's shape, kind and device, and keeps
/// the autograd graph (the render loop passes detached frames).
pub fn warp(
    image: &Tensor,
    motion: &Motion,
    sampling: SamplingMode,
    infill: InfillMode,
) -> Result<Tensor> {
    match image.size()[..] {
        [_, _, h, w] if h > 0 && w > 0 => {
            let inv = motion.source_matrix(w as f64, h as f64)?;
            sample_by(image, &inv, sampling, infill)
        }
        // Not an image batch: sample_by says what is wrong with it.
        _ => sample_by(image, &Matrix3::identity(), sampling, infill),
    }
}

/// The forward content map of several frames' motions applied one after
/// the other (the first first) to a `width × height` frame: a content point
/// at `p` before them is at `M · p` after the last.
pub fn composed_forward(motions: &[Motion], width: f64, height: f64) -> Result<Matrix3<f64>> {
    motions.iter().try_fold(Matrix3::identity(), |m, motion| {
        Ok(motion.forward_matrix(width, height)? * m)
    })
}

/// Resamples an image batch `[B, C, H, W]` so that each output pixel centre
/// `q` reads the input at `source · q` (continuous pixel coordinates,
/// module docs), sampling once with `sampling` and filling what falls
/// outside by `infill`. [`warp`] is this with the inverse of one frame's
/// motion.
pub fn sample_by(
    image: &Tensor,
    source: &Matrix3<f64>,
    sampling: SamplingMode,
    infill: InfillMode,
) -> Result<Tensor> {
    let size = image.size();
    let [b, _c, h, w] = size[..] else {
        return Err(Error::internal(format!(
            "warp expects an image batch [B, C, H, W], got shape {size:?}"
        )));
    };
    if !image.is_floating_point() {
        return Err(Error::internal(format!(
            "warp expects a floating-point image, got {:?}",
            image.kind()
        )));
    }
    if h == 0 || w == 0 {
        return Err(Error::internal(format!("warp got an empty image {size:?}")));
    }
    // Sampling coordinates need more precision than half floats have (bf16
    // would misplace pixels by up to half a percent of the frame), so reduced
    // precision images are warped in f32 and converted back.
    let kind = image.kind();
    let work_kind = match kind {
        Kind::Double => Kind::Double,
        _ => Kind::Float,
    };
    let image = &image.f_to_kind(work_kind)?;
    let inv = source;
    let device = image.device();
    let opts = (Kind::Double, device);

    // Output pixel centres, in continuous pixel coordinates.
    let xs = Tensor::f_arange(w, opts)?
        .f_add_scalar(0.5)?
        .f_view([1, w])?;
    let ys = Tensor::f_arange(h, opts)?
        .f_add_scalar(0.5)?
        .f_view([h, 1])?;
    // a·x + b·y + c, in the order the operators wrote it.
    let affine = |a: f64, b: f64, c: f64| -> Result<Tensor> {
        Ok(xs
            .f_mul_scalar(a)?
            .f_add(&ys.f_mul_scalar(b)?)?
            .f_add_scalar(c)?)
    };
    let sx = affine(inv[(0, 0)], inv[(0, 1)], inv[(0, 2)])?;
    let sy = affine(inv[(1, 0)], inv[(1, 1)], inv[(1, 2)])?;

    let (source, sx, sy, sw, sh) = if infill == InfillMode::Wrap {
        let p = WRAP_PAD;
        let padded = circular_pad(image, p)?;
        let sx = sx.f_remainder(w as f64)?.f_add_scalar(p as f64)?;
        let sy = sy.f_remainder(h as f64)?.f_add_scalar(p as f64)?;
        (padded, sx, sy, (w + 2 * p) as f64, (h + 2 * p) as f64)
    } else {
        (image.shallow_clone(), sx, sy, w as f64, h as f64)
    };
    // grid_sampler's normalised coordinates with align_corners = false:
    // −1 is the left edge of the first pixel, +1 the right edge of the last.
    let gx = sx.f_mul_scalar(2.0 / sw)?.f_sub_scalar(1.0)?;
    let gy = sy.f_mul_scalar(2.0 / sh)?.f_sub_scalar(1.0)?;
    let grid = Tensor::f_stack(&[gx, gy], -1)?
        .f_unsqueeze(0)?
        .f_to_kind(image.kind())?
        .f_expand([b, h, w, 2], false)?;
    Ok(source
        .f_grid_sampler(&grid, sampling.torch_mode(), infill.torch_padding(), false)?
        .f_to_kind(kind)?)
}

/// Warps a latent grid `[B, C, h, w]` whose cells are `factor` pixels wide (the
/// VQGAN downsampling factor, 16 or 8), for `reencode_each_frame = false`.
///
/// Decision: the latent is moved by the *same continuous map* as the image it
/// decodes to. Latent cell `i` covers pixels `[i·f, (i+1)·f)`, so the centres
/// coincide, translations and zoom windows are divided by `f`
/// ([`Motion::in_units_of`]) and the magnification `W/(W−z) = w/(w − z/f)` and
/// the angle are unchanged. Latent vectors are interpolated like pixels with
/// `sampling`; sub-cell motion therefore blends neighbouring codes, which the
/// next quantisation snaps back to the codebook. `black` infill fills with
/// zero vectors, which decode to a flat mid-tone rather than true black (a
/// zero latent is the closest thing to "nothing" the latent space has).
pub fn warp_latent(
    z: &Tensor,
    motion: &Motion,
    factor: f64,
    sampling: SamplingMode,
    infill: InfillMode,
) -> Result<Tensor> {
    if !(factor.is_finite() && factor > 0.0) {
        return Err(Error::internal(format!(
            "warp_latent needs a positive downsampling factor, got {factor}"
        )));
    }
    warp(z, &motion.in_units_of(factor), sampling, infill)
}

/// Pads `[B, C, H, W]` by `p` pixels on every side with the opposite side's
/// content (a wrap-around copy), for any frame size, including frames smaller
/// than `p`.
fn circular_pad(x: &Tensor, p: i64) -> Result<Tensor> {
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    let device = x.device();
    let index = |n: i64| -> Result<Tensor> {
        Ok(Tensor::f_arange_start(-p, n + p, (Kind::Int64, device))?.f_remainder(n)?)
    };
    Ok(x.f_index_select(2, &index(h)?)?
        .f_index_select(3, &index(w)?)?)
}
