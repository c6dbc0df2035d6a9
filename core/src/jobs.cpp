// placeholder: JobStore (being written)
