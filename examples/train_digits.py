"""Train a small CNN on the handwritten digits that come with cycnn.

    python examples/train_digits.py

Builds a LeNet-5-style network layer by layer, trains it for a few epochs with
stochastic gradient descent, prints the test accuracy, saves the weights and loads
them back. Takes a few seconds on two cores.
"""

import os

# Let idle thread pools sleep instead of spinning (read when the libraries load, so set
# before importing NumPy): on a machine with few cores, busy-waiting OpenMP and OpenBLAS
# threads otherwise take the cores from each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import cycnn  # noqa: E402
from cycnn import SGD, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential  # noqa: E402
from cycnn.datasets import load_digits  # noqa: E402

# 1. Data: 4,000 training and 1,000 test images, shape (N, 1, 28, 28), values in [0, 1].
(x_train, y_train), (x_test, y_test) = load_digits()
print(f"training images {x_train.shape}, test images {x_test.shape}")

# 2. The network. One seeded generator draws every layer's initial weights in turn, so
#    the same seed always builds the same network.
rng = np.random.default_rng(0)
model = Sequential(
    Conv2D(1, 6, kernel_size=5, rng=rng),    # 1x28x28 -> 6x24x24
    ReLU(),
    MaxPool2D(2),                            # -> 6x12x12
    Conv2D(6, 16, kernel_size=5, rng=rng),   # -> 16x8x8
    ReLU(),
    MaxPool2D(2),                            # -> 16x4x4
    Flatten(),                               # -> 256
    Dense(256, 120, rng=rng),
    ReLU(),
    Dense(120, 84, rng=rng),
    ReLU(),
    Dense(84, 10, rng=rng),                  # ten scores, one per digit
)
print(model.summary((1, 28, 28)))

# 3. Train: each step runs a batch forward, computes the loss, runs its gradient
#    backward through the layers and lets the optimizer update every weight.
history = model.fit(
    x_train, y_train,
    epochs=8, batch_size=32,
    optimizer=SGD(lr=0.01, momentum=0.9),
    validation_data=(x_test, y_test),
    seed=0,
    verbose=2,  # one line per epoch on stderr
)

# 4. Evaluate on images the network never trained on.
loss, accuracy = model.evaluate(x_test, y_test)
print(f"test loss {loss:.4f}, test accuracy {100 * accuracy:.2f}%")
predicted = model.predict(x_test[:10]).argmax(axis=1)
print("first ten test digits:", y_test[:10].tolist())
print("predicted:            ", predicted.tolist())

# 5. Save the weights (with the architecture) and load them back.
path = model.save("digits-cnn.npz")
again = cycnn.load(path)
assert np.array_equal(again.predict(x_test[:10]), model.predict(x_test[:10]))
print(f"saved to {path} and loaded back")
