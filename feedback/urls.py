from django.urls import path

from feedback import review_views, views

app_name = "feedback"

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/label/", views.label_page, name="label"),
    path("p/<slug:slug>/quality/", review_views.quality_page, name="quality"),
    path("p/<slug:slug>/review/", review_views.review_queue_page, name="review"),
    path("p/<slug:slug>/audit/", review_views.audit_page, name="audit"),
    path(
        "p/<slug:slug>/review/comparisons/<id:comparison_id>/",
        review_views.review_comparison_page,
        name="review-comparison",
    ),
    path("p/<slug:slug>/label/item/", views.label_item, name="label-item"),
    path("p/<slug:slug>/label/submit/", views.label_submit_view, name="label-submit"),
    path("p/<slug:slug>/label/skip/", views.label_skip_view, name="label-skip"),
    path("p/<slug:slug>/label/flag/", views.label_flag_view, name="label-flag"),
    path("p/<slug:slug>/label/undo/", views.label_undo_view, name="label-undo"),
    path("p/<slug:slug>/write/", views.write_page, name="write"),
    path("p/<slug:slug>/write/item/", views.write_item, name="write-item"),
    path("p/<slug:slug>/write/submit/", views.write_submit_view, name="write-submit"),
    path(
        "p/<slug:slug>/review/demonstrations/",
        review_views.demonstration_queue_page,
        name="review-demonstrations",
    ),
    path(
        "p/<slug:slug>/review/demonstrations/<id:demonstration_id>/",
        review_views.review_demonstration_page,
        name="review-demonstration",
    ),
]
