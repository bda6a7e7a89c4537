# Convenience targets; the README's two commands are scripts/run_sample.sh and scripts/run_tests.sh.
.PHONY: setup test sample bench lint format typecheck package clean

setup:
	bash scripts/setup.sh

test:
	bash scripts/run_tests.sh

sample:
	bash scripts/run_sample.sh

bench: setup
	bash bench/run_all.sh

lint: setup
	.venv/bin/ruff check deformation_forecast tests bench scripts
	.venv/bin/ruff format --check deformation_forecast tests bench scripts

format: setup
	.venv/bin/ruff format deformation_forecast tests bench scripts

typecheck: setup
	.venv/bin/mypy

package: setup
	bash scripts/build_plugin.sh --zip

clean:
	rm -rf build dist sample_out
