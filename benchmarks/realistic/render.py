"""Rendering a swap: faceswap's convert step on head-centred frames.

For every frame: take the face box (:func:`realistic.footage.face_region`), resize it to
the model's input, encode it and decode it as the other identity, resize the generated
face back to the box, match its colour to the original face (per-channel mean and
standard deviation inside the blending mask, as face-swap converters' colour adjustment
does, so that colour says nothing about the generator), and blend it in with a feathered
ellipse (times the model's own mask for a model that learns one). Outside the face the
frame stays the original.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from realistic.generators import FaceSwapAutoencoder
from realistic.training import ellipse_mask, face_tensor


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    interp = cv2.INTER_CUBIC if image.shape[0] < size else cv2.INTER_AREA
    return cv2.resize(image, (size, size), interpolation=interp)


def match_colour(face: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``face`` (s, s, 3) float with the weighted per-channel mean and std of ``target``."""
    w = weight[..., None] / max(float(weight.sum()), 1e-6)
    mu_f, mu_t = (face * w).sum((0, 1)), (target * w).sum((0, 1))
    sd_f = np.sqrt(((face - mu_f) ** 2 * w).sum((0, 1))) + 1e-3
    sd_t = np.sqrt(((target - mu_t) ** 2 * w).sum((0, 1)))
    return (face - mu_f) / sd_f * sd_t + mu_t


@torch.no_grad()
def swap_frames(
    model: FaceSwapAutoencoder,
    side: int,
    frames: np.ndarray,
    offset: int,
    region: int,
    batch: int = 32,
) -> np.ndarray:
    """Frames (N, P, P, 3) uint8 with the face box (offset, region) swapped to identity
    ``side`` of ``model``; returns a new array."""
    out = frames.copy()
    box = (slice(None), slice(offset, offset + region), slice(offset, offset + region))
    originals = frames[box]
    ellipse = ellipse_mask(region)
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(frames), batch):
        x = face_tensor(originals[start : start + batch], model.input_size)
        faces, masks = model(x.to(device), side)
        faces_np = faces.float().permute(0, 2, 3, 1).cpu().numpy() * 255.0
        masks_np = None if masks is None else masks[:, 0].float().cpu().numpy()
        for j, face in enumerate(faces_np):
            i = start + j
            original = originals[i].astype(np.float32)
            face = _resize(face.astype(np.float32), region)
            alpha = ellipse
            if masks_np is not None:
                alpha = ellipse * np.clip(_resize(masks_np[j], region), 0.0, 1.0)
            face = match_colour(face, original, ellipse)
            blended = alpha[..., None] * face + (1.0 - alpha[..., None]) * original
            out[i, offset : offset + region, offset : offset + region] = np.clip(
                np.round(blended), 0, 255
            ).astype(np.uint8)
    return out
