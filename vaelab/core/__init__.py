"""The core: the model and its objectives, in the book's order (the reading path).

``recognition`` (q(z|x): the encoders, the reparameterization trick, log q), ``generative`` (the prior
p(z) = N(0, I), the decoders, the Bernoulli likelihood p(x|z)), ``kl`` (KL(q || p) looked up by the pair
of types, closed form where one exists), ``model`` (the VAE that holds the parts) and ``objectives``
(the ELBO, the importance-weighted bound L_k, the training objective). Beside them, off the reading
path: ``softplus`` (the Bernoulli likelihood's one nonlinearity), ``validation`` (the checks of the
public entry points) and ``conveniences`` (the VAE's methods for looking at a model). Every other part
of vaelab imports from here; nothing here imports from the rest of vaelab except ``vaelab.utils``.
"""
