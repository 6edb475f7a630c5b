//! The optimised image: a VQGAN's latent grid `z` (Crowson's "z + quantize"
//! method), the Unlimited Palette's RGB pixels (pytti's `RGBImage`) or the
//! Limited Palette's palettes, brightness and palette weights (pytti's
//! `PixelImage`, [`crate::guidance::palette`]).
//!
//! The parameter is always a float32 leaf tensor on the render device,
//! whatever precision the models run in, so Adam's moments and small updates
//! never lose precision to bf16. After every Adam step a VQGAN's `z` is
//! clamped into the codebook's per-channel range ([`ImageState::clamp_to_codebook`],
//! docs/design.md §7; the reasons are in [`crate::guidance::step`]'s docs).
//! Warping the parameter by a frame's motion is the frame loop's business
//! (`ImageState::warp_latent`, in [`crate::render::state_warp`]).

use tch::{Device, Kind, Tensor};

use crate::guidance::palette::{Layout, LimitedPalette};
use crate::models::vqgan::{QuantizerKind, Vqgan};
use crate::rng::Rng;
use crate::{Error, Result};

/// The image model named by `image_model`: a VQGAN whose latent is optimised,
/// the Unlimited Palette (RGB pixels optimised directly), or the Limited
/// Palette (with its `target_palette` image at the render size, if any).
///
/// (One value per render, so the size difference between the variants that
/// clippy warns about costs nothing; boxing would only complicate the API.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ImageModel {
    Vqgan(Vqgan),
    Palette,
    LimitedPalette {
        model: LimitedPalette,
        target: Option<Tensor>,
    },
}

/// The optimised image: the model, its parameter (float32 leaf that requires
/// grad: `z [1, embed_dim, H/f, W/f]` for a VQGAN, RGB pixels `[1, 3, H, W]`
/// for the Palette, where values may leave `[0, 1]` and are clamped when
/// shown; the Limited Palette's flat `[P | v | t]`, [`Layout`]) and the
/// output size in pixels.
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
            ImageModel::Palette | ImageModel::LimitedPalette { .. } => fallback,
        }
    }

    /// The parameter that represents `rgb` (`[1, 3, H, W]`, `[0, 1]`):
    /// VQGAN `z` = the quantised encoding, Palette the pixels. (The Limited
    /// Palette encodes into an existing state: [`ImageState::set_image`].)
    pub(crate) fn encode(&self, rgb: &Tensor, device: Device) -> Result<Tensor> {
        let (h, w) = rgb_dims(rgb, "encoding an image")?;
        let rgb = rgb.f_to_device(device)?.f_to_kind(Kind::Float)?;
        match self {
            ImageModel::Palette => leaf(&rgb),
            ImageModel::LimitedPalette { .. } => Err(Error::internal(
                "a Limited Palette image is encoded into its state (ImageState::set_image)",
            )),
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
            ImageModel::LimitedPalette { model: lp, .. } => {
                leaf(&lp.random(lp.layout(height, width), device, rng)?)?
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
        if let ImageModel::LimitedPalette { .. } = model {
            return Err(Error::internal(
                "a Limited Palette render starts with ImageState::start (it draws a random state first)",
            ));
        }
        let device = model.device_or(rgb.device());
        let param = model.encode(rgb, device)?;
        ImageState::assemble(model, param, width, height)
    }

    /// The starting state of a render (docs/design.md §6): [`from_image`](Self::from_image)
    /// with an init image, else [`random`](Self::random). The Limited
    /// Palette does as pytti: a random state first (drawn from `rng`), then
    /// its palette locked (`target_palette`, `lock_palette`), then the init
    /// image, if any, encoded into it.
    pub fn start(
        model: ImageModel,
        width: i64,
        height: i64,
        device: Device,
        rng: &mut Rng,
        init: Option<&Tensor>,
    ) -> Result<ImageState> {
        let limited = matches!(model, ImageModel::LimitedPalette { .. });
        match init {
            Some(rgb) if !limited => ImageState::from_image(model, rgb),
            _ if !limited => ImageState::random(model, width, height, device, rng),
            _ => {
                let mut state = ImageState::random(model, width, height, device, rng)?;
                state.lock_palette()?;
                if let Some(rgb) = init {
                    state.set_image(&rgb.f_to_device(device)?)?;
                }
                Ok(state)
            }
        }
    }

    /// Limited Palette: locks the palette as the settings ask
    /// ([`LimitedPalette::lock`]), after the random start.
    fn lock_palette(&mut self) -> Result<()> {
        let layout = self.layout();
        if let (ImageModel::LimitedPalette { model, target }, Some(layout)) =
            (&mut self.model, layout)
        {
            let start = model.lock(&self.param, layout, target.as_ref())?;
            let start = start.f_to_device(self.param.device())?;
            tch::no_grad(|| self.param.f_copy_(&start))?;
        }
        Ok(())
    }

    /// The Limited Palette's parameter layout (`None` for the other models).
    pub fn layout(&self) -> Option<Layout> {
        match &self.model {
            ImageModel::LimitedPalette { model, .. } => Some(model.layout(self.height, self.width)),
            _ => None,
        }
    }

    /// The Limited Palette's weighted image losses (HDR, palette
    /// normalisation) of the current parameter, with gradients; `None` for
    /// the other models or when both weights are 0.
    pub(crate) fn image_losses(&self) -> Result<Option<Tensor>> {
        match (&self.model, self.layout()) {
            (ImageModel::LimitedPalette { model, .. }, Some(layout)) => {
                model.image_losses(&self.param, layout, model.config.hdr_weight)
            }
            _ => Ok(None),
        }
    }

    /// Limited Palette: the palette image pytti's `show_palette` displays
    /// ([`LimitedPalette::palette_image`]); `None` for the other models.
    pub fn palette_image(&self) -> Result<Option<Tensor>> {
        match (&self.model, self.layout()) {
            (ImageModel::LimitedPalette { model, .. }, Some(layout)) => {
                Ok(Some(model.palette_image(&self.param, layout)?))
            }
            _ => Ok(None),
        }
    }

    /// The state of a parameter just made, with the VQGAN's codebook range.
    fn assemble(model: ImageModel, param: Tensor, width: i64, height: i64) -> Result<ImageState> {
        let codebook_range = match &model {
            ImageModel::Palette | ImageModel::LimitedPalette { .. } => None,
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
    /// after every Adam step); the Limited Palette's parts into their ranges
    /// (pytti's `update`, [`LimitedPalette::clamp`]). The Unlimited Palette's
    /// pixels are left as they are.
    pub(crate) fn clamp_after_step(&mut self) -> Result<()> {
        if let Some((lo, hi)) = &self.codebook_range {
            let _ = tch::no_grad(|| self.param.f_clamp_tensor_(Some(lo), Some(hi)))?;
        }
        if let (ImageModel::LimitedPalette { model, .. }, Some(layout)) =
            (&self.model, self.layout())
        {
            model.clamp(&self.param, layout)?;
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
        let values = match (&self.model, self.layout()) {
            (ImageModel::LimitedPalette { model, .. }, Some(layout)) => {
                model.encode(&self.param, rgb, layout)?
            }
            _ => self.model.encode(rgb, self.param.device())?,
        };
        self.set_param(&values)
    }

    /// The current image `[1, 3, H, W]` float32 in `[0, 1]`, detached, on the
    /// parameter's device: the decoded quantised latent (VQGAN) or the clamped
    /// pixels (Palette), the decoded palette image (Limited Palette). For
    /// frames, warps and targets.
    pub fn image(&self) -> Result<Tensor> {
        tch::no_grad(|| -> Result<Tensor> {
            let x = match &self.model {
                ImageModel::Palette => self.param.f_detach()?,
                ImageModel::LimitedPalette { model, .. } => model.decode(
                    &self.param.f_detach()?,
                    model.layout(self.height, self.width),
                )?,
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
            ImageModel::Palette | ImageModel::LimitedPalette { .. } => Ok(None),
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
    /// 0.1 for a VQGAN, 0.15 for a gumbel VQGAN, 0.02 for both palettes
    /// (pytti's `DifferentiableImage.lr`, which neither palette overrides).
    pub fn default_lr(&self) -> f64 {
        match &self.model {
            ImageModel::Vqgan(v) if v.config().quantizer == QuantizerKind::Gumbel => 0.15,
            ImageModel::Vqgan(_) => 0.1,
            ImageModel::Palette | ImageModel::LimitedPalette { .. } => 0.02,
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
