"""Alembic environment: the database comes from unirtc itself, never from alembic.ini.

``unirtc-ctl db upgrade`` passes an open connection; a developer running alembic directly
passes the unirtc config: ``alembic -x config=etc/falcot.ini upgrade head``.
"""

from alembic import context

from unirtc.directory.models import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    from unirtc.config import load_settings
    from unirtc.directory.engine import make_engine

    settings = load_settings(context.get_x_argument(as_dictionary=True)["config"])
    with make_engine(settings.server.database).begin() as own_connection:
        run(own_connection)
