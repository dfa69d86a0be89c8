"""Training: the VQ-VAE-2 and the two priors, resumable and torchrun/DDP-ready (`notono-live train`).

`vqvae.train_vqvae` and `priors.train_priors` are the loops; `common` holds what they share
(distributed setup, resumable sampler, checkpoints, logging); `export` writes the shipped folder.
"""
