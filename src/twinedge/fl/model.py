"""The learning task: multinomial logistic regression on scikit-learn's digits.

The data are the 1,797 8x8 handwritten digits that ship with scikit-learn
(``sklearn.datasets.load_digits``), pixel values 0-16 scaled to [0, 1] and a constant
1 appended (the bias), so a sample is x in R^65 and the model is a weight matrix
W in R^{65 x 10}. The loss of a sample (x, q) is the cross-entropy
l(W; x, q) = -log softmax(W^T x)_q; its gradient is x (softmax(W^T x) - e_q)^T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from twinedge.fl.errors import FLError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

CLASSES = 10


@dataclass(frozen=True)
class Partition:
    """The training data split over devices, and the held-out test set.

    Attributes:
        x_train: every training sample, one row each (bias column included).
        y_train: their labels 0-9.
        device_rows: for each device, the row numbers of its local dataset D_n.
        x_test, y_test: the test set on which accuracy is measured.
    """

    x_train: FloatArray
    y_train: IntArray
    device_rows: list[IntArray]
    x_test: FloatArray
    y_test: IntArray


def load_digits_xy() -> tuple[FloatArray, IntArray]:
    """The digits as ``(x, y)``: x scaled to [0, 1] with a bias column of ones.

    Raises:
        FLError: scikit-learn is not installed (the ``fl`` extra).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - the fl extra installs it
        raise FLError("the digits dataset needs scikit-learn: pip install 'twinedge[fl]'") from e
    d = load_digits()
    x = np.asarray(d.data, dtype=np.float64) / 16.0
    x = np.hstack([x, np.ones((x.shape[0], 1))])
    return x, np.asarray(d.target, dtype=np.int64)


def partition(
    devices: int, rng: np.random.Generator, *, test_fraction: float = 0.2, iid: bool = True
) -> Partition:
    """Split the digits into a test set and ``devices`` local datasets.

    IID: the training rows are shuffled and dealt out in near-equal shares. Non-IID:
    the rows are sorted by label, cut into ``2 * devices`` shards and each device gets
    two shards, so most devices hold two digits only (the split of McMahan et al.,
    "Communication-efficient learning of deep networks from decentralized data", 2017).

    Parameters:
        devices: the number of devices N (at least 1).
        rng: the experiment's random generator.
        test_fraction: the share of samples held out for testing.
        iid: IID shares (True) or label shards (False).

    Raises:
        FLError: ``devices`` < 1 or more devices than training samples.

    Examples:
        >>> p = partition(100, np.random.default_rng(0))
        >>> len(p.device_rows), p.x_train.shape[1], len(p.y_test)
        (100, 65, 359)
    """
    x, y = load_digits_xy()
    if devices < 1:
        raise FLError(f"devices: {devices}: expected at least 1 device")
    order = rng.permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    if devices > len(train):
        raise FLError(f"devices: {devices}: more devices than the {len(train)} training samples")
    xt, yt = x[train], y[train]
    if iid:
        rows = np.array_split(rng.permutation(len(yt)), devices)
    else:
        by_label = np.argsort(yt, kind="stable")
        shards = np.array_split(by_label, 2 * devices)
        pick = rng.permutation(2 * devices)
        rows = [
            np.concatenate([shards[pick[2 * i]], shards[pick[2 * i + 1]]]) for i in range(devices)
        ]
    return Partition(xt, yt, [np.asarray(r, dtype=np.int64) for r in rows], x[test], y[test])


def softmax(z: FloatArray) -> FloatArray:
    """Row-wise softmax, shifted by the row maximum for stability."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def gradient(w: FloatArray, x: FloatArray, y: IntArray) -> FloatArray:
    """Mean cross-entropy gradient of W over the samples ``(x, y)``.

    Examples:
        >>> w = np.zeros((2, 10)); x = np.array([[1.0, 1.0]]); y = np.array([3])
        >>> g = gradient(w, x, y)
        >>> round(float(g[0, 3]), 2), round(float(g[0, 0]), 2)   # 0.1 - 1 and 0.1
        (-0.9, 0.1)
    """
    p = softmax(x @ w)
    p[np.arange(len(y)), y] -= 1.0
    out: FloatArray = x.T @ p / len(y)
    return out


def accuracy(w: FloatArray, x: FloatArray, y: IntArray) -> float:
    """Share of samples whose most likely class is their label, in [0, 1]."""
    return float(np.mean(np.argmax(x @ w, axis=1) == y))
