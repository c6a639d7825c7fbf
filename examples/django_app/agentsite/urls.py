from django.urls import path

from . import views

urlpatterns = [
    path("agent/run", views.run_agent),
    path("agent/arun", views.arun_agent),
]
