"""Vocabulary round trip and the TSV loader's clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import DataError
from edgec.text.data import load_sst2, read_tsv
from edgec.text.vocab import MASK_ID, PAD_ID, UNK_ID, Vocab, tokenize


def test_vocab_round_trip_unknown_words_and_padding(tmp_path):
    v = Vocab.build(["a good film", "a bad film", "A GOOD plot"], max_size=3)
    assert v.words[:3] == ["<pad>", "<unk>", "[MASK]"]
    assert v.words[3:] == ["a", "film", "good"]  # by frequency, ties alphabetical, max_size kept
    loaded = Vocab.load(v.save(tmp_path / "vocab.json"))
    assert loaded.words == v.words
    ids, lengths = loaded.encode(["a terrible film", "good", "[MASK] film"])
    assert ids.dtype == np.int64 and ids.shape == (3, 3)
    assert ids[0].tolist() == [v.index["a"], UNK_ID, v.index["film"]]
    assert ids[1].tolist() == [v.index["good"], PAD_ID, PAD_ID] and lengths.tolist() == [3, 1, 2]
    assert ids[2, 0] == MASK_ID


def test_tokenizer_rule_lowercases_and_splits_on_whitespace():
    assert tokenize("It 's  A Gorgeous film [MASK]") == ["it", "'s", "a", "gorgeous", "film", "[MASK]"]


def test_empty_sentence_is_a_clear_error():
    v = Vocab.build(["a film"])
    with pytest.raises(DataError, match="sentence 1 is empty"):
        v.encode(["a film", "   "])


def test_min_freq_and_bad_vocab_file(tmp_path):
    assert Vocab.build(["a a b"], min_freq=2).words[3:] == ["a"]
    bad = tmp_path / "v.json"
    bad.write_text('{"words": ["x"]}')
    with pytest.raises(DataError, match="not an edgec vocabulary"):
        Vocab.load(bad)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_tsv(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match=r":1: header .* no 'label' column"):
        read_tsv(write(tmp_path / "a.tsv", "sentence\tscore\ngood\t1\n"))
    with pytest.raises(DataError, match=r":3: empty sentence"):
        read_tsv(write(tmp_path / "b.tsv", "sentence\tlabel\ngood\t1\n \t0\n"))
    with pytest.raises(DataError, match=r":2: label '2' is not 0 or 1"):
        read_tsv(write(tmp_path / "c.tsv", "sentence\tlabel\ngood\t2\n"))
    with pytest.raises(DataError, match=r":2: expected 2 tab-separated fields, got 1"):
        read_tsv(write(tmp_path / "d.tsv", "sentence\tlabel\njust text\n"))


def test_splits_dev_is_test_without_test_tsv(tmp_path):
    rows = "".join(f"sentence {i}\t{i % 2}\n" for i in range(40))
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + rows)
    write(tmp_path / "dev.tsv", "label\tsentence\n1\tnice\n0\tbad\n")  # columns found by name
    ds = load_sst2(tmp_path, val_fraction=0.25, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 2)
    assert ds.test.sentences == ["nice", "bad"] and "dev.tsv" in ds.test_source
    assert sorted(ds.train.sentences + ds.val.sentences) == sorted(f"sentence {i}" for i in range(40))
    write(tmp_path / "test.tsv", "sentence\tlabel\nfine\t1\n")
    ds = load_sst2(tmp_path, seed=0, limit=20)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 2, 1) and ds.test_is_official
    with pytest.raises(DataError, match="folder not found"):
        load_sst2(tmp_path / "missing")
