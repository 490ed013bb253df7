# Two entry points (README quickstart). Each installs what it needs on first use.
VENV := .venv
SERVER_VENV := .venv-argilla-server

.PHONY: orca3-mix test
orca3-mix: $(VENV)/.installed
	$(VENV)/bin/python pipelines/orca3_mix.py --config recipes/orca3_mix/quickstart.yaml $(ARGS)

test: $(VENV)/.installed $(SERVER_VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[server,dev,ray,s3]'  # ray: the --ray tests run in CI
	touch $@

$(SERVER_VENV)/.installed: .ci/install-argilla-server.sh
	bash .ci/install-argilla-server.sh
	touch $@
