"""dac_jax.model.discriminator and its importer (dac_jax.weights.discriminator) against the original
``dac.model.discriminator.Discriminator`` (descript-audio-codec 1.0.0), seeded, saved the way the
original's train.py saves it (audiotools' ``save_to_folder``), read back with our importer.

Errors are ``max|ours - theirs| / max|theirs|`` per feature map (each map against its own scale),
bounded by 1e-4. Measured on this machine: DAC's discriminator (periods 2..11, STFT sizes
2048/1024/512) on a batch of 2 at 44.1 kHz, 0.3 s and 0.4 s, <= 2.2e-6 over all 8 x 6..26 maps; a
non-default configuration (multi-scale rates 1 and 2 at 24 kHz, periods 3 and 13, three custom
bands, an odd length) <= 1.7e-6; the GAN losses on DAC's discriminator <= 1.2e-7.

The original runs single-threaded here and our discriminators are compiled with
:func:`tests.train.fast_jit` (DAC's: ~6 s instead of ~25 s on the 2 shared cores).
"""

from __future__ import annotations

import functools

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from dac_jax.errors import AudioError, WeightsError
from dac_jax.model import discriminator as D
from dac_jax.model.discriminator import Discriminator, DiscriminatorConfig, init_discriminator
from dac_jax.nn.init import numpy_init
from dac_jax.nn.layers import weight_norm
from dac_jax.train import losses as L
from dac_jax.weights.discriminator import (
    DISCRIMINATOR_WEIGHTS,
    discriminator_parameters,
    discriminator_state_dict_to_variables,
    load_discriminator,
    read_discriminator_checkpoint,
    variables_to_discriminator_state_dict,
    write_discriminator_checkpoint,
)
from tests.audio import require_reference
from tests.train import estimate_batch, fast_jit, reference_batch, rel_err

torch = require_reference("torch")
original_module = require_reference("dac.model.discriminator")
Original = original_module.Discriminator

TOL = 1e-4  # relative to each map's scale; measured <= 2.2e-6
DAC = DiscriminatorConfig()
# every kind of sub-discriminator with other settings than DAC's: two multi-scale rates (1: no
# resampling; 2: julius' resample_frac), other periods, one STFT size with three custom bands
OTHER = DiscriminatorConfig(
    rates=(1, 2), periods=(3, 13), fft_sizes=(256,), sample_rate=24000, bands=((0.0, 0.3), (0.3, 0.6), (0.6, 1.0))
)
SMALL = DiscriminatorConfig(periods=(2,), fft_sizes=(128,))


@pytest.fixture(scope="module", autouse=True)
def torch_single_thread():
    """torch's idle OpenMP threads spin on the 2 shared cores and slow XLA's compiler ~2x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def original(config: DiscriminatorConfig, seed: int = 0):
    """The original ``Discriminator(**config kwargs)``, seeded, in eval mode."""
    torch.manual_seed(seed)
    return Original(**config.to_kwargs()).eval()


def state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _apply(config: DiscriminatorConfig, channels_last: bool = False):
    # parameters as an argument: closed over, XLA would constant-fold 170 MB of weights
    return fast_jit(lambda v, a: Discriminator(config, channels_last=channels_last).apply(v, a))


def run_original(model, audio: np.ndarray) -> list[list[np.ndarray]]:
    with torch.no_grad():
        return [[m.numpy() for m in maps] for maps in model(torch.from_numpy(audio))]


def assert_same_maps(ours, theirs, tol=TOL) -> float:
    """Same structure and shapes, every map within ``tol`` of its scale; returns the worst error."""
    assert len(ours) == len(theirs)
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a) == len(b), i
        for j, (m, n) in enumerate(zip(a, b)):
            m = np.asarray(m)
            assert m.shape == n.shape, (i, j, m.shape, n.shape)
            assert np.abs(n).max() > 0, (i, j)  # a map of zeros would prove nothing
            err = rel_err(m, n)
            assert err < tol, (i, j, err)
            worst = max(worst, err)
    return worst


@pytest.fixture(scope="module")
def dac_discriminator(tmp_path_factory):
    """DAC's discriminator, seeded, saved as the original's train.py does
    (``save_to_folder(f"{save_path}/{tag}")``), and ours loaded from that folder."""
    folder = tmp_path_factory.mktemp("latest")
    model = original(DAC)
    model.save_to_folder(str(folder), package=False)
    variables, config = load_discriminator(folder)
    yield model, variables, config, folder
    (folder / DISCRIMINATOR_WEIGHTS).unlink()  # 170 MB; pytest keeps its last 3 temporary folders


@functools.lru_cache(maxsize=None)
def dac_batch(n: int = 13230) -> np.ndarray:
    """``[2, 1, n]`` at 44.1 kHz: a speech-like signal and a sweep (13230 = 0.3 s, a multiple of
    2, 3, 5 and 7 (their full-period reflect pad), not of 11)."""
    return np.concatenate([reference_batch("speech", n, 44100)[:1], reference_batch("sweep", n, 44100)[1:]])


# ---------------------------------------------------------------------------------------------
# equivalence


def test_dacs_discriminator_every_feature_map_is_the_originals(dac_discriminator):
    model, variables, config, folder = dac_discriminator
    assert (folder / DISCRIMINATOR_WEIGHTS).is_file()
    assert config == DAC
    x = dac_batch()
    theirs = run_original(model, x)
    ours = _apply(DAC)(variables, x)
    assert [len(m) for m in theirs] == [6] * 5 + [26] * 3
    assert_same_maps(ours, theirs)


@pytest.mark.slow  # a second compilation of DAC's discriminator (~15 s)
def test_dacs_discriminator_on_a_length_no_period_divides(dac_discriminator):
    model, variables, _, _ = dac_discriminator
    x = dac_batch(17641)  # 0.4 s, = 13 * 23 * 59
    assert all(x.shape[-1] % p for p in DAC.periods)
    assert_same_maps(_apply(DAC)(variables, x), run_original(model, x))


def test_other_configuration_channels_last_odd_length():
    """Multi-scale sub-discriminators (rate 1, and rate 2 through julius' resampler), periods 3
    and 13, custom bands, 24 kHz, a length divisible by no period; our maps channels-last (as
    training uses them), moved back to the original's layout here."""
    model = original(OTHER, seed=1)
    variables = discriminator_state_dict_to_variables(model.state_dict(), OTHER)
    x = np.concatenate([reference_batch("speech", 7001, 24000)[:1], reference_batch("noise", 7001, 24000)[1:]])
    assert all(x.shape[-1] % p for p in OTHER.periods)
    ours = _apply(OTHER, True)(variables, x)
    theirs = run_original(model, x)
    assert [len(m) for m in theirs] == [6, 6, 7, 7, 16]
    assert_same_maps([[jnp.moveaxis(m, -1, 1) for m in maps] for maps in ours], theirs)
    # the MSD at rate 2 ran on half as many samples as the one at rate 1
    assert theirs[3][0].shape[-1] == theirs[2][0].shape[-1] // 2


def test_gradients_are_the_originals():
    """The gradients training takes (for the audio and every parameter) of a weighted sum of all
    feature maps equal torch's autograd through the original: the multi-band STFT convolutions'
    strided input gradient is taken in space-to-depth form (``strided_conv2d``), the rest by XLA.
    Bands of odd and even widths (33 and 17 bins at the top). Measured: audio 4.7e-7, parameters
    2.9e-6.

    The length matters: where a LeakyReLU input lies within float32 rounding of its kink, either
    implementation may take the other slope, and the audio gradient near it moves by ~1e-3 of its
    scale (with the 256-bin discriminator alone: at 4417 samples torch's float32 gradient is 3.9e-4
    from the float64 one around sample 3860, at 4410 ours 8.9e-4). None does in this case."""
    config = DiscriminatorConfig(periods=(2, 3), fft_sizes=(256, 128), sample_rate=44100)
    model = original(config, seed=2)
    variables = discriminator_state_dict_to_variables(model.state_dict(), config)
    x = reference_batch("speech", 4410, 44100)
    with torch.no_grad():
        shapes = [[tuple(m.shape) for m in maps] for maps in model(torch.from_numpy(x))]
    rng = np.random.default_rng(0)
    weights = [[rng.standard_normal(shape).astype(np.float32) for shape in maps] for maps in shapes]

    def loss(params, audio):
        maps = Discriminator(config).apply({"params": params}, audio)
        return sum(jnp.sum(m * w) for ms, ws in zip(maps, weights) for m, w in zip(ms, ws))

    d_params, d_audio = fast_jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], jnp.asarray(x))
    x_t = torch.from_numpy(x).requires_grad_()
    maps_t = model(x_t)
    sum((m * torch.from_numpy(w)).sum() for ms, ws in zip(maps_t, weights) for m, w in zip(ms, ws)).backward()
    assert rel_err(d_audio, x_t.grad.numpy()) < 5e-6
    ours = variables_to_discriminator_state_dict({"params": d_params})
    theirs = {k: p.grad.numpy() for k, p in model.named_parameters()}
    assert sorted(ours) == sorted(theirs)
    assert max(rel_err(ours[k], theirs[k]) for k in theirs) < 3e-5


@pytest.mark.parametrize("which", ["dac", "other"])
def test_shortest_input_is_the_originals(which, dac_discriminator):
    """Both refuse what their reflect pads cannot take (DAC's: 897 samples, the 2048-point STFT's
    padding); ours says so before tracing any conv."""
    config = DAC if which == "dac" else OTHER
    model = dac_discriminator[0] if which == "dac" else original(OTHER)
    n = config.min_length()
    with torch.no_grad():
        model(torch.zeros(1, 1, n))
        with pytest.raises(RuntimeError, match="Padding size"):
            model(torch.zeros(1, 1, n - 1))
    variables = jax.eval_shape(lambda: init_discriminator(config, jax.random.key(0)))
    jax.eval_shape(Discriminator(config).apply, variables, jnp.zeros((1, 1, n)))
    with pytest.raises(AudioError, match=f"at least {n} samples"):
        jax.eval_shape(Discriminator(config).apply, variables, jnp.zeros((1, 1, n - 1)))
    with pytest.raises(AudioError, match=r"mono audio \[B, 1, T\]"):
        jax.eval_shape(Discriminator(config).apply, variables, jnp.zeros((1, 2, n)))
    if which == "dac":
        assert n == 897


@pytest.mark.slow  # four runs of the original's full discriminator (~5 s)
def test_gan_losses_with_dacs_discriminator(dac_discriminator):
    """``GANLoss(D)`` with DAC's own discriminator (the original computing its outputs) against
    our losses on our discriminator's outputs (same compiled function as above)."""
    from audiotools import AudioSignal
    from dac.nn.loss import GANLoss

    model, variables, _, _ = dac_discriminator
    real = dac_batch()
    fake = estimate_batch(real)
    sf, sr = AudioSignal(torch.from_numpy(fake), 44100), AudioSignal(torch.from_numpy(real), 44100)
    gan = GANLoss(model)
    with torch.no_grad():
        d_theirs = float(gan.discriminator_loss(sf, sr))
        g_theirs, fm_theirs = (float(v) for v in gan.generator_loss(sf, sr))
    d_fake, d_real = _apply(DAC)(variables, fake), _apply(DAC)(variables, real)
    losses = fast_jit(lambda f, r: (L.discriminator_loss(f, r), L.generator_loss(f, r)))
    d_ours, (g_ours, fm_ours) = losses(d_fake, d_real)
    assert rel_err(float(d_ours), d_theirs) < 1e-4
    assert rel_err(float(g_ours), g_theirs) < 1e-4
    assert rel_err(float(fm_ours), fm_theirs) < 1e-4


# ---------------------------------------------------------------------------------------------
# the importer: key map, strictness, both key styles, files


def test_key_map_comes_from_the_module_tree_and_is_the_originals(dac_discriminator):
    model = dac_discriminator[0]
    expected = discriminator_parameters(DAC)
    theirs = state_dict(model)
    assert len(theirs) == 324
    assert {k: shape for k, (_, shape) in expected.items()} == {k: v.shape for k, v in theirs.items()}
    path, _ = expected["discriminators.5.band_convs.0.1.0.weight_v"]
    assert path == ("discriminators_5", "band_convs_0", "1", "0", "weight_v")
    for config in (OTHER, SMALL):
        keys = set(discriminator_parameters(config))
        assert keys == set(Original(**config.to_kwargs()).state_dict())


def test_missing_extra_and_misshaped_keys_are_all_named(dac_discriminator):
    sd = state_dict(dac_discriminator[0])
    del sd["discriminators.3.convs.2.0.bias"]
    sd["discriminators.8.conv_post.bias"] = np.zeros(1, np.float32)
    sd["discriminators.6.band_convs.4.0.0.weight_v"] = np.zeros((32, 2, 3, 8), np.float32)
    with pytest.raises(WeightsError) as err:
        discriminator_state_dict_to_variables(sd, DAC, source="my.pth")
    text = str(err.value)
    assert text.startswith("my.pth does not fit the discriminator")
    assert "missing keys (1):\n    discriminators.3.convs.2.0.bias" in text
    assert "unexpected keys (1):\n    discriminators.8.conv_post.bias" in text
    assert "discriminators.6.band_convs.4.0.0.weight_v: file (32, 2, 3, 8), model (32, 2, 3, 9)" in text


def test_parametrizations_key_style_gives_the_same_weights():
    """The original re-wrapped with PyTorch >= 2.1's weight norm (``parametrizations.weight.
    original0/1`` keys) holds the same effective weights (``v`` becomes the weight itself); its
    ``g`` are first moved off ``|v|`` (as training does), so that ``v`` differs between the styles."""
    model = original(SMALL)
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight_g"):
                module.weight_g.mul_(0.5 + 1.5 * torch.rand(module.weight_g.shape, generator=rng))
    legacy = state_dict(model)
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
            torch.nn.utils.parametrizations.weight_norm(module)
    new = state_dict(model)
    assert "discriminators.0.convs.0.0.parametrizations.weight.original1" in new
    assert not any(k.endswith("weight_v") for k in new)
    a = traverse_util.flatten_dict(discriminator_state_dict_to_variables(legacy, SMALL)["params"])
    b = traverse_util.flatten_dict(discriminator_state_dict_to_variables(new, SMALL)["params"])
    assert a.keys() == b.keys()
    for path in a:
        if path[-1] == "weight_v":
            g = path[:-1] + ("weight_g",)
            w_a, w_b = weight_norm(a[path], a[g]), weight_norm(b[path], b[g])
            assert rel_err(w_b, w_a) < 1e-6, path
            assert rel_err(b[path], a[path]) > 1e-2  # v itself differs: the test sees both styles
        elif path[-1] == "bias":
            np.testing.assert_array_equal(a[path], b[path])
    # one conv in both styles at once is refused
    both = dict(new, **{"discriminators.0.convs.0.0.weight_v": legacy["discriminators.0.convs.0.0.weight_v"]})
    with pytest.raises(WeightsError, match="both weight-norm styles"):
        discriminator_state_dict_to_variables(both, SMALL)


def test_export_round_trip_and_the_original_loads_our_file(tmp_path):
    """variables -> state dict -> variables is exact; a file we write is read by the original's own
    ``Discriminator.load`` into the same tensors (it loads non-strictly, so compare all of them)."""
    variables = init_discriminator(OTHER, seed=5)
    sd = variables_to_discriminator_state_dict(variables, OTHER)
    back = discriminator_state_dict_to_variables(sd, OTHER)
    flat_a, flat_b = traverse_util.flatten_dict(variables), traverse_util.flatten_dict(back)
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path], flat_b[path])

    path = write_discriminator_checkpoint(tmp_path, variables, OTHER)
    assert path == tmp_path / DISCRIMINATOR_WEIGHTS
    loaded = Original.load(str(path))
    theirs = state_dict(loaded)
    assert theirs.keys() == sd.keys()
    for key in sd:
        np.testing.assert_array_equal(theirs[key], sd[key])
    again, config = load_discriminator(path)
    assert config == OTHER  # our files record the real configuration


def test_the_originals_files_record_default_kwargs(tmp_path):
    """The original's save records its constructor DEFAULTS (it keeps no argument as an
    attribute): a non-default discriminator's file claims DAC's configuration. Loading it without
    a config fails, naming the keys and the cause; with the config it loads."""
    model = original(SMALL)
    model.save_to_folder(str(tmp_path), package=False)
    file = tmp_path / DISCRIMINATOR_WEIGHTS
    kwargs = torch.load(file, weights_only=True)["metadata"]["kwargs"]
    assert kwargs["periods"] == [2, 3, 5, 7, 11] and kwargs["fft_sizes"] == [2048, 1024, 512]
    with pytest.raises(WeightsError) as err:
        load_discriminator(tmp_path)
    text = str(err.value)
    assert str(file) in text and "missing keys" in text and "discriminators.1.convs.0.0.bias" in text
    assert "unexpected keys" in text and "discriminators.1.band_convs.0.0.0.bias" in text
    assert "discriminators.1.conv_post.weight_v: file (1, 32, 3, 3), model (1, 1024, 3, 1)" in text
    assert "pass that DiscriminatorConfig" in text
    variables, config = load_discriminator(tmp_path / "discriminator", SMALL)
    assert config == SMALL
    sd = state_dict(model)
    for key, value in variables_to_discriminator_state_dict(variables, SMALL).items():
        np.testing.assert_array_equal(value, sd[key])


def test_bare_and_training_checkpoint_files(tmp_path):
    sd = state_dict(original(SMALL))
    tensors = {k: torch.from_numpy(v) for k, v in sd.items()}
    bare = tmp_path / "bare.pth"
    torch.save(tensors, bare)
    with pytest.raises(WeightsError, match=r"bare\.pth: no metadata\.kwargs .* pass a config"):
        load_discriminator(bare)
    variables, _ = load_discriminator(bare, SMALL)
    assert variables_to_discriminator_state_dict(variables).keys() == sd.keys()
    # a training checkpoint holding the discriminator's state dict (DAC-VAE's checkpoint.pt)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"generator": {}, "discriminator": tensors, "step": 3}, ckpt)
    ckpt_read = read_discriminator_checkpoint(ckpt, SMALL)
    assert ckpt_read.state_dict.keys() == sd.keys() and ckpt_read.path == ckpt


def test_unreadable_files_and_folders_are_named(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_discriminator(junk)
    with pytest.raises(WeightsError, match="nothing.pth: no such file or folder"):
        load_discriminator(tmp_path / "nothing.pth")
    with pytest.raises(WeightsError, match=r"no discriminator weights in this folder \(looked for discriminator/weights.pth"):
        load_discriminator(tmp_path)
    (tmp_path / "discriminator").mkdir()
    torch.save({"state_dict": {"a": 1}, "metadata": {"kwargs": {}}}, tmp_path / DISCRIMINATOR_WEIGHTS)
    with pytest.raises(WeightsError, match="state dict entry 'a' is a int, not a tensor"):
        load_discriminator(tmp_path)


# ---------------------------------------------------------------------------------------------
# initialisation


def _check_distribution(name: str, ours: np.ndarray, theirs: np.ndarray, bound: float) -> None:
    """Both uniform on ``+-bound``: the same support, filled, the same spread, centred."""
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32, name
    for a in (ours, theirs):
        assert np.abs(a).max() <= bound * (1 + 1e-6), name
        if a.size >= 64:
            assert np.abs(a).max() > 0.9 * bound, name
            np.testing.assert_allclose(a.std(), bound / np.sqrt(3), rtol=0.25, err_msg=name)
            assert abs(a.mean()) < 5 * bound / np.sqrt(3 * a.size), name


def _check_g_is_the_norm_of_v(flat: dict) -> None:
    for path, g in flat.items():
        if path[-1] == "weight_g":
            v = np.asarray(flat[path[:-1] + ("weight_v",)])
            assert g.shape == (v.shape[0],) + (1,) * (v.ndim - 1)
            np.testing.assert_allclose(np.asarray(g).reshape(-1), np.sqrt((v.reshape(len(v), -1) ** 2).sum(1)), rtol=1e-5)


def test_numpy_init_is_the_originals_init(dac_discriminator):
    """Every tensor of DAC's freshly built original discriminator (torch's default conv init,
    which it keeps) and of ours drawn with numpy: same keys, shapes, uniform bounds, spread; g = |v|."""
    theirs = state_dict(dac_discriminator[0])  # never trained: the original's own init
    variables = init_discriminator(DAC, seed=0)
    ours = variables_to_discriminator_state_dict(variables, DAC)
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        module, leaf = key.rsplit(".", 1)
        v = theirs[f"{module}.weight_v"]
        if leaf in ("weight_v", "bias"):
            _check_distribution(key, value, theirs[key], 1 / np.sqrt(np.prod(v.shape[1:])))
    _check_g_is_the_norm_of_v(traverse_util.flatten_dict(variables["params"]))
    # seeded: the same seed gives the same numbers, another seed others
    a = init_discriminator(SMALL, seed=1)["params"]["discriminators_0"]["convs_0"]["0"]["weight_v"]
    b = init_discriminator(SMALL, seed=1)["params"]["discriminators_0"]["convs_0"]["0"]["weight_v"]
    c = init_discriminator(SMALL, seed=2)["params"]["discriminators_0"]["convs_0"]["0"]["weight_v"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class _EveryConv(nn.Module):
    """One ``WNConv`` per spec (each run on one sample)."""

    specs: tuple

    @nn.compact
    def __call__(self):
        for i, spec in enumerate(self.specs):
            D.WNConv(spec, name=f"conv_{i}")(jnp.zeros((1,) + (1,) * len(spec.kernel) + (spec.in_channels,)))


def test_numpy_init_draws_the_flax_initialisers_distributions():
    """The Flax initialisers and ``numpy_params`` (what an int seed uses) give the same tree, shapes
    and distributions: the tree of a whole discriminator with every kind of sub-discriminator
    (traced, nothing compiled), and the draws of each kind of conv it holds (all its parameters
    are ``WNConv``'s) against the Flax initialisers run under ``jit``. (DAC's own convs are also
    checked against the original's draws above.)"""
    dummy = jnp.zeros((1, 1, OTHER.min_length()))
    flax_tree = jax.eval_shape(Discriminator(OTHER).init, jax.random.key(0), dummy)
    ours = init_discriminator(OTHER, seed=0)
    assert jax.tree.structure(ours) == jax.tree.structure(flax_tree)
    assert jax.tree.leaves(jax.tree.map(lambda a: (a.shape, a.dtype), ours)) == jax.tree.leaves(
        jax.tree.map(lambda a: (a.shape, a.dtype), flax_tree)
    )

    # one conv of each kind: 2-D (5, 1) strided and (3, 1) post (MPD), 1-D plain and grouped (MSD),
    # 2-D (3, 9) and (3, 3) post (MRD); all 17 distinct shapes would take 4x the compilation
    specs = (D.MPD_CONVS[1], D.MPD_POST, D.MSD_CONVS[0], D.MSD_CONVS[2], D.MRD_CONVS[0], D.MRD_POST)
    assert specs[3].groups == 16
    # threefry's initialisers take 5x longer to compile than rbg's
    flax_vars = jax.jit(_EveryConv(specs).init)(jax.random.key(3, impl="rbg"))
    flax_flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(flax_vars).items()}
    ours = traverse_util.flatten_dict(numpy_init(_EveryConv(specs), seed=3))
    assert ours.keys() == flax_flat.keys()
    for path, value in ours.items():
        assert isinstance(value, np.ndarray)
        if path[-1] in ("weight_v", "bias"):
            v = flax_flat[path[:-1] + ("weight_v",)]
            _check_distribution("/".join(path), value, flax_flat[path], 1 / np.sqrt(np.prod(v.shape[1:])))
    _check_g_is_the_norm_of_v(ours)
    _check_g_is_the_norm_of_v(flax_flat)


def test_width_narrows_hidden_channels_only():
    """dac-jax's ``width`` extension: hidden channels scale, inputs and logits keep their sizes,
    the output structure is the original's, and such a model cannot be exported to the original."""
    import jax
    import jax.numpy as jnp

    from dac_jax.model.discriminator import Discriminator, DiscriminatorConfig, init_discriminator

    config = DiscriminatorConfig(periods=(2,), rates=(2,), fft_sizes=(256,), sample_rate=16000, width=0.125)
    params = init_discriminator(config, seed=0)["params"]
    shapes = {"/".join(k.key for k in path): leaf.shape
              for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert shapes["discriminators_0/convs_0/0/weight_v"] == (4, 1, 5, 1)
    assert shapes["discriminators_0/convs_4/0/weight_v"] == (128, 128, 5, 1)
    assert shapes["discriminators_0/conv_post/weight_v"] == (1, 128, 3, 1)
    assert shapes["discriminators_1/convs_1/0/weight_v"] == (8, 2, 41)  # 2 -> 8 channels, 4 groups -> 1
    assert shapes["discriminators_2/band_convs_0/0/0/weight_v"] == (4, 2, 3, 9)
    audio = jnp.asarray(np.random.default_rng(0).standard_normal((2, 1, 3200)) * 0.1, jnp.float32)
    maps = jax.jit(Discriminator(config).apply)({"params": params}, audio)
    assert [len(m) for m in maps] == [6, 7, 26] and maps[0][-1].shape[1] == 1
    with pytest.raises(ValueError, match="only width 1 exports"):
        config.to_kwargs()
