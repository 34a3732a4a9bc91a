from django.urls import path

from chat import views, views_manage

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("favicon.ico", views.favicon, name="favicon"),
    # Management (JSON; POSTs need the CSRF header).
    path("c/new/", views_manage.conversation_create, name="create"),
    path("c/<int:conversation_id>/info/", views_manage.conversation_detail, name="detail"),
    path("c/<int:conversation_id>/rename/", views_manage.conversation_rename, name="rename"),
    path("c/<int:conversation_id>/pin/", views_manage.conversation_pin, name="pin"),
    path("c/<int:conversation_id>/delete/", views_manage.conversation_delete, name="delete"),
    path("c/<int:conversation_id>/settings/", views_manage.conversation_settings, name="settings"),
    path("c/<int:conversation_id>/share/", views_manage.conversation_share, name="share-create"),
    path("c/<int:conversation_id>/unshare/", views_manage.conversation_unshare, name="share-revoke"),
    path(
        "c/<int:conversation_id>/export.md",
        views_manage.conversation_export,
        {"fmt": "md"},
        name="export-md",
    ),
    path(
        "c/<int:conversation_id>/export.json",
        views_manage.conversation_export,
        {"fmt": "json"},
        name="export-json",
    ),
    path("import/", views_manage.conversation_import, name="import"),
    path("search/", views_manage.search, name="search"),
    # The read-only page behind a share link: no login.
    path("s/<str:token>/", views_manage.shared, name="share"),
]
