"""Size limits shared by the image reader and the file parser."""

MAX_SIDE = 32768
MAX_PIXELS = 1 << 28  # 268 megapixels
