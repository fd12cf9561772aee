"""tf-mlp: a Keras MLP over 28x28 images, from training to TensorFlow Serving.

Modules are imported where used (``from tf_mlp import model``); importing this
package does not import TensorFlow, so ``tf-mlp --help`` stays fast.
"""

__version__ = "0.1.0"
