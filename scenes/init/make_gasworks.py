"""Draws scenes/init/gasworks.jpg: a small procedural picture of industrial
towers on a grassy hill under an evening sky (our own drawing, free to use),
the init image of scenes/spring_to_winter.toml.

Run: /work/main/.venv/bin/python scenes/init/make_gasworks.py
"""
import os
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 256, 128
rng = np.random.default_rng(7)
y = np.linspace(0, 1, H)[:, None, None]
sky = (1 - y) * np.array([120, 170, 230]) + y * np.array([250, 200, 150])
img = np.repeat(sky, W, axis=1).astype(np.float32)
img += rng.normal(0, 3, img.shape)
im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
d = ImageDraw.Draw(im)
# hill
d.polygon([(0, 100), (60, 88), (140, 92), (210, 84), (256, 95), (256, 128), (0, 128)], fill=(70, 120, 60))
# towers, pipes and a gas holder
for x, w, h in [(90, 10, 55), (104, 8, 62), (116, 12, 50), (133, 7, 58), (150, 10, 45)]:
    d.rectangle([x, 90 - h, x + w, 92], fill=(60, 50, 50))
    for yy in range(90 - h, 90, 6):
        d.line([x, yy, x + w, yy], fill=(95, 70, 60))
d.ellipse([168, 60, 200, 92], outline=(80, 60, 55), width=3)
d.line([95, 60, 140, 45], fill=(70, 55, 50), width=3)
d.line([110, 40, 160, 70], fill=(70, 55, 50), width=2)
# kite
d.polygon([(40, 30), (47, 38), (40, 48), (33, 38)], fill=(220, 40, 60))
d.line([40, 48, 60, 95], fill=(30, 30, 30))
im = im.filter(ImageFilter.SMOOTH)
im.save(os.path.join(os.path.dirname(__file__), "gasworks.jpg"), quality=88)
