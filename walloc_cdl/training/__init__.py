"""Train WaLLoC codecs: closed-form PCA start (`pca`), batch samplers (`batches`), the loop (`trainer`),
held-out figures (`evaluate`) and the ``walloc-cdl train-codec`` command (`cli`)."""
