"""The database: connections, migrations, the store and the console's queries."""
