# The two commands of the README: `make demo` and `make test`. Both set up .venv on first use.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
# A fingerprint of every notebook (or every exported module): compared before and after nbdev_clean / nbdev_export.
NB_SUM  = find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha256sum
LIB_SUM = find psann_lm -name '*.py' -print0 | sort -z | xargs -0 sha256sum

.PHONY: demo test venv sync-check docs-check

venv: $(STAMP)

# Reinstalls only when the package definition or the pins change, so a second run reuses the venv.
$(STAMP): settings.ini setup.py constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade --constraint constraints.txt setuptools
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev,bench,eval,data]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/psann_lm_demo

# Notebooks are the source: cleaning must change nothing, and exporting must reproduce psann_lm/ exactly.
sync-check: $(STAMP)
	@before="$$($(NB_SUM))"; PATH="$(CURDIR)/$(BIN):$$PATH" nbdev_clean; \
	 if [ "$$before" != "$$($(NB_SUM))" ]; then echo "FAIL: nbdev_clean changed notebooks; commit the cleaned notebooks"; exit 1; fi
	@before="$$($(LIB_SUM))"; PATH="$(CURDIR)/$(BIN):$$PATH" nbdev_export; \
	 if [ "$$before" != "$$($(LIB_SUM))" ]; then echo "FAIL: nbdev_export changed psann_lm/; the package and the notebooks disagree"; exit 1; fi
	@echo "notebooks clean; psann_lm/ matches the notebooks"

# The docs up to Quarto's render (the deploy workflow renders): every notebook processed as nbdev_docs processes it, with a
# stub `quarto` on PATH so that nbdev does not try to install one; then the sidebar and every internal link are checked.
docs-check: $(STAMP)
	rm -rf _proc
	PATH="$(CURDIR)/.ci/stub:$(CURDIR)/$(BIN):$$PATH" nbdev_proc_nbs
	$(BIN)/python .ci/check_docs.py

test: sync-check docs-check
	PATH="$(CURDIR)/$(BIN):$$PATH" nbdev_test --n_workers 2
	$(BIN)/python -m pytest tests
