"""Write .dvc/plots_page.html: DVC's plots page template with Vega, Vega-Lite and Vega-Embed inside it, so
`dvc plots show` draws its charts offline (DVC's own page loads them from a CDN and is blank without internet).

Run once by a maintainer when the versions change (needs `npm`); the page is committed:
    python scripts/build_plots_page.py
The versions are those DVC's renderer names; the libraries are BSD-3-Clause (notices kept in the page).
"""

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": ("5.20.2", "build/vega.min.js"), "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
            "vega-embed": ("6.18.2", "build/vega-embed.min.js")}
OUT = Path(__file__).resolve().parent.parent / ".dvc" / "plots_page.html"
PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>crossmed: DVC plots</title>
  <!-- {notice} -->
{scripts}
  <style>body {{ font-family: sans-serif; }} table {{ border-spacing: 15px; }}</style>
</head>
<body>
  {{plot_divs}}
</body>
</html>
"""


def _script(name: str, version: str, member: str, folder: Path) -> str:
    """Return one library as an inline <script>, fetched with `npm pack` into `folder`."""
    subprocess.run(["npm", "pack", f"{name}@{version}"], cwd=folder, check=True, capture_output=True)
    with tarfile.open(folder / f"{name}-{version}.tgz") as archive:
        code = archive.extractfile(f"package/{member}").read().decode("utf-8")
    if "</script" in code or "{plot_divs}" in code or "{scripts}" in code:
        sys.exit(f"{name} {version}: holds text that would break the page")
    digest = hashlib.sha256(code.encode()).hexdigest()
    return f"  <script>/* {name} {version} ({member}, sha256 {digest}), BSD-3-Clause */\n{code}\n  </script>"


def main() -> None:
    """Fetch the three libraries and write the page."""
    with tempfile.TemporaryDirectory() as tmp:
        scripts = [_script(name, version, member, Path(tmp)) for name, (version, member) in PACKAGES.items()]
    notice = ("Vega, Vega-Lite and Vega-Embed: Copyright (c) the University of Washington Interactive Data Lab, "
              "BSD-3-Clause; https://github.com/vega. Written by scripts/build_plots_page.py.")
    OUT.write_text(PAGE.format(notice=notice, scripts="\n".join(scripts)), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
