"""Trunk post-build hook: adds a Content-Security-Policy to the built page.

Trunk writes one inline module script (it imports the page's wasm bindings); the policy pins it by
its sha256, so no other inline script can run. Everything else comes from the page's own origin:
the page itself fetches nothing (the compute worker downloads models), loads no third-party code,
and may instantiate WebAssembly ('wasm-unsafe-eval'). Style attributes stay allowed (bar heights,
heatmap colours are set per element).
"""

import base64
import hashlib
import os
import pathlib
import re

index = pathlib.Path(os.environ["TRUNK_STAGING_DIR"]) / "index.html"
html = index.read_text(encoding="utf-8")
scripts = re.findall(r"<script type=\"module\">(.*?)</script>", html, re.S)
if not scripts:
    raise SystemExit("csp.py: no inline module script found in index.html (did Trunk change?)")
hashes = " ".join(
    "'sha256-%s'" % base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode()
    for s in scripts
)
policy = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' 'wasm-unsafe-eval' {hashes}",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}" />'
if "Content-Security-Policy" in html:
    raise SystemExit("csp.py: index.html already has a Content-Security-Policy")
# Before any script, so the policy governs all of them.
html = html.replace('<meta charset="utf-8" />', '<meta charset="utf-8" />\n    ' + meta, 1)
index.write_text(html, encoding="utf-8")
