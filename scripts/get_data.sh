#!/bin/sh
# Get the default data set (Fashion-MNIST) with no network beyond the package
# registries: Debian's dataset-fashion-mnist package installs its IDX files
# under /usr/share/datasets/fashion-mnist, which the project's own TFDS
# builder reads. Where apt is not available, training falls back to TFDS's
# catalogue download (which needs the network).
set -eu
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; then
    echo "Fashion-MNIST: $DIR"
    exit 0
fi
status=0
sh "$(dirname "$0")/apt_install.sh" dataset-fashion-mnist || status=$?
if [ "$status" -eq 0 ]; then
    echo "Fashion-MNIST: $DIR"
elif [ "$status" -eq 3 ]; then
    echo "apt-get not available: Fashion-MNIST will be downloaded by TFDS's catalogue builder on first use"
else
    exit "$status"
fi
