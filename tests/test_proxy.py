"""nginx in front of the site: docs/deployment.md shows docs/nginx.conf as it
is, and that file (rendered for this machine by tests/fixtures/proxy.py) serves
the site. The multi-process and fault tests all go through it."""

import re

import httpx
import pytest

from tests.fixtures.emulator import REPO_ROOT
from tests.fixtures.proxy import Nginx
from tests.fixtures.site import SiteProcess, collected_static, manage, site_env, sqlite_url


def test_the_deployment_guide_shows_the_tested_configuration():
    guide = (REPO_ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", guide, flags=re.S)
    assert (REPO_ROOT / "docs" / "nginx.conf").read_text() in blocks


@pytest.fixture
def proxied_site(tmp_path, emulator_server):
    env = site_env(database_url=sqlite_url(tmp_path / "proxy.sqlite3"), gptalk_url=emulator_server.url)
    manage("migrate", "--noinput", env=env)
    site = SiteProcess(env=env)
    try:
        proxy = Nginx(upstreams=[site.port])
        yield site, proxy
        proxy.stop()
    finally:
        site.stop()


def test_pages_through_the_proxy_and_static_files_from_it(proxied_site):
    site, proxy = proxied_site
    with httpx.Client(base_url=proxy.url, verify=proxy.ssl, trust_env=False, timeout=10) as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text
        css = client.get("/static/chat/app.css")
        assert css.status_code == 200 and css.text == (collected_static() / "chat" / "app.css").read_text()
        assert css.headers["cache-control"] == "public, max-age=60"
        # The content-hashed copy collectstatic made (what a page links with DEBUG off).
        hashed = [p for p in (collected_static() / "chat").glob("app.*.css") if re.fullmatch(r"app\.[0-9a-f]{12}\.css", p.name)]
        assert len(hashed) == 1, hashed
        immutable = client.get(f"/static/chat/{hashed[0].name}", headers={"Accept-Encoding": "gzip"})
        assert immutable.status_code == 200 and immutable.text == css.text
        assert immutable.headers["content-encoding"] == "gzip", "the .gz copy collectstatic made"
        assert "immutable" in immutable.headers["cache-control"]
    assert '"GET /accounts/login/"' in site.output()
    assert "/static/" not in site.output(), "nginx served the static files itself"
