"""The PostgreSQL schema's versioned migrations, as numbered SQL files
(NNNN_name.sql), applied in order by pigeon/store/pg/migrate.py."""
