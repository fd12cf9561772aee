#!/usr/bin/env python
"""`tf-mlp predict` as a script (the command lives in tf_mlp.predict_cli): classify a few PNG/JPEG images.

    python scripts/classify.py shoe.png --server rest://127.0.0.1:8501
"""

from tf_mlp.predict_cli import predict as main

if __name__ == "__main__":
    main()
