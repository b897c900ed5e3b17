"""Size limits shared by the image reader, the file parser and the decoder."""

MAX_SIDE = 32768
MAX_PIXELS = 1 << 28  # 268 megapixels
# A decoder refuses files that declare more pixels than this unless told
# otherwise (``Codec(max_pixels=...)``, ``--max-pixels``): a tiny file can
# declare a huge image, and decoding one costs memory in proportion to it.
DEFAULT_DECODE_PIXELS = 1 << 26  # 67 megapixels, e.g. 8192 x 8192
