"""`tf-mlp ui`: a web page to try a served model (draw or drop an image, see the class probabilities).

    server.py          UiServer, UiOptions: the page's server, static files and a narrow same-origin proxy to
                       one model's REST API
    command.py         the click command
    static/            the page: index.html, style.css, preprocess.js (image -> 28x28 uint8), app.js

Nothing heavy is imported here: the command's module is loaded with `tf-mlp --help`.
"""

DEFAULT_PORT = 8080
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
"""The page sends one 28x28 image as nested lists, about 3 KiB; 64 KiB leaves room and refuses abuse."""
