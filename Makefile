# Two commands do everything on a fresh machine:
#   make demo   set up .venv and run the demo study on the built-in synthetic faces
#   make test   set up .venv (with test extras) and run the test suite
.PHONY: demo test lint bench study

demo:
	bash scripts/setup.sh
	RAY_USAGE_STATS_ENABLED=0 .venv/bin/btnet-lab sweep

test:
	bash scripts/setup.sh --test
	RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 .venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .

# Benchmarks (not part of the tests): each writes its own section of BENCHMARKS.md.
#   make bench                      all of them, full size (about ten minutes on 2 CPU cores)
#   make bench BENCH_ARGS=--quick   a tiny run of each, to check they work
bench:
	bash scripts/setup.sh
	RAY_USAGE_STATS_ENABLED=0 .venv/bin/python -m bench.run_all $(BENCH_ARGS)

# The study of docs/study.md: the paper's ablation on synthetic faces and on ORL, five seeds
# each (about 1.5 hours on 2 CPU cores), then its report tables and figures in docs/study/.
study:
	bash scripts/setup.sh --test
	bash scripts/study.sh $(STUDY_STORE)
