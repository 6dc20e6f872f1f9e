#!/usr/bin/env bash
# Install the original PyTorch DAC (the reference for the equivalence tests) into a virtualenv,
# as DAC_SPEC section 7 describes:
# - torch is pinned to 2.13.0 (the CPU build); nothing here may pull another torch;
# - descript-audio-codec, descript-audiotools and torchaudio go in with --no-deps: audiotools pins
#   protobuf<3.20 (breaks TensorFlow) and torchaudio 2.11 pins another torch;
# - the torchaudio wheel is a CUDA build whose compiled extensions fail to load on CPU torch; without
#   its lib/*.so it imports as pure Python, which is all DAC's model, losses and discriminator use.
# Their pure-Python needs come from the `dev` extra of pyproject.toml.
set -euo pipefail
venv=${1:-.venv}
py="$venv/bin/python"

"$py" -m pip install -q --disable-pip-version-check torch==2.13.0
"$py" -m pip install -q --disable-pip-version-check --no-deps \
    descript-audio-codec==1.0.0 descript-audiotools==0.7.2 torchaudio==2.11.0

site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -f "$site"/torchaudio/lib/*.so

# fail here, not in the middle of the tests, if the reference does not work
"$py" - <<'PY'
import warnings
warnings.filterwarnings("ignore")
import torch, dac
assert torch.__version__.startswith("2.13.0"), torch.__version__
model = dac.DAC(encoder_dim=4, encoder_rates=[2, 4], decoder_dim=16, decoder_rates=[4, 2], n_codebooks=2, codebook_size=16)
assert model.delay > 0
print(f"reference: dac {dac.__version__} on torch {torch.__version__}")
PY
