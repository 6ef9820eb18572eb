"""The parts and models built on the core: swap one part of the VAE, or use a model of another shape.

Parts: ``priors`` (learnable priors beyond N(0, I): Gaussian, mixture, VampPrior; closed-form KLs registered
where they exist), ``likelihoods``
(the Gaussian likelihood of chapter 6, beside the core's Bernoulli), likelihoods for grey pixels
(``continuous_bernoulli``, ``discretized_logistic``, ``dequantization``, with the 8-bit conventions
of ``pixel_levels``), ``architectures`` (the convolutional encoder and decoder). Models: ``config``
(``VAEConfig`` and ``build_vae``: the standard combinations a checkpoint can rebuild),
``autoencoder`` (chapter 2), ``linear_gaussian`` (the exact model of chapter 3), ``conditional``
(the conditional VAE and M2 of chapter 11), ``flows`` (planar flows on q(z|x), chapter 11),
``hierarchical`` (two stochastic layers, p(z2) p(z1|z2) p(x|z1) with q(z1|x) q(z2|z1), chapter 12).
"""
