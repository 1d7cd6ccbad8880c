"""Alembic migrations of the service database, shipped inside the package.

Run them with ``flowbureau db upgrade`` or :func:`flowbureau.storage.database.upgrade_database`;
no ``alembic.ini`` is needed (the configuration is built in code). To add a revision after
changing models, write a file in ``versions/`` whose ``down_revision`` is the current head
(``flowbureau db revision -m "what changed"`` drafts one by autogeneration); the test
``tests/service/test_migrations.py`` fails while models and migrations disagree.
"""
