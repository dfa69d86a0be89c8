"""Neural models of NOTONO: the VQ-VAE-2, the two Transformer priors, their sampler and checkpoints.

`NotonoModel` (models/bundle.py) is the high-level API the rest of the package uses.
"""
