# talkface: two commands set up everything on a fresh machine.
#   make demo   installs what is needed, renders a demo reply video, prints where it is
#   make test   installs what is needed, runs the test suite
VENV ?= .venv
TALKFACE := $(VENV)/bin/talkface
STAMP := $(VENV)/.talkface-setup

.PHONY: setup demo test test-fast lint bench docs-images clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/no-deps.txt scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

demo: setup
	@mkdir -p demo
	$(TALKFACE) say "Hello! I am your virtual assistant. How can I help you today?" -o demo/hello.mp4
	$(TALKFACE) say "你好，很高兴为您服务。" --lang zh -o demo/hello_zh.mp4
	@echo "demo videos: $(CURDIR)/demo/hello.mp4 $(CURDIR)/demo/hello_zh.mp4"

test: setup lint
	$(VENV)/bin/python -m pytest

# ruff (pinned in the test extra) on everything; mypy --strict on the contracts
# (messages, engines, each stage's base.py: [tool.mypy] in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy

test-fast: setup
	$(VENV)/bin/python -m pytest -m "unit"

bench: setup
	$(VENV)/bin/python bench/say_bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache build *.egg-info src/*.egg-info
