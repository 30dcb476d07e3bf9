"""Alembic environment: runs one chain (the core's or a plugin's) against the engine `hub init` hands over."""

from alembic import context

from hub.models import Base

config = context.config
engine = config.attributes["engine"]
version_table = config.attributes.get("version_table", "alembic_version")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        # Autogenerate compares the core's chain with the core's models; a plugin's chain has its own.
        target_metadata=Base.metadata if version_table == "alembic_version" else None,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
