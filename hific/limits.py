"""Size limits shared by the image reader and the file parser, and the tiler's memory budget."""

MAX_SIDE = 32768
MAX_PIXELS = 1 << 28  # 268 megapixels
DEFAULT_BUDGET = 64 * 2**20  # bytes for the largest activation tensor of one tile (hific.coding.tiling)
