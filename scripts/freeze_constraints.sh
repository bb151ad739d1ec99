#!/usr/bin/env bash
# Rewrite constraints.txt from the project virtual environment, keeping torch at 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Pinned versions the project is tested with: 'pip install -c constraints.txt -e .[dev]'."
  echo "# torch stays at 2.13.0 (the CPU wheel; any other request pulls CUDA packages). Regenerate with scripts/freeze_constraints.sh."
  .venv/bin/pip freeze --exclude-editable | grep -v -i '^crossmed' | sed 's/^torch==2.13.0+.*/torch==2.13.0/'
} > constraints.txt
