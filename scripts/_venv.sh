# Create the project's virtual environment on first use and install the provider with its
# sandbox and test extras. Sourced by the other scripts; honours PYTHON (default python3).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"
stamp="$venv/.installed-from"
install_log="$venv/install.log"
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating $venv ..." >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install. pip's output goes to a log
# file and is shown only when the install fails.
wanted=$(sha256sum "$repo_root/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "Installing airflow-provider-m2m with its sandbox and test extras into $venv (about a minute) ..." >&2
    if ! "$venv/bin/python" -m pip install -e "$repo_root[test]" >"$install_log" 2>&1; then
        tail -n 40 "$install_log" >&2
        echo "pip install failed; the whole output is in $install_log" >&2
        exit 1
    fi
    echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
# The Snowflake connector probes cloud metadata addresses at login unless this is set.
export SNOWFLAKE_DISABLE_PLATFORM_DETECTION=true
cd "$repo_root"
