# The two commands of the README. Each creates and fills .venv when it is missing.
.PHONY: demo test test-fast

demo:
	bash scripts/setup_env.sh demo
	.venv/bin/python -m dac_jax demo

test:
	bash scripts/setup_env.sh test
	DAC_JAX_REQUIRE_REFERENCE=1 .venv/bin/python -m pytest -q --durations=15

# the fast subset, for development
test-fast:
	bash scripts/setup_env.sh test
	.venv/bin/python -m pytest -q -m "not slow"
