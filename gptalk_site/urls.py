from django.contrib import admin
from django.urls import include, path

from chat import password_reset, views_account
from chat import views as chat_views

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before django.contrib.auth.urls so that these are ours.
    path("accounts/", views_account.account, name="account"),
    path("accounts/email/", views_account.account_email, name="account-email"),
    path("accounts/export/", views_account.account_export, name="account-export"),
    path("accounts/delete/", views_account.account_delete_view, name="account-delete"),
    path("accounts/signup/", chat_views.signup, name="signup"),
    path("accounts/password_reset/", password_reset.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        password_reset.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("chat.api_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("chat.urls")),
]
