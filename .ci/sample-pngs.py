"""Writes PNG files for the serving check in .ci/run: the first test images of the embedded dataset as 28×28 gray
PNGs, and one of them as a 40×36 RGB PNG (so that channel conversion and resizing are exercised too).
Standard library only: usage python3 .ci/sample-pngs.py OUT_DIR"""
import gzip, os, struct, sys, zlib

def png(path, width, height, channels, rows):
    color = {1: 0, 3: 2}[channels]
    def filtered():
        out, stride, prev = bytearray(), width * channels, bytes(width * channels)
        for y in range(height):
            row = bytes(rows[y])
            if y % 2:  # filter 2 (Up) on odd rows, so the decoder's filters are exercised
                out += b"\x02" + bytes((row[i] - prev[i]) & 255 for i in range(stride))
            else:
                out += b"\x00" + row
            prev = row
        return bytes(out)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(filtered())) + chunk(b"IEND", b""))

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "fashion-mnist-subset")
with gzip.open(os.path.join(root, "t10k-images-idx3-ubyte.gz")) as f:
    _, count, h, w = struct.unpack(">IIII", f.read(16))
    images = [f.read(h * w) for _ in range(6)]
for i, image in enumerate(images[:5]):
    png(os.path.join(out, f"test-{i}.png"), w, h, 1, [image[y * w:(y + 1) * w] for y in range(h)])
big_w, big_h = 40, 36
rows = []
for y in range(big_h):
    row = []
    for x in range(big_w):
        v = images[5][(y * h // big_h) * w + x * w // big_w]
        row += [v, v * 3 // 4, v // 2]
    rows.append(row)
png(os.path.join(out, "test-5-rgb-40x36.png"), big_w, big_h, 3, rows)
print("\n".join(sorted(os.path.join(out, n) for n in os.listdir(out))))
