"""The model library and the train / eval / index logic: model configs and factory, model and
fusion, loss, shard data loading, training, metrics, index and search."""
