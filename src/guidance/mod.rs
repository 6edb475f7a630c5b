//! Guidance: how CLIP sees the image (cutouts) and what it is pulled toward (losses).
