from django.contrib import admin
from django.urls import include, path

from chat import views as chat_views

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before django.contrib.auth.urls so that /accounts/signup/ is ours.
    path("accounts/signup/", chat_views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("chat.api_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("chat.urls")),
]
