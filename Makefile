# Hub developer tasks. Run `make` for the list.

.PHONY: help bootstrap demo test translations bench clean
.DEFAULT_GOAL := help

VENV := .venv

help: ## Show this help
	@echo "Usage: make <target>"
	@echo
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

bootstrap: ## Create/refresh .venv with Hub and test dependencies
	@bash scripts/bootstrap.sh

demo: bootstrap ## Run the Hub demo
	$(VENV)/bin/hub demo

test: ## Run the test suite on parallel workers (scripts/test.sh; pytest args with ARGS=..., see tests/README.md)
	bash scripts/test.sh $(ARGS)

translations: bootstrap ## Add new messages to the Russian catalogs (scripts/translations.py)
	$(VENV)/bin/python scripts/translations.py

# Benchmarks are listed in bench/README.md.
bench: bootstrap ## Run the benchmarks
	$(VENV)/bin/python bench/import_dedupe.py
	$(VENV)/bin/python bench/segments.py
	$(VENV)/bin/python bench/sync_bitrix24.py
	$(VENV)/bin/python bench/sync_amocrm.py
	$(VENV)/bin/python bench/mailing.py
	$(VENV)/bin/python bench/bounces.py
	$(VENV)/bin/python bench/campaign.py
	$(VENV)/bin/python bench/public_routes.py

clean: ## Remove .venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
