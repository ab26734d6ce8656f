"""Data: manifests, video decoding, face crops, the clip cache, datasets and augmentation."""
