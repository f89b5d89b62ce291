"""Getting photos in: walking folders, manifests and buckets into batches that the pipeline
analyses (`batches`), manifest files (`manifest`), and re-embedding the catalog under another
model (`reembed`). The Engine's `add` and `reembed` call these."""
