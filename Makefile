# The two commands of the README. Each creates and fills .venv when it is missing.
# The full-size (slow) tests run in one process: two of them at once can exceed 24 GB. The rest run in
# 2 pytest-xdist workers, a file per worker at a time (single-threaded tracing and process start-up overlap).
.PHONY: demo test test-fast

demo:
	bash scripts/setup_env.sh demo
	.venv/bin/python -m dac_jax demo

test:
	bash scripts/setup_env.sh test
	DAC_JAX_REQUIRE_REFERENCE=1 .venv/bin/python -m pytest -q -m slow --durations=15
	DAC_JAX_REQUIRE_REFERENCE=1 .venv/bin/python -m pytest -q -m "not slow" -n 2 --dist loadfile --durations=15

# the fast subset, for development
test-fast:
	bash scripts/setup_env.sh test
	.venv/bin/python -m pytest -q -m "not slow"
