#!/usr/bin/env bash
# Checks that every dependency of mtlfast (pyproject.toml's dependencies and extras, requirements-build.txt)
# installs from a wheel on Linux x86-64 and aarch64 for Python 3.10-3.12, so that a fresh install never has to
# build a dependency from a source archive (the way seqeval broke it). torch is left out: its wheels are large and
# pinned (a CUDA build on PyPI for x86-64; a CPU build on disk here). Needs the package index; prints one line
# per missing wheel and exits 1 if there is any.
set -uo pipefail
cd "$(dirname "$0")/.."
reqs=$(python3 - <<'PY'
import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(p["dependencies"]) + [d for extra in p.get("optional-dependencies", {}).values() for d in extra]
deps += [l.strip() for l in open("requirements-build.txt") if l.strip() and not l.startswith("#")]
for d in dict.fromkeys(deps):
    name = re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0]
    if name.lower() != "torch":
        print(d.strip())
PY
)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
missing=0
for py in 3.10 3.11 3.12; do
  for arch in x86_64 aarch64; do
    while read -r line; do
      [ -n "$line" ] || continue
      req=${line%%;*}
      if [ "$req" != "$line" ] && ! python3 -c "import sys; from pip._vendor.packaging.markers import Marker; \
          sys.exit(not Marker(sys.argv[1]).evaluate({'python_version': sys.argv[2]}))" "${line#*;}" "$py"; then
        continue  # the requirement's marker leaves this Python version out
      fi
      if ! PIP_NO_CACHE_DIR=1 pip download -q --no-deps --only-binary=:all: --python-version "$py" \
          --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" --platform "any" \
          -d "$tmp/$py-$arch" "$req" >/dev/null 2>&1; then
        echo "no wheel: $req for Python $py on $arch"; missing=1
      fi
    done <<<"$reqs"
  done
done
[ "$missing" = 0 ] && echo "every dependency has a wheel for Python 3.10-3.12 on x86_64 and aarch64"
exit "$missing"
