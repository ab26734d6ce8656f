"""A realistic attribution benchmark: small face-swap autoencoders of DFDM's five
architectures trained on real talking-head videos (see ``build_dataset.py``).

Not part of the attribnet package; nothing in attribnet imports it.
"""
