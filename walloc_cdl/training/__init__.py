"""Training: the shared loop pieces (`loop`: checkpoints, resume, the step), codec training (`codec`: the loop
and the ``train-codec`` job, from the closed-form start of `pca` on the batches of `batches`), held-out codec
figures (`evaluate`) and classifiers on encoded datasets (`train`, `predict`)."""
