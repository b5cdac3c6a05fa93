# BTDNet: `make test` and `make demo` set everything up on a fresh machine (see README.md).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# NLTK's POS tagger: $NLTK_DATA if set, else the copy tools/install_env.sh downloads into the venv.
export NLTK_DATA ?= $(abspath $(VENV))/nltk_data
PYTEST_ARGS ?=
# `make app`: the web app (tools/app.py) on the newest best checkpoint of `make demo`.
DEMO_DIR ?= work_dirs/demo
DEMO_CONFIG ?= configs/btdnet/btdnet_minilm-swin-s_demo_synthetic.py
APP_ARGS ?=

.PHONY: install lint test demo app clean

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

# The checkpoint is looked for before anything is installed: without one there is nothing to serve.
app:
	@ckpt=$$(ls -t $(DEMO_DIR)/best_oIoU_iter_*.pth 2>/dev/null | head -n 1); \
	if [ -z "$$ckpt" ]; then \
		echo "make app: no trained demo model in $(DEMO_DIR) (best_oIoU_iter_*.pth): run 'make demo' first" >&2; \
		exit 1; \
	fi; \
	$(MAKE) --no-print-directory install && \
	echo "== make app: $$ckpt ==" && \
	$(PYTHON) tools/app.py $(DEMO_CONFIG) $$ckpt $(APP_ARGS)

clean:
	rm -rf $(VENV) work_dirs .pytest_cache .ruff_cache
