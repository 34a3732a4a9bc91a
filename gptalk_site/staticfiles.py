"""The static files storage: content-hashed names, gzip copies, JS modules rewritten.

`collectstatic` writes every file under its hashed name (app.3f2a….css) plus a
.gz copy, and rewrites the references between files (CSS url(), and, with
`support_js_module_import_aggregation`, the `import … from "./x.js"` and
`import("./x.js")` of our ES modules) so that a module pulls in the hashed
names of the modules it imports. Whitenoise serves hashed names with a
ten-year immutable Cache-Control and everything else with WHITENOISE_MAX_AGE.
"""

from __future__ import annotations

import re

from whitenoise.storage import CompressedManifestStaticFilesStorage

# KaTeX's stylesheet lists each font as woff2, woff and ttf. Only the woff2
# files are vendored (every browser that runs ES modules reads woff2, so the
# other two are never fetched); those references stay as they are.
_UNVENDORED_FONT_FALLBACK = re.compile(r"^vendor/katex/fonts/[\w-]+\.(?:woff|ttf)$")


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Called by collectstatic (post_process) and by `{% static %}` (url)."""

    support_js_module_import_aggregation = True

    def hashed_name(self, name, content=None, filename=None):
        if content is None and _UNVENDORED_FONT_FALLBACK.match(name) and not self.exists(name):
            return name
        return super().hashed_name(name, content, filename)
