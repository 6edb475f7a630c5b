//! The optimised image: a VQGAN's latent grid `z` (Crowson's "z + quantize"
//! method) or the Unlimited Palette's RGB pixels (pytti's `RGBImage`).
//!
//! The parameter is always a float32 leaf tensor on the render device,
//! whatever precision the models run in, so Adam's moments and small updates
//! never lose precision to bf16. After every Adam step a VQGAN's `z` is
//! clamped into the codebook's per-channel range ([`ImageState::clamp_to_codebook`],
//! docs/design.md §7; the reasons are in [`crate::guidance::step`]'s docs).
//! Warping the parameter by a frame's motion is the frame loop's business
//! (`ImageState::warp_latent`, in [`crate::render::state_warp`]).

use tch::{Device, Kind, Tensor};

use crate::models::vqgan::{QuantizerKind, Vqgan};
use crate::rng::Rng;
use crate::{Error, Result};

/// The image model named by `image_model`: a VQGAN whose latent is optimised,
/// or the Unlimited Palette (RGB pixels optimised directly).
///
/// (One value per render, so the size difference between the variants that
/// clippy warns about costs nothing; boxing would only complicate the API.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ImageModel {
    Vqgan(Vqgan),
    Palette,
}

/// The optimised image: the model, its parameter (float32 leaf that requires
/// grad: `z [1, embed_dim, H/f, W/f]` for a VQGAN, RGB pixels `[1, 3, H, W]`
/// for the Palette, where values may leave `[0, 1]` and are clamped when
/// shown) and the output size in pixels.
#[derive(Debug)]
pub struct ImageState {
    model: ImageModel,
    param: Tensor,
    width: i64,
    height: i64,
    /// VQGAN: the codebook's per-channel minimum and maximum `[1, C, 1, 1]`,
    /// float32 on the parameter's device, which each step clamps `z` into
    /// (module docs); made once here so that the step reads no host number.
    codebook_range: Option<(Tensor, Tensor)>,
}

/// A fresh float32 leaf on its own storage (never a view of the model's
/// codebook or of a caller's image, which Adam's in-place updates would corrupt).
fn leaf(values: &Tensor) -> Result<Tensor> {
    Ok(
        crate::ops::copy(&values.f_detach()?.f_to_kind(Kind::Float)?.f_contiguous()?)?
            .f_set_requires_grad(true)?,
    )
}

/// Checks that `rgb` is one float image `[1, 3, H, W]` and returns `(H, W)`.
pub(crate) fn rgb_dims(rgb: &Tensor, what: &str) -> Result<(i64, i64)> {
    let size = rgb.size();
    match size[..] {
        [1, 3, h, w] if h > 0 && w > 0 && rgb.is_floating_point() => Ok((h, w)),
        _ => Err(Error::internal(format!(
            "{what} needs one RGB image [1, 3, H, W] of floats in [0, 1], got {size:?} {:?}",
            rgb.kind()
        ))),
    }
}

impl ImageModel {
    /// The device the parameter lives on for this model (the VQGAN's device;
    /// the Palette has no weights, so the caller's choice).
    fn device_or(&self, fallback: Device) -> Device {
        match self {
            ImageModel::Vqgan(v) => v.device(),
            ImageModel::Palette => fallback,
        }
    }

    /// The parameter that represents `rgb` (`[1, 3, H, W]`, `[0, 1]`):
    /// VQGAN `z` = the quantised encoding, Palette the pixels.
    pub(crate) fn encode(&self, rgb: &Tensor, device: Device) -> Result<Tensor> {
        let (h, w) = rgb_dims(rgb, "encoding an image")?;
        let rgb = rgb.f_to_device(device)?.f_to_kind(Kind::Float)?;
        match self {
            ImageModel::Palette => leaf(&rgb),
            ImageModel::Vqgan(vqgan) => {
                let f = vqgan.factor();
                if h % f != 0 || w % f != 0 {
                    return Err(Error::input(format!(
                        "a {w}×{h} image cannot be encoded by this VQGAN: width and height must be multiples of {f}; resize the image to the render size first"
                    )));
                }
                // pytti and the VQGAN+CLIP notebooks start from taming's
                // `encode`, which returns the *quantised* latent.
                let z = tch::no_grad(|| -> Result<Tensor> {
                    let z = vqgan.encode(&rgb.f_mul_scalar(2.0)?.f_sub_scalar(1.0)?)?;
                    Ok(vqgan.quantize(&z)?.0)
                })?;
                leaf(&z)
            }
        }
    }
}

impl ImageState {
    /// A random start (docs/design.md §6): VQGAN `z` = the codebook vectors of uniformly
    /// random tokens; Palette: uniform random RGB. Both drawn on the CPU from
    /// `rng`, so a seed gives the same start on every device. `device` places the Palette's pixels; a VQGAN's latent
    /// lives on the VQGAN's device. VQGAN sizes must be multiples of its factor
    /// (the scene loader rounds them down).
    pub fn random(
        model: ImageModel,
        width: i64,
        height: i64,
        device: Device,
        rng: &mut Rng,
    ) -> Result<ImageState> {
        if width < 1 || height < 1 {
            return Err(Error::input(format!(
                "the image size {width}×{height} is empty; set width and height to at least 1"
            )));
        }
        let param = match &model {
            ImageModel::Palette => {
                let rgb = rng.rand(&[1, 3, height, width])?;
                leaf(&rgb.f_to_device(device)?)?
            }
            ImageModel::Vqgan(vqgan) => {
                let f = vqgan.factor();
                if width % f != 0 || height % f != 0 {
                    return Err(Error::input(format!(
                        "width × height = {width}×{height}: this VQGAN needs multiples of {f}"
                    )));
                }
                let n = vqgan.config().n_embed;
                let tokens = rng.randint(n, &[1, height / f, width / f])?;
                let z = tch::no_grad(|| vqgan.embed_codes(&tokens.f_to_device(vqgan.device())?))?;
                leaf(&z)?
            }
        };
        ImageState::assemble(model, param, width, height)
    }

    /// Starts from an image `[1, 3, H, W]` float in `[0, 1]` on any device
    /// (`init_image`, already resized to the render size). VQGAN: `z` is the
    /// *quantised* encoding, as pytti and the notebooks do (taming's `encode`
    /// returns `z_q`); so the first decode shows the VQGAN's reconstruction.
    /// Palette: the pixels are copied. The Palette's parameter goes to the
    /// image's device.
    pub fn from_image(model: ImageModel, rgb: &Tensor) -> Result<ImageState> {
        let (height, width) = rgb_dims(rgb, "starting from an image")?;
        let device = model.device_or(rgb.device());
        let param = model.encode(rgb, device)?;
        ImageState::assemble(model, param, width, height)
    }

    /// The state of a parameter just made, with the VQGAN's codebook range.
    fn assemble(model: ImageModel, param: Tensor, width: i64, height: i64) -> Result<ImageState> {
        let codebook_range = match &model {
            ImageModel::Palette => None,
            ImageModel::Vqgan(vqgan) => {
                let channels = vqgan.config().embed_dim;
                let range = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                    let cb = vqgan
                        .codebook()
                        .f_detach()?
                        .f_to_kind(Kind::Float)?
                        .f_to_device(param.device())?;
                    let (lo, _) = cb.f_min_dim(0, false)?;
                    let (hi, _) = cb.f_max_dim(0, false)?;
                    Ok((
                        lo.f_view([1, channels, 1, 1])?,
                        hi.f_view([1, channels, 1, 1])?,
                    ))
                })?;
                Some(range)
            }
        };
        Ok(ImageState {
            model,
            param,
            width,
            height,
            codebook_range,
        })
    }

    /// VQGAN: clamps `z` into the codebook's per-channel range, in place on
    /// the device (the notebooks' `z.copy_(z.maximum(z_min).minimum(z_max))`
    /// after every Adam step). The Palette's pixels are left as they are.
    pub(crate) fn clamp_to_codebook(&mut self) -> Result<()> {
        if let Some((lo, hi)) = &self.codebook_range {
            let _ = tch::no_grad(|| self.param.f_clamp_tensor_(Some(lo), Some(hi)))?;
        }
        Ok(())
    }

    /// Replaces the state by the encoding of `rgb` (after a warp with
    /// `reencode_each_frame = true`), keeping the same leaf tensor so an Adam
    /// bound to it stays valid. The image must have the state's size.
    pub fn set_image(&mut self, rgb: &Tensor) -> Result<()> {
        let (h, w) = rgb_dims(rgb, "re-encoding an image")?;
        if (w, h) != (self.width, self.height) {
            return Err(Error::internal(format!(
                "re-encoding a {w}×{h} image into a {}×{} render",
                self.width, self.height
            )));
        }
        let values = self.model.encode(rgb, self.param.device())?;
        self.set_param(&values)
    }

    /// The current image `[1, 3, H, W]` float32 in `[0, 1]`, detached, on the
    /// parameter's device: the decoded quantised latent (VQGAN) or the clamped
    /// pixels (Palette). For frames, warps and targets.
    pub fn image(&self) -> Result<Tensor> {
        tch::no_grad(|| -> Result<Tensor> {
            let x = match &self.model {
                ImageModel::Palette => self.param.f_detach()?,
                ImageModel::Vqgan(vqgan) => {
                    let (z_q, _) = vqgan.quantize(&self.param)?;
                    vqgan
                        .decode(&z_q)?
                        .f_to_kind(Kind::Float)?
                        .f_add_scalar(1.0)?
                        .f_div_scalar(2.0)?
                }
            };
            Ok(x.f_clamp(0.0, 1.0)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?)
        })
    }

    /// The quantised latent `z_q` (VQGAN only), float32, detached.
    pub fn z_q(&self) -> Result<Option<Tensor>> {
        match &self.model {
            ImageModel::Palette => Ok(None),
            ImageModel::Vqgan(vqgan) => {
                let (z_q, _) = tch::no_grad(|| vqgan.quantize(&self.param))?;
                Ok(Some(z_q.f_to_kind(Kind::Float)?.f_contiguous()?))
            }
        }
    }

    /// The optimised tensor (float32 leaf that requires grad): for Adam, and to
    /// save on resume.
    pub fn param(&self) -> &Tensor {
        &self.param
    }

    /// The optimised tensor, mutably, for [`Adam::step`].
    pub fn param_mut(&mut self) -> &mut Tensor {
        &mut self.param
    }

    /// Copies `value` (any kind or device, the parameter's shape) into the
    /// parameter, keeping the same leaf tensor (resume, re-encode, warp).
    pub fn set_param(&mut self, value: &Tensor) -> Result<()> {
        if value.size() != self.param.size() {
            return Err(Error::input(format!(
                "the saved image state is shaped {:?} but this render needs {:?}: it belongs to another size or image model",
                value.size(),
                self.param.size()
            )));
        }
        let value = value
            .f_detach()?
            .f_to_device(self.param.device())?
            .f_to_kind(Kind::Float)?;
        tch::no_grad(|| self.param.f_copy_(&value))?;
        Ok(())
    }

    /// The learning rate the model is tuned for (docs/design.md §1 `learning_rate`):
    /// 0.1 for a VQGAN, 0.15 for a gumbel VQGAN, 0.02 for the Unlimited Palette.
    pub fn default_lr(&self) -> f64 {
        match &self.model {
            ImageModel::Vqgan(v) if v.config().quantizer == QuantizerKind::Gumbel => 0.15,
            ImageModel::Vqgan(_) => 0.1,
            ImageModel::Palette => 0.02,
        }
    }

    /// The image model.
    pub fn model(&self) -> &ImageModel {
        &self.model
    }

    /// Output width in pixels.
    pub fn width(&self) -> i64 {
        self.width
    }

    /// Output height in pixels.
    pub fn height(&self) -> i64 {
        self.height
    }

    /// The device everything of the step runs on.
    pub fn device(&self) -> Device {
        self.param.device()
    }
}
