"""The evaluation shortcut for the MLP decoder with a Bernoulli likelihood (vaelab.estimators.bernoulli_mlp)
against torch.distributions and against vaelab's general path."""

import copy
from unittest import mock

import pytest
import torch
from torch.distributions import Bernoulli

from vaelab import MLPDecoder, build_vae, iwae_bound, log_likelihood_estimate
from vaelab.estimators import bernoulli_mlp
from vaelab.estimators.bernoulli_mlp import BernoulliMLPLogLikelihood, applies_to


def _decoder(pixels: int, scale: float, seed: int = 0, dtype=torch.float32) -> MLPDecoder:
    torch.manual_seed(seed)
    decoder = MLPDecoder(latent_dim=3, hidden_dim=16, output_dim=pixels).to(dtype)
    with torch.no_grad():  # large logits of both signs, as a trained decoder has
        decoder.out.weight.mul_(scale)
        decoder.out.bias.uniform_(-scale, scale)
    return decoder


def _reference(decoder: MLPDecoder, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """sum_i [x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i)] in float64, with torch.distributions."""
    logits = copy.deepcopy(decoder).double()(z.double())
    return Bernoulli(logits=logits, validate_args=False).log_prob(x.double()).sum(-1)  # grey x too


@pytest.mark.parametrize("pixels", [784, 30, 17])  # 784 = 8 groups of 98; 30 = 1 x 30; 17 is prime
@pytest.mark.parametrize("binary", [True, False])
def test_matches_torch_distributions(pixels, binary):
    g = torch.Generator().manual_seed(pixels)
    decoder = _decoder(pixels, scale=5.0)
    x = torch.rand(6, pixels, generator=g)
    x = (x > 0.6).float() if binary else x
    z = torch.randn(4, 6, 3, generator=g)
    with torch.no_grad():
        fast = BernoulliMLPLogLikelihood(decoder, x)(z)
    reference = _reference(decoder, x, z)
    assert fast.shape == (4, 6) and fast.dtype == torch.float32
    # float32 rounding of sums over `pixels` terms of size up to ~50 nats
    torch.testing.assert_close(fast.double(), reference, rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_is_exact_for_extreme_logits(dtype):
    """|l| = 1e4: sigmoid(|l|) = 1 exactly and the linear terms carry the whole value."""
    decoder = MLPDecoder(latent_dim=1, hidden_dim=1, output_dim=4).to(dtype)
    with torch.no_grad():
        decoder.hidden.weight.fill_(0.0)
        decoder.hidden.bias.fill_(1.0)  # h = 1 whatever z is
        decoder.out.weight.copy_(torch.tensor([[1e4], [-1e4], [1e4], [-1e4]]))
        decoder.out.bias.zero_()
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    z = torch.zeros(1, 1, 1, dtype=dtype)
    with torch.no_grad():
        value = BernoulliMLPLogLikelihood(decoder, x)(z)
    assert value.item() == pytest.approx(-2e4, rel=1e-12)  # the two wrong pixels cost 1e4 nats each
    torch.testing.assert_close(value.double(), _reference(decoder, x, z))


def test_float16_groups_stay_above_underflow():
    """2^-98 underflows float16 (smallest normal 2^-14): there the products run over 14 pixels."""
    g = torch.Generator().manual_seed(3)
    decoder = _decoder(784, scale=5.0)
    x = (torch.rand(3, 784, generator=g) > 0.7).float()
    z = torch.randn(2, 3, 3, generator=g)
    with torch.no_grad():
        evaluate = BernoulliMLPLogLikelihood(copy.deepcopy(decoder).half(), x.half())
        value = evaluate(z.half())
    assert evaluate.group == 14
    assert torch.isfinite(value).all()
    torch.testing.assert_close(value.double(), _reference(decoder, x, z), rtol=2e-2, atol=1.0)


def test_buffers_are_reused_for_smaller_and_regrown_for_larger_chunks():
    g = torch.Generator().manual_seed(1)
    decoder = _decoder(30, scale=3.0)
    x = (torch.rand(5, 30, generator=g) > 0.5).float()
    evaluate = BernoulliMLPLogLikelihood(decoder, x)
    with torch.no_grad():
        for n in (7, 2, 11, 1):  # a smaller chunk reads a prefix of the buffers; a larger one grows them
            z = torch.randn(n, 5, 3, generator=g)
            torch.testing.assert_close(evaluate(z).double(), _reference(decoder, x, z), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_log_likelihood_estimate_takes_the_shortcut_and_agrees_with_iwae_bound(chunk_size):
    """log_likelihood_estimate uses the shortcut for the MLP/Bernoulli pair, and on the same noise (one
    generator, batches of 4, 4 and 1, a chunk size that leaves a remainder) it equals iwae_bound, the
    formula as written, evaluated with autograd on."""
    torch.manual_seed(0)
    model = build_vae(latent_dim=4, hidden_dim=32)
    with torch.no_grad():
        model.decoder.out.weight.mul_(4)
    x = (torch.rand(9, 784, generator=torch.Generator().manual_seed(2)) > 0.7).float()
    calls = []
    original = bernoulli_mlp.BernoulliMLPLogLikelihood.__call__

    def counting(self, z):
        calls.append(z.shape[0])
        return original(self, z)

    with mock.patch.object(bernoulli_mlp.BernoulliMLPLogLikelihood, "__call__", counting):
        estimate = log_likelihood_estimate(
            model, x, k=40, batch_size=4, chunk_size=chunk_size, generator=torch.Generator().manual_seed(5)
        )
    assert sum(calls) == 3 * 40  # every sample of the three batches went through the shortcut
    g = torch.Generator().manual_seed(5)
    general = [iwae_bound(model, x[i : i + 4], k=40, chunk_size=chunk_size or 40, generator=g) for i in (0, 4, 8)]
    assert general[0].requires_grad  # the general path, with autograd
    torch.testing.assert_close(estimate, torch.cat(general).detach(), rtol=1e-5, atol=1e-3)


def test_with_gradients_enabled_it_refuses_and_names_the_fix():
    decoder = _decoder(30, scale=1.0)
    evaluate = BernoulliMLPLogLikelihood(decoder, torch.zeros(2, 30))
    with pytest.raises(RuntimeError, match=r"torch.no_grad\(\).*model.likelihood.log_prob"):
        evaluate(torch.zeros(1, 2, 3))


def test_applies_only_to_the_exact_mlp_bernoulli_pair():
    assert applies_to(build_vae())
    assert not applies_to(build_vae(likelihood="gaussian"))
    assert not applies_to(build_vae(architecture="conv"))

    class ShiftedDecoder(MLPDecoder):
        def forward(self, z):
            return super().forward(z) + 1.0

    model = build_vae()
    model.decoder = ShiftedDecoder()
    assert not applies_to(model)
