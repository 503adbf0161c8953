"""Text distillation (Tang et al., arXiv 1903.12136): a fine-tuned BERT-style teacher -> a BiLSTM student.

- :mod:`edgec.text.data`: SST-2 style TSV files -> :class:`TextDataset` (sentences + labels).
- :mod:`edgec.text.vocab`: the word vocabulary and the one tokenizer rule (training = serving).
- :mod:`edgec.text.augment`: the paper's augmentation (masking, POS-guided replacement, n-grams).
- :mod:`edgec.text.teacher`: load any local Hugging Face encoder offline, fine-tune it, label text.
- :mod:`edgec.text.student`: the BiLSTM student (ONNX-exportable with the LSTM op).
- :mod:`edgec.text.distill`: MSE-on-logits training of the student (optionally mixed with CE).

The stages that run them in `edgec build` live in :mod:`edgec.stages.text`. Heavy packages
(torch, transformers, textblob) are imported inside functions, so importing this package is cheap.

Example:
    >>> from edgec.text.data import load_sst2
    >>> ds = load_sst2("../shared/data/sst2", seed=0)        # doctest: +SKIP
    >>> ds.describe()["sizes"]                               # doctest: +SKIP
    {'train': 57583, 'val': 3031, 'test': 6735}
"""
