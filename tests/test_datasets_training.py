import gzip
import shutil

import numpy as np
import pytest
import torch

from common import datasets, models, training


def test_digits_split_is_stratified_disjoint_and_complete():
    d = datasets.digits()
    assert (len(d.train), len(d.calib), len(d.test)) == (1078, 180, 539)
    assert d.train.images.shape[1:] == (1, 8, 8)
    assert float(d.train.images.max()) == 1.0 and float(d.train.images.min()) == 0.0
    # every class is in every part, in roughly the same share
    for part in (d.train, d.calib, d.test):
        counts = torch.bincount(part.labels, minlength=10).float()
        assert counts.min() > 0.8 * counts.mean()
    # no image index is in two parts: the parts add up to the whole file
    assert len(d.train) + len(d.calib) + len(d.test) == 1797


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = datasets.digits(seed=0), datasets.digits(seed=0), datasets.digits(seed=1)
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.test.images, c.test.images)


def test_stratified_split_fractions():
    labels = np.repeat(np.arange(4), 100)
    parts = datasets.stratified_split(labels, (0.5, 0.2, 0.3), seed=0)
    assert [len(p) for p in parts] == [200, 80, 120]
    assert len(np.unique(np.concatenate(parts))) == 400


def test_changed_or_missing_file_is_refused_with_the_fix(tmp_path):
    with pytest.raises(datasets.DatasetError, match="git checkout"):
        datasets.digits(path=tmp_path / "nope.csv.gz")
    bad = tmp_path / "digits.csv.gz"
    shutil.copy(datasets.env.project_root() / datasets.DIGITS_FILE, bad)
    with gzip.open(bad, "ab") as f:
        f.write(b"0," * 64 + b"3\n")
    with pytest.raises(datasets.DatasetError, match="SHA-256"):
        datasets.digits(path=bad)


def test_batches_cover_every_sample_once_and_shuffle_by_seed():
    d = datasets.digits()
    seen = torch.cat([y for _, y in d.calib.batches(64, shuffle_seed=3)])
    assert torch.equal(seen.sort().values, d.calib.labels.sort().values)
    first = next(d.calib.batches(64, shuffle_seed=3))[1]
    assert not torch.equal(first, next(d.calib.batches(64, shuffle_seed=4))[1])


def test_a_few_epochs_learn_the_digits():
    d = datasets.digits()
    torch.manual_seed(0)
    model = models.DigitsCNN(width=8)
    before = training.accuracy(model, d.test)
    result = training.train(model, d.train, epochs=4)
    after = training.accuracy(model, d.test)
    assert len(result.loss_per_epoch) == 4 and result.loss_per_epoch[-1] < result.loss_per_epoch[0]
    assert after > 80.0 and after > before + 30.0


def test_accuracy_of_and_standard_error():
    assert training.accuracy_of([1, 2, 3, 4], [1, 2, 0, 4]) == 75.0
    with pytest.raises(ValueError, match="predictions"):
        training.accuracy_of([1, 2], [1, 2, 3])
    assert training.standard_error_points(50.0, 100) == pytest.approx(5.0)
    assert training.standard_error_points(100.0, 100) == 0.0


def test_train_refuses_zero_epochs():
    with pytest.raises(ValueError, match="epochs"):
        training.train(models.DigitsCNN(4), datasets.digits().train, epochs=0)
