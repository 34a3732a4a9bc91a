"""URLs under /api/ (included by gptalk_site/urls.py)."""

from django.urls import path

from chat import views_api

app_name = "api"

urlpatterns = [
    path("models/", views_api.models_list, name="models"),
    path("conversations/", views_api.conversations_list, name="conversations"),
]
