#!/usr/bin/env python
"""`tf-mlp batch-predict` as a script (the command lives in tf_mlp.predict_cli).

    python scripts/batch_predict.py tfds:fashion_mnist/test -o predictions.csv --server rest://127.0.0.1:8501
"""

from tf_mlp.predict_cli import batch_predict as main

if __name__ == "__main__":
    main()
