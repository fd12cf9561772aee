#!/bin/sh
# Get the default data set (Fashion-MNIST) with no network beyond the package
# registries: Debian's dataset-fashion-mnist package installs its IDX files
# under /usr/share/datasets/fashion-mnist, which the project's own TFDS
# builder reads. Where apt is not available, training falls back to TFDS's
# catalogue download (which needs the network).
set -eu
DIR=/usr/share/datasets/fashion-mnist
present() { [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; }
if ! present; then
    sh "$(dirname "$0")/apt_install.sh" dataset-fashion-mnist \
        "Fashion-MNIST will be downloaded by TFDS's catalogue builder on first use"
fi
if present; then
    echo "Fashion-MNIST: $DIR"
fi
