//! Warping the optimised image by one frame's motion (docs/design.md §5): a
//! frame-loop piece, so it lives in `render` beside [`crate::render::warp`]
//! and adds a method to [`ImageState`] from here (guidance does not know
//! about motion).

use crate::guidance::image::{ImageModel, ImageState};
use crate::render::warp::{warp, warp_latent, InfillMode, Motion, SamplingMode};
use crate::Result;

impl ImageState {
    /// Warps the parameter itself by one frame's motion: the VQGAN latent grid
    /// with [`warp_latent`] (`reencode_each_frame = false`), the Palette's pixels
    /// with [`warp`], the Limited Palette's brightness and palette weights
    /// with [`warp`] (always: pytti's 2D mode never re-encodes it). Values are copied into the existing leaf.
    pub fn warp_latent(
        &mut self,
        motion: &Motion,
        sampling: SamplingMode,
        infill: InfillMode,
    ) -> Result<()> {
        let current = self.param().f_detach()?;
        let moved = match self.model() {
            ImageModel::Vqgan(vqgan) => {
                warp_latent(&current, motion, vqgan.factor() as f64, sampling, infill)?
            }
            ImageModel::Palette => warp(&current, motion, sampling, infill)?,
            // pytti's zoom_2d: the brightness and palette weights move, the
            // palettes stay.
            ImageModel::LimitedPalette { model, .. } => {
                let layout = model.layout(self.height(), self.width());
                let image = layout.image_part(&current)?;
                layout.with_image_part(&current, &warp(&image, motion, sampling, infill)?)?
            }
        };
        self.set_param(&moved)
    }
}
