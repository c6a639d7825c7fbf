"""Integrations with the frameworks people host the library in: Django, Flask, Celery.

Each module imports its framework when it is imported (only users of that framework import
it) and raises :class:`~xpander_sync.errors.FrameworkNotInstalledError` naming the extra to
install when the framework is missing:

* ``xpander_sync.contrib.django``: an app for ``INSTALLED_APPS`` (``XPANDER`` settings, system
  checks, ``manage.py xpander_worker|xpander_outbox|xpander_args``);
* ``xpander_sync.contrib.flask``: the ``XpanderSync(app)`` extension and ``flask xpander ...``;
* ``xpander_sync.contrib.celery``: the scale-out path (``xpander-sync worker ... --dispatch celery``)
  and a report task with the outbox as its fallback.

Nothing outside this package imports it, except the command line's ``--dispatch celery``.
"""
