# The two commands of the README. Each creates and fills .venv when it is missing.
# The tests run in 2 worker processes (pytest-xdist), a file per worker at a time: much of the suite
# is single-threaded tracing, compiling and process start-up, which two workers overlap.
.PHONY: demo test test-fast

demo:
	bash scripts/setup_env.sh demo
	.venv/bin/python -m dac_jax demo

test:
	bash scripts/setup_env.sh test
	DAC_JAX_REQUIRE_REFERENCE=1 .venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=25

# the fast subset, for development
test-fast:
	bash scripts/setup_env.sh test
	.venv/bin/python -m pytest -q -m "not slow"
