#!/usr/bin/env python
"""`tf-mlp beam-predict` as a script (the command lives in tf_mlp.predict_cli).

    python scripts/beam_predict.py tfds:fashion_mnist/test -o predictions.csv --model-path models
"""

from tf_mlp.predict_cli import beam_predict as main

if __name__ == "__main__":
    main()
