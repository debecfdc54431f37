"""Render detected faces onto an image (for `--draw`)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from faceprint.images import LoadedImage


def draw_boxes(image: LoadedImage, boxes: list[dict[str, float]], out: Path) -> None:
    """Write `image` with each Rekognition BoundingBox outlined and numbered (largest is 1)."""
    canvas = Image.fromarray(image.pixels)
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(min(image.width, image.height) / 300))
    for i, box in enumerate(boxes, 1):
        left, top = box["Left"] * image.width, box["Top"] * image.height
        right, bottom = left + box["Width"] * image.width, top + box["Height"] * image.height
        pen.rectangle((left, top, right, bottom), outline=(0, 255, 0), width=width)
        pen.text((left + 2, max(0, top - 12)), str(i), fill=(0, 255, 0))
    canvas.save(out)
