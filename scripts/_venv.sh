# Create the project's virtual environment on first use and install the provider with its
# sandbox and test extras. Sourced by the other scripts; honours PYTHON (default python3).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"
stamp="$venv/.installed-from"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install.
wanted=$(sha256sum "$repo_root/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$venv/bin/python" -m pip install --quiet -e "$repo_root[test]"
    echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
# The Snowflake connector probes cloud metadata addresses at login unless this is set.
export SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true
cd "$repo_root"
