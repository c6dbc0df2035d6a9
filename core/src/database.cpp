// placeholder: EmbeddedPostgres and migrations (being written)
