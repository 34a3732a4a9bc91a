"""The Provider admin: staff only, a write-only API key, and the "Check" action against
the real emulator over loopback."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from chat.models import Provider
from tests.fixtures.emulator import free_port

pytestmark = pytest.mark.django_db

SECRET = "sk-stored-secret-4242"


@pytest.fixture
def staff(make_user):
    return make_user("staff", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def row() -> Provider:
    return Provider.objects.create(
        name="Ollama", kind="openai", base_url="http://127.0.0.1:11434/v1", api_key=SECRET, order=1
    )


def form_data(provider: Provider, **changes) -> dict:
    data = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "api_key": "",
        "default_model": provider.default_model,
        "enabled": "on" if provider.enabled else "",
        "order": provider.order,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def change_url(provider: Provider) -> str:
    return reverse("admin:chat_provider_change", args=[provider.pk])


def test_only_staff_get_in(client, make_user, row):
    url = reverse("admin:chat_provider_changelist")
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(make_user("plain"))
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_user("clerk", is_staff=True))  # staff without the permission
    assert client.get(url).status_code == 403


def test_changelist_columns_and_no_key(staff_client, row):
    response = staff_client.get(reverse("admin:chat_provider_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    for text in ("Ollama", "http://127.0.0.1:11434/v1", "Key", "Enabled", "Order", "Check: list the models"):
        assert text in body
    assert SECRET not in body


def test_the_key_is_never_rendered_back(staff_client, row):
    response = staff_client.get(change_url(row))
    assert response.status_code == 200
    body = response.content.decode()
    assert SECRET not in body
    assert 'type="password"' in body and "Write-only" in body


def test_a_blank_key_keeps_the_stored_one(staff_client, row):
    response = staff_client.post(change_url(row), form_data(row, default_model="llama3.2"))
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.api_key, row.default_model) == (SECRET, "llama3.2")


def test_a_new_key_replaces_it_and_the_checkbox_removes_it(staff_client, row):
    staff_client.post(change_url(row), form_data(row, api_key="  sk-new  "))
    row.refresh_from_db()
    assert row.api_key == "sk-new"
    staff_client.post(change_url(row), form_data(row, clear_api_key="on"))
    row.refresh_from_db()
    assert row.api_key == ""


def test_adding_a_provider(staff_client):
    data = {"name": "vLLM", "kind": "openai", "base_url": "http://127.0.0.1:8001/v1",
            "api_key": "sk-added", "default_model": "", "enabled": "on", "order": 2}  # fmt: skip
    response = staff_client.post(reverse("admin:chat_provider_add"), data)
    assert response.status_code == 302
    assert Provider.objects.get(name="vLLM").api_key == "sk-added"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base_url": ""}, "base_url"),  # OpenAI-compatible needs a URL
        ({"name": "local/ollama"}, "name"),  # "/" separates provider and model in ids
    ],
)
def test_invalid_providers_are_refused(staff_client, row, changes, field):
    response = staff_client.post(change_url(row), form_data(row, **changes))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert SECRET not in response.content.decode()  # not even in a form shown again


def test_a_gptalk_row_needs_no_url(staff_client):
    data = {"name": "GPTalk", "kind": "gptalk", "base_url": "", "api_key": "", "enabled": "", "order": 0}
    assert staff_client.post(reverse("admin:chat_provider_add"), data).status_code == 302
    assert not Provider.objects.get(name="GPTalk").enabled


def run_check(staff_client, *rows: Provider) -> list[tuple[str, str]]:
    response = staff_client.post(
        reverse("admin:chat_provider_changelist"),
        {"action": "check_providers", "_selected_action": [r.pk for r in rows]},
        follow=True,
    )
    assert response.status_code == 200
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def test_check_lists_the_models_of_providers_that_answer(staff_client, emulator):
    openai_row = Provider.objects.create(name="Emu", kind="openai", base_url=emulator.url + "/v1")
    gptalk_row = Provider.objects.create(name="Local GPTalk", kind="gptalk", base_url=emulator.url)
    result = run_check(staff_client, openai_row, gptalk_row)
    assert sorted(result) == [
        ("success", "Emu answers. Models: gpt-3.5-turbo, gpt-4o-mini."),
        ("success", "Local GPTalk answers. Models: gpt-3.5-turbo."),
    ]
    stats = emulator.stats()
    assert (stats["logins"], stats["streams"]) == (1, 1)  # GPTalk really answered


def test_check_reports_a_dead_provider_clearly(staff_client, emulator):
    dead = Provider.objects.create(name="Dead", kind="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    failing = Provider.objects.create(name="Failing", kind="gptalk", base_url=emulator.url)
    emulator.next(fault="text_500")
    assert sorted(run_check(staff_client, dead, failing)) == [
        ("error", "Dead does not answer: Could not reach the provider “Dead”. Try again later."),
        ("error", "Failing does not answer: The GPTalk service failed (HTTP 500). Try again later."),
    ]


@pytest.mark.parametrize(
    "url,ok",
    [
        ("http://ollama:11434/v1", True),
        ("http://localhost:8000/v1", True),
        ("https://api.openai.com/v1", True),
        ("http://[::1]:11434/v1", True),
        ("ftp://ollama/v1", False),
        ("javascript:alert(1)", False),
        ("http://", False),
        ("http://ollama:99999/v1", False),
        ("ollama:11434", False),
    ],
)
def test_base_url_accepts_one_word_hosts_and_refuses_the_rest(url, ok):
    from django.core.exceptions import ValidationError

    from chat.models import validate_base_url

    if ok:
        validate_base_url(url)
    else:
        with pytest.raises(ValidationError):
            validate_base_url(url)
