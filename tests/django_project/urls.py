from django.urls import path

from tests.django_project.shop import views

urlpatterns = [
    path("add", views.add_numbers),
    path("widgets", views.create_widget),
]
