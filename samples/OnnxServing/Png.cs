using System.IO.Compression;

namespace OnnxServing;

/// <summary>A minimal PNG decoder (8-bit gray, gray + alpha, RGB, RGBA and palette images, not interlaced): enough
/// for the images a classifier serves, with no dependency beyond the .NET library (zlib is System.IO.Compression).
/// Alpha is dropped, as Bake's decoder does (it reads unpremultiplied RGB).</summary>
public static class Png
{
    private static readonly byte[] Signature = { 137, 80, 78, 71, 13, 10, 26, 10 };

    /// <summary>Decodes a PNG file to planar RGB bytes (3 × height × width; gray images repeat the gray value).</summary>
    /// <exception cref="InvalidDataException">Not a PNG file, or a kind of PNG this decoder does not read; the
    /// message names the file.</exception>
    public static (byte[] Rgb, int Height, int Width) Decode(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8 || !bytes.AsSpan(0, 8).SequenceEqual(Signature))
            throw new InvalidDataException($"{path}: not a PNG file (this sample decodes PNG only)");
        int width = 0, height = 0, bitDepth = 0, colorType = 0, interlace = 0;
        byte[]? palette = null;
        using var compressed = new MemoryStream();
        for (int at = 8; at + 8 <= bytes.Length;)
        {
            int length = (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
            string type = System.Text.Encoding.ASCII.GetString(bytes, at + 4, 4);
            if (length < 0 || at + 12 + length > bytes.Length) throw new InvalidDataException($"{path}: truncated PNG chunk {type}");
            var data = bytes.AsSpan(at + 8, length);
            switch (type)
            {
                case "IHDR":
                    width = (data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3];
                    height = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7];
                    bitDepth = data[8]; colorType = data[9]; interlace = data[12];
                    break;
                case "PLTE": palette = data.ToArray(); break;
                case "IDAT": compressed.Write(data); break;
            }
            if (type == "IEND") break;
            at += 12 + length;
        }
        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => 0 };
        if (width <= 0 || height <= 0 || channels == 0)
            throw new InvalidDataException($"{path}: unsupported PNG header ({width}×{height}, color type {colorType})");
        if (bitDepth != 8 || interlace != 0)
            throw new InvalidDataException($"{path}: only 8-bit, non-interlaced PNG files are supported (bit depth {bitDepth}, interlace {interlace})");
        if (colorType == 3 && palette is null) throw new InvalidDataException($"{path}: palette image without PLTE chunk");

        int stride = width * channels;
        var raw = new byte[height * (stride + 1)];
        compressed.Position = 0;
        using (var zlib = new ZLibStream(compressed, CompressionMode.Decompress))
            zlib.ReadExactly(raw);
        var pixels = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            int filter = raw[y * (stride + 1)];
            var line = raw.AsSpan(y * (stride + 1) + 1, stride);
            var output = pixels.AsSpan(y * stride, stride);
            var previous = y > 0 ? pixels.AsSpan((y - 1) * stride, stride) : Span<byte>.Empty;
            for (int x = 0; x < stride; x++)
            {
                int a = x >= channels ? output[x - channels] : 0;
                int b = y > 0 ? previous[x] : 0;
                int c = x >= channels && y > 0 ? previous[x - channels] : 0;
                int predicted = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => Paeth(a, b, c),
                    _ => throw new InvalidDataException($"{path}: invalid PNG filter {filter} on row {y}"),
                };
                output[x] = (byte)(line[x] + predicted);
            }
        }

        int plane = height * width;
        var rgb = new byte[3 * plane];
        for (int p = 0; p < plane; p++)
        {
            for (int k = 0; k < 3; k++)
            {
                rgb[k * plane + p] = colorType switch
                {
                    0 or 4 => pixels[p * channels],
                    3 => palette![3 * pixels[p] + k],
                    _ => pixels[p * channels + k],
                };
            }
        }
        return (rgb, height, width);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
