"""The residual vector quantiser against the original ``dac.nn.quantize`` (weights copied, eval mode).

Our quantiser is channels-last (``z [B, T, D]``, ``latents [B, T, N * d]``); the original is
channels-first. Codes are ``[B, N, T]`` in both.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dac_jax.nn.quantize import ResidualVectorQuantize, VectorQuantize, dropout_counts, nearest_code
from dac_jax.weights.torch_format import torch_key
from tests.requires import require_reference

SMALL = dict(input_dim=32, n_codebooks=4, codebook_size=64, codebook_dim=8)
REAL = dict(input_dim=1024, n_codebooks=9, codebook_size=1024, codebook_dim=8)


def _rel_close(ours, theirs, tol=1e-5):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = max(float(np.max(np.abs(theirs))), 1e-12)
    err = float(np.max(np.abs(ours - theirs)))
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol} * {scale:.3g}"


def _cf(x) -> np.ndarray:
    """Channels-last -> channels-first (numpy)."""
    return np.asarray(x).transpose(0, 2, 1)


def _torch_rvq(sizes: dict, seed: int = 0):
    torch = require_reference("torch")
    dac_quantize = require_reference("dac.nn.quantize")
    torch.manual_seed(seed)
    rvq = dac_quantize.ResidualVectorQuantize(**sizes).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # move g away from ||v|| so weight norm is exercised
        for name, p in rvq.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
    return rvq


def _variables(module, torch_module, x_shape) -> dict:
    """Our variables from the original's state dict, by the importer's key rule."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(x_shape, jnp.float32))
    flat = traverse_util.flatten_dict(shapes["params"])
    state = {k: v.detach().numpy() for k, v in torch_module.state_dict().items()}
    assert {torch_key(p) for p in flat} == set(state)
    params = {p: jnp.asarray(state[torch_key(p)]) for p in flat}
    for p, s in flat.items():
        assert params[p].shape == s.shape, p
    return {"params": traverse_util.unflatten_dict(params)}


@functools.partial(jax.jit, static_argnames=("module", "n_quantizers", "train"))
def _rvq(module, variables, z, n_quantizers=None, train=False, rng=None):
    rngs = {"dropout": rng} if train else None
    return module.apply(variables, z, n_quantizers, train, rngs=rngs)


@functools.partial(jax.jit, static_argnames=("module", "method"))
def _call(module, variables, x, method):
    return module.apply(variables, x, method=getattr(type(module), method))


def _run_torch_rvq(rvq, z_cl: np.ndarray, n_quantizers=None) -> dict:
    torch = require_reference("torch")
    with torch.no_grad():
        z, codes, latents, commitment, codebook = rvq(torch.from_numpy(_cf(z_cl).copy()), n_quantizers)
    return dict(
        z=z.numpy(), codes=codes.numpy(), latents=latents.numpy(),
        commitment=commitment.numpy(), codebook=codebook.numpy(),
    )


@pytest.fixture(scope="module")
def small():
    """(our module, variables, the original, input z [B, T, D] channels-last)."""
    reference = _torch_rvq(SMALL)
    module = ResidualVectorQuantize(**SMALL)
    z = np.random.default_rng(0).normal(size=(3, 20, SMALL["input_dim"])).astype(np.float32)
    return module, _variables(module, reference, z.shape), reference, z


@pytest.fixture(scope="module")
def small_jax():
    """(our module, its own initial variables, input z [B, T, D]): no reference involved."""
    module = ResidualVectorQuantize(**SMALL)
    z = np.random.default_rng(0).normal(size=(3, 20, SMALL["input_dim"])).astype(np.float32)
    return module, module.init(jax.random.key(5), jnp.asarray(z)), z


# --------------------------------------------------------------------------------------------
# Eval mode against the original
# --------------------------------------------------------------------------------------------


def _check_forward(module, variables, reference, z, n_quantizers):
    ours = _rvq(module, variables, jnp.asarray(z), n_quantizers)
    theirs = _run_torch_rvq(reference, z, n_quantizers)
    n = module.n_codebooks if n_quantizers is None else n_quantizers
    assert ours.codes.shape == (z.shape[0], n, z.shape[1])
    np.testing.assert_array_equal(np.asarray(ours.codes), theirs["codes"])
    _rel_close(_cf(ours.z), theirs["z"])
    _rel_close(_cf(ours.latents), theirs["latents"])
    _rel_close(ours.commitment_loss, theirs["commitment"])
    _rel_close(ours.codebook_loss, theirs["codebook"])
    return ours, theirs


@pytest.mark.parametrize("n_quantizers", [None, 1, 2, 3, 4])
def test_rvq_matches_original(small, n_quantizers):
    module, variables, reference, z = small
    _check_forward(module, variables, reference, z, n_quantizers)


def test_rvq_real_sizes_match_original():
    torch = require_reference("torch")
    reference = _torch_rvq(REAL, seed=1)
    module = ResidualVectorQuantize(**REAL)
    z = np.random.default_rng(1).normal(size=(2, 6, REAL["input_dim"])).astype(np.float32)
    variables = _variables(module, reference, z.shape)
    for n_quantizers in (None, 3):
        ours, _ = _check_forward(module, variables, reference, z, n_quantizers)
    codes = jnp.asarray(ours.codes)  # 3 codebooks
    z_q, z_p = _call(module, variables, codes, "from_codes")
    with torch.no_grad():
        tz, tz_p, _ = reference.from_codes(torch.from_numpy(np.array(codes)).long())
    _rel_close(_cf(z_q), tz.numpy())
    _rel_close(_cf(z_p), tz_p.numpy())


@pytest.mark.parametrize("n_codebooks", [1, 2, 4])
def test_from_codes_matches_original(small, n_codebooks):
    torch = require_reference("torch")
    module, variables, reference, z = small
    codes = np.random.default_rng(n_codebooks).integers(0, SMALL["codebook_size"], size=(3, n_codebooks, 20))
    z_q, z_p = _call(module, variables, jnp.asarray(codes, jnp.int32), "from_codes")
    with torch.no_grad():
        tz, tz_p, _ = reference.from_codes(torch.from_numpy(codes))
    _rel_close(_cf(z_q), tz.numpy())
    _rel_close(_cf(z_p), tz_p.numpy())


def test_from_codes_inverts_forward(small_jax):
    """from_codes(codes) reproduces the forward pass's z (the original's property too)."""
    module, variables, z = small_jax
    ours = _rvq(module, variables, jnp.asarray(z))
    z_q, _ = _call(module, variables, ours.codes, "from_codes")
    _rel_close(z_q, ours.z)


@pytest.mark.parametrize("width", [8, 16, 19, 32, 40])
def test_from_latents_matches_original(small, width):
    """Latents of ``width`` channels: the whole codebooks they hold are used, the rest ignored."""
    torch = require_reference("torch")
    module, variables, reference, z = small
    latents = np.random.default_rng(width).normal(size=(3, 20, width)).astype(np.float32)
    z_q, z_p, codes = _call(module, variables, jnp.asarray(latents), "from_latents")
    with torch.no_grad():
        tz, tz_p, tcodes = reference.from_latents(torch.from_numpy(_cf(latents).copy()))
    np.testing.assert_array_equal(np.asarray(codes), tcodes.numpy())
    assert codes.shape[1] == min(width // 8, SMALL["n_codebooks"])
    _rel_close(_cf(z_q), tz.numpy())
    _rel_close(_cf(z_p), tz_p.numpy())


def test_from_latents_of_forward_latents(small_jax):
    """The forward pass's latents give back its codes and z."""
    module, variables, z = small_jax
    ours = _rvq(module, variables, jnp.asarray(z))
    z_q, _, codes = _call(module, variables, ours.latents, "from_latents")
    np.testing.assert_array_equal(np.asarray(codes), np.asarray(ours.codes))
    _rel_close(z_q, ours.z)


# --------------------------------------------------------------------------------------------
# Quantizer dropout (training mode)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dropout_setup():
    reference = _torch_rvq(SMALL, seed=2)
    module = ResidualVectorQuantize(**SMALL, quantizer_dropout=0.5)
    z = np.random.default_rng(2).normal(size=(8, 12, SMALL["input_dim"])).astype(np.float32)
    variables = _variables(module, reference, z.shape)
    # the original in eval mode with k codebooks, k = 1..N
    evals = {k: _run_torch_rvq(reference, z, k) for k in range(1, SMALL["n_codebooks"] + 1)}
    return module, variables, reference, z, evals


def _matching_k(z_item: np.ndarray, evals: dict, item: int) -> list[int]:
    """The k for which the original's eval output with k codebooks equals this item's z."""
    out = []
    for k, e in evals.items():
        ref = e["z"][item]
        if np.max(np.abs(z_item - ref)) <= 1e-5 * np.max(np.abs(ref)):
            out.append(k)
    return out


def test_quantizer_dropout_follows_original_mask(dropout_setup):
    module, variables, reference, z, evals = dropout_setup
    n = SMALL["n_codebooks"]
    batch = z.shape[0]
    n_dropout = int(batch * 0.5)
    used = []
    for seed in range(6):
        out = _rvq(module, variables, jnp.asarray(z), train=True, rng=jax.random.key(seed))
        z_out = _cf(out.z)
        ks = []
        for item in range(batch):
            matches = _matching_k(z_out[item], evals, item)
            assert len(matches) == 1, (seed, item, matches)
            ks.append(matches[0])
        # the last items always use every codebook
        assert ks[n_dropout:] == [n] * (batch - n_dropout), ks
        used.append(tuple(ks[:n_dropout]))
        # codes and latents always hold every codebook, whatever the mask
        np.testing.assert_array_equal(np.asarray(out.codes), evals[n]["codes"])
        _rel_close(_cf(out.latents), evals[n]["latents"])
        # losses: each item's losses summed over its own codebooks, averaged over the batch
        per_item = [_run_torch_rvq(reference, z[b : b + 1], k) for b, k in enumerate(ks)]
        _rel_close(out.commitment_loss, np.mean([p["commitment"] for p in per_item]))
        _rel_close(out.codebook_loss, np.mean([p["codebook"] for p in per_item]))
    # the counts are random: different keys give different masks
    assert len(set(used)) > 1, used
    assert any(k < n for ks in used for k in ks), used


def test_no_quantizer_dropout_uses_every_codebook(dropout_setup):
    _, variables, _, z, evals = dropout_setup
    module = ResidualVectorQuantize(**SMALL, quantizer_dropout=0.0)
    out = _rvq(module, variables, jnp.asarray(z), train=True, rng=jax.random.key(0))
    full = evals[SMALL["n_codebooks"]]
    _rel_close(_cf(out.z), full["z"])
    np.testing.assert_array_equal(np.asarray(out.codes), full["codes"])
    _rel_close(out.commitment_loss, full["commitment"])
    _rel_close(out.codebook_loss, full["codebook"])


def test_dropout_counts():
    n, batch = 4, 8
    draws = []
    for seed in range(8):
        counts = np.asarray(dropout_counts(jax.random.key(seed), batch, n, 0.5))
        assert counts.shape == (batch,)
        assert np.all((counts[:4] >= 1) & (counts[:4] <= n)), counts
        assert np.all(counts[4:] == n + 1), counts
        draws.append(tuple(counts[:4]))
    assert len(set(draws)) > 1
    assert set(np.concatenate(draws)) == set(range(1, n + 1))  # every count occurs
    # int(batch * dropout) items are dropped, as in the original
    assert np.all(np.asarray(dropout_counts(jax.random.key(0), 7, n, 0.5))[3:] == n + 1)
    assert np.all(np.asarray(dropout_counts(jax.random.key(0), batch, n, 0.0)) == n + 1)


# --------------------------------------------------------------------------------------------
# Straight-through estimator and loss gradients, against the original's autograd
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vq_pair():
    torch = require_reference("torch")
    dac_quantize = require_reference("dac.nn.quantize")
    torch.manual_seed(3)
    reference = dac_quantize.VectorQuantize(SMALL["input_dim"], SMALL["codebook_size"], SMALL["codebook_dim"])
    module = VectorQuantize(SMALL["input_dim"], SMALL["codebook_size"], SMALL["codebook_dim"])
    z = np.random.default_rng(3).normal(size=(2, 10, SMALL["input_dim"])).astype(np.float32)
    return module, _variables(module, reference, z.shape), reference, z


def test_straight_through_gradient(vq_pair):
    torch = require_reference("torch")
    module, variables, reference, z = vq_pair

    def through_vq(x):
        return jnp.sum(module.apply(variables, x).z_q)

    def projections_only(x):
        return jnp.sum(module.apply(variables, x, method=lambda m, x: m.out_proj(m.in_proj(x))))

    grad = jax.jit(jax.grad(through_vq))(jnp.asarray(z))
    # the quantisation is transparent to gradients: the same as in_proj then out_proj
    _rel_close(grad, jax.jit(jax.grad(projections_only))(jnp.asarray(z)), 1e-6)
    # and the same as the original's autograd
    zt = torch.from_numpy(_cf(z).copy()).requires_grad_(True)
    reference(zt)[0].sum().backward()
    _rel_close(_cf(grad), zt.grad.numpy())


def test_loss_gradients(vq_pair):
    torch = require_reference("torch")
    module, variables, reference, z = vq_pair

    def losses(params, x):
        out = module.apply({"params": params}, x)
        return jnp.sum(out.commitment_loss), jnp.sum(out.codebook_loss)

    params, x = variables["params"], jnp.asarray(z)
    g_commit = jax.jit(jax.grad(lambda p: losses(p, x)[0]))(params)
    g_book = jax.jit(jax.grad(lambda p: losses(p, x)[1]))(params)
    # the codebook loss trains the codebook only; the commitment loss trains the encoder side only
    assert np.any(np.asarray(g_book["codebook"]["weight"]) != 0)
    assert np.all(np.asarray(g_commit["codebook"]["weight"]) == 0)
    assert np.all(np.asarray(g_book["in_proj"]["weight_v"]) == 0)
    assert np.any(np.asarray(g_commit["in_proj"]["weight_v"]) != 0)
    # against the original's autograd
    reference.zero_grad()
    zt = torch.from_numpy(_cf(z).copy())
    _, commitment, codebook, _, _ = reference(zt)
    codebook.sum().backward()
    _rel_close(g_book["codebook"]["weight"], reference.codebook.weight.grad.numpy())
    reference.zero_grad()
    _, commitment, codebook, _, _ = reference(zt)
    commitment.sum().backward()
    for name in ("weight_v", "weight_g", "bias"):
        _rel_close(g_commit["in_proj"][name], getattr(reference.in_proj, name).grad.numpy())


# --------------------------------------------------------------------------------------------
# Nearest code
# --------------------------------------------------------------------------------------------


def _nearest_code_case():
    rng = np.random.default_rng(4)
    encodings = rng.normal(size=(500, 8)).astype(np.float32) * rng.uniform(0.1, 10, size=(500, 1)).astype(np.float32)
    codebook = rng.normal(size=(64, 8)).astype(np.float32)
    return encodings, codebook, np.asarray(nearest_code(jnp.asarray(encodings), jnp.asarray(codebook)))


def test_nearest_code_matches_brute_force():
    encodings, codebook, ours = _nearest_code_case()

    e = encodings.astype(np.float64)
    c = codebook.astype(np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    dist = (e**2).sum(1, keepdims=True) - 2 * e @ c.T + (c**2).sum(1)[None]
    expected = dist.argmin(axis=1)
    top2 = np.sort(dist, axis=1)[:, :2]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # ties closer than float32 rounding may go either way
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(ours[clear], expected[clear])
    # batch dimensions are kept
    batched = nearest_code(jnp.asarray(encodings.reshape(5, 100, 8)), jnp.asarray(codebook))
    np.testing.assert_array_equal(np.asarray(batched).reshape(-1), ours)


def test_nearest_code_matches_original():
    """The original's lookup (same float32 arithmetic) agrees everywhere, ties included."""
    torch = require_reference("torch")
    dac_quantize = require_reference("dac.nn.quantize")
    encodings, codebook, ours = _nearest_code_case()
    vq = dac_quantize.VectorQuantize(8, 64, 8)
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.from_numpy(codebook))
        _, theirs = vq.decode_latents(torch.from_numpy(encodings.T[None].copy()))
    np.testing.assert_array_equal(ours, theirs.numpy()[0])
