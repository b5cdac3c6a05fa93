# BTDNet: `make test` and `make demo` set everything up on a fresh machine (see README.md).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# NLTK's POS tagger: $NLTK_DATA if set, else the copy tools/install_env.sh downloads into the venv.
export NLTK_DATA ?= $(abspath $(VENV))/nltk_data
PYTEST_ARGS ?=

.PHONY: install lint test demo clean

install: $(VENV)/.btdnet-installed

$(VENV)/.btdnet-installed: tools/install_env.sh requirements.txt setup.py
	@echo "== make install: virtual environment $(VENV) =="
	bash tools/install_env.sh $(VENV)
	@touch $@

lint: install
	@echo "== make lint: ruff check + format check =="
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check --diff .

test: install lint
	@echo "== make test: pytest =="
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: install
	@echo "== make demo =="
	$(PYTHON) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache .ruff_cache
